"""Hostile inputs to ``oodida-edge --check`` as a real process: exit 2 and one line on stderr,
whatever the libraries underneath would print (tests/unit/test_source_attacks.py has the rest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "vehicle-data"


def edge_check(*argv: str) -> str:
    """``oodida-edge --clients 1 ARGV --check``: exit 2, one line on stderr; that line."""
    done = subprocess.run(
        [sys.executable, "-m", "oodida_edge", "--clients", "1", *argv, "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("oodida-edge: "), done.stderr
    return lines[0]


def test_a_dbc_with_duplicate_frame_ids_adds_no_warning_lines(tmp_path: Path) -> None:
    dbc = tmp_path / "dup.dbc"
    messages = "".join(
        f'BO_ 416 Copy{i}: 8 ABS\n SG_ Other{i} : 0|8@1+ (1,0) [0|255] "" ECM\n' for i in range(5)
    )
    dbc.write_text((EXAMPLES / "vehicle.dbc").read_text() + "\n" + messages)
    log = tmp_path / "missing.blf"
    line = edge_check(
        "--source", f"canlog:{log}", "--dbc", str(dbc), "--mapping", str(EXAMPLES / "mapping.yaml")
    )
    assert "no recorded drive" in line
