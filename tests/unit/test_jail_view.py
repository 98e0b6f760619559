"""What the jail shows: the bubblewrap command and the readable roots (pure functions)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from oodida_core.customcode.check import DEFAULT_ALLOWED_IMPORTS
from oodida_core.customcode.jail import bwrap
from oodida_core.customcode.jail.server import hidden_paths, readable_roots


def test_the_readable_view_is_the_interpreter_the_system_libraries_and_the_needed_packages() -> None:
    roots = readable_roots(DEFAULT_ALLOWED_IMPORTS)
    assert os.path.realpath(sys.executable) in roots
    assert any(r.endswith("/numpy") for r in roots) and any(r.endswith("/RestrictedPython") for r in roots)
    checkout = os.path.realpath(Path(__file__).parents[2])
    assert checkout not in roots and os.path.realpath(sys.prefix) not in roots  # nor the venv
    assert not [r for r in roots if r.startswith(os.path.join(checkout, ".oodida"))]  # no data directory
    assert not [r for r in roots if r in ("/", "/etc", "/proc", "/home", "/root", "/tmp", "/var", "/usr")]
    assert not [r for r in roots if r.startswith(("/etc/", "/proc/", "/var/", "/home/"))]
    assert os.path.realpath(sys.base_prefix) not in roots  # only its binary and standard library


def test_the_bubblewrap_command_binds_read_only_hides_site_packages_and_clears_the_environment() -> None:
    cmd = bwrap.command(
        "bwrap",
        ["python3", "-c", "pass"],
        ["/usr/lib", "/opt/py/lib/python3.11", "/opt/py/lib/python3.11/site-packages/numpy"],
        {"LANG": "C.UTF-8"},
        as_root=True,
        uid=65534,
        hidden=["/opt/py/lib/python3.11/site-packages"],
    )
    text = " ".join(cmd)
    assert "--bind " not in text and "--ro-bind /usr/lib /usr/lib" in text
    assert "--unshare-net" in cmd and "--unshare-pid" in cmd and "--die-with-parent" in cmd
    assert "--proc" not in cmd and "--clearenv" in cmd and cmd[-4:] == ["--", "python3", "-c", "pass"]
    assert cmd[cmd.index("--cap-drop") : cmd.index("--cap-drop") + 2] == ["--cap-drop", "ALL"]
    hide = cmd.index("/opt/py/lib/python3.11/site-packages")
    assert cmd[hide - 1] == "--tmpfs"
    assert text.index("--remount-ro / ") > hide  # the whole view read-only, last


def test_unprivileged_bubblewrap_maps_the_caller_to_the_jail_uid() -> None:
    cmd = bwrap.command("bwrap", ["true"], [], {}, as_root=False, uid=65534)
    assert "--unshare-user" in cmd and cmd[cmd.index("--uid") + 1] == "65534"
    assert "--cap-add" not in cmd


def test_installed_package_directories_under_a_readable_root_are_hidden() -> None:
    roots = readable_roots(DEFAULT_ALLOWED_IMPORTS)
    for path in hidden_paths(roots):
        assert any(path.startswith(r + os.sep) for r in roots)
        assert path.endswith(("site-packages", "dist-packages"))
