"""Audit of what custom code can reach in the allowed modules (issue 11, item 5).

Walks every public attribute of every allowed module (and numpy's submodules in
``customcode.NUMPY_SUBMODULES``, and ``collections.abc``), and every public attribute of the
classes found there, through the sandbox's own guard (``_Guards.getattr_``, in this process), and
classifies each:

* ``refused``: the guard refuses it (the static check refuses the same names at deploy time);
* ``code``: reaches ``eval``/``exec``/``compile`` of a string (its Python source, or that of the
  helpers it calls in its module, names them, or ``ForwardRef``, ``get_type_hints``,
  ``namedtuple``, ``_create_fn``...);
* ``files``: opens files, runs tests or programs (``open``, ``os.``, ``io.``, ``pickle``, pytest);
* ``state``: changes state shared with the next call (``global``, ``setattr`` on classes, the
  ABC registry, decimal's context, a shared random generator, a mutable module-level value);
* ``pure``: none of these.

Everything classified ``code``, ``files`` or ``state`` must be refused, or listed in
``customcode_rules.RUNTIME_GUARDED`` with the run-time guard that covers it. Prints a table
(``--all`` for every row, else the dangerous ones) and a summary; exits 1 if anything dangerous
is neither refused nor guarded.

    .venv/bin/python scripts/audit_allowed.py [--all]
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oodida_core.customcode._guards import _GuardMeta, _Guards, _ModuleProxy
from oodida_core.customcode.check import DEFAULT_ALLOWED_IMPORTS, NUMPY_SUBMODULES
from oodida_core.customcode.rules import RUNTIME_GUARDED

DANGEROUS = ("code", "files", "state")
_PATTERNS = {
    "code": re.compile(
        r"(?<![\w.])(?<!def )(eval|exec|compile)\(|ForwardRef\(|get_type_hints\("
        r"|_type_check\(|_type_convert\(|namedtuple\(|_create_fn\(|_process_class\(|__import__\(|import_module\("
    ),
    "files": re.compile(
        r"(?<![\w.])(?<!def )open\(|\bos\.(?!path\b)|\bio\.|\bpickle\b|\bsubprocess\b|\bpytest\b"
        r"|DataSource\(|\.tofile\("
    ),
    "state": re.compile(
        r"^\s*global\s|setattr\(cls|_abc_register|setcontext\(|_overload_registry|seterr\(|_set_printoptions"
        r"|\bset_display\(",
        re.MULTILINE,
    ),
}
_CALLED = re.compile(r"\b([A-Za-z_]\w*)\(")


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (TypeError, OSError):
        return ""


def _reach(obj: Any, module: types.ModuleType | None, depth: int = 3, seen: set[int] | None = None) -> str:
    """The source of a Python-level function or class, and of the helpers of its module it calls."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return ""
    seen.add(id(obj))
    text = _source(obj)
    if depth and module is not None:
        for name in set(_CALLED.findall(text)):
            helper = vars(module).get(name)
            if (
                isinstance(helper, (types.FunctionType, type))
                and getattr(helper, "__module__", None) == module.__name__
            ):
                text += "\n" + _reach(helper, module, depth - 1, seen)
    return text


def classify(value: Any, owner: types.ModuleType | None) -> tuple[str, str]:
    """The category of a value, and the evidence (the text that matched)."""
    if isinstance(value, (types.ModuleType, _ModuleProxy)):
        return "module", ""
    kind = type(value)
    if kind.__name__ == "ndarray":
        return ("pure", "read-only") if not value.flags.writeable else ("state", "a writable shared array")
    if isinstance(value, (list, dict, set, bytearray)):
        return "pure", "copied on every access"
    self_ = getattr(value, "__self__", None)
    if (
        isinstance(value, (types.BuiltinMethodType, types.MethodType))
        and self_ is not None
        and not isinstance(self_, (type, types.ModuleType))
    ):
        return "state", f"a method of a shared {type(self_).__name__}"
    real = value._real if isinstance(value, _GuardMeta) else value
    module = sys.modules.get(getattr(real, "__module__", "") or "") or owner
    text = _reach(real, module) if callable(real) else ""
    for category in DANGEROUS:
        found = _PATTERNS[category].search(text)
        if found:
            return category, found.group(0).strip()
    return "pure", ""


def _public(obj: Any) -> list[str]:
    try:
        return sorted(n for n in dir(obj) if not n.startswith("_"))
    except Exception:
        return []


Row = tuple[str, str, str, str]  # name, category, evidence, decision


def rows(guards: _Guards) -> Iterator[Row]:
    """Every public attribute of the allowed modules and of their classes."""
    guarded = _guarded_objects()
    modules = sorted({*DEFAULT_ALLOWED_IMPORTS, *NUMPY_SUBMODULES, "collections.abc"})
    seen_classes: set[int] = set()
    for module_name in modules:
        real = sys.modules.get(module_name)
        if real is None:
            continue
        proxy = guards.vet(real, module_name)
        for name in _public(real):
            full = f"{module_name}.{name}"
            try:
                value = guards.getattr_(proxy, name)
            except Exception as exc:
                yield full, "refused", str(exc)[:100], ""
                continue
            category, evidence = classify(value, real)
            if full in C_STATE:
                category, evidence = "state", C_STATE[full]
            if category == "module":
                continue
            yield full, category, evidence, _decision(full, getattr(real, name), guarded)
            target = value._real if isinstance(value, _GuardMeta) else value
            if isinstance(target, type) and id(target) not in seen_classes:
                seen_classes.add(id(target))
                yield from _class_rows(guards, full, value, real, guarded)


def _class_rows(
    guards: _Guards, path: str, cls: Any, owner: types.ModuleType, guarded: dict[int, str]
) -> Iterator[Row]:
    target = cls._real if isinstance(cls, _GuardMeta) else cls
    for name in _public(target):
        if not any(name in vars(b) for b in target.__mro__[:-1]):
            continue  # what every object has (object's own methods)
        full = f"{path}.{name}"
        try:
            value = guards.getattr_(cls, name)
        except Exception as exc:
            yield full, "refused", str(exc)[:100], ""
            continue
        category, evidence = classify(value, owner)
        if category != "module":
            yield full, category, evidence, _decision(full, value, guarded, guarded.get(id(target)))


def _guarded_objects() -> dict[int, str]:
    """RUNTIME_GUARDED's entries, by the identity of the object each names."""
    found: dict[int, str] = {}
    for key, reason in RUNTIME_GUARDED.items():
        module, _, name = key.rpartition(".")
        owner = sys.modules.get(module)
        if owner is not None and hasattr(owner, name):
            found[id(getattr(owner, name))] = f"guarded: {reason}"
    return found


def _decision(full: str, value: Any, guarded: dict[int, str], owner: str | None = None) -> str:
    if full in FALSE_POSITIVES:
        return f"heuristic only: {FALSE_POSITIVES[full]}"
    for key, reason in RUNTIME_GUARDED.items():
        if key.endswith(".*") and full.startswith(key[:-1]):
            return f"guarded: {reason}"
    return guarded.get(id(value)) or owner or ""


def main(argv: list[str]) -> int:
    import warnings

    warnings.simplefilter("ignore")
    guards = _Guards(DEFAULT_ALLOWED_IMPORTS)
    table = sorted(set(rows(guards)))
    counts = Counter(row[1] for row in table)
    dangerous = [r for r in table if r[1] in DANGEROUS]
    open_rows = [r for r in dangerous if not r[3]]
    shown = table if "--all" in argv else dangerous
    width = max((len(r[0]) for r in shown), default=10)
    for name, category, evidence, decision in shown:
        print(
            f"{name:<{width}}  {category:<7}  {evidence[:40]:<40}  "
            + (decision or "OPEN: neither refused nor guarded")
        )
    print(
        f"\n{len(table)} attributes: "
        + ", ".join(f"{counts[c]} {c}" for c in ("pure", "refused", *DANGEROUS))
        + f"; of the {len(dangerous)} dangerous and reachable: "
        + f"{sum(r[3].startswith('guarded') for r in dangerous)} behind a run-time guard, "
        + f"{sum(r[3].startswith('heuristic') for r in dangerous)} heuristic false alarms, "
        + f"{len(open_rows)} open"
    )
    for name, category, evidence, _ in open_rows:
        print(f"OPEN: {name} ({category}: {evidence}) is neither refused nor guarded", file=sys.stderr)
    return 1 if open_rows else 0


# What the heuristics flag but is not dangerous, each read and decided by hand.
FALSE_POSITIVES: dict[str, str] = {
    "dataclasses.replace": "builds a new instance through the class's existing __init__; generates no code",
    **dict.fromkeys(
        ["datetime.date", "datetime.datetime", "datetime.time", "datetime.timezone", "random.Random"],
        "the pure-Python source names pickle in __reduce__/__getstate__; nothing is opened",
    ),
    **dict.fromkeys(
        ["random.SystemRandom", "random.SystemRandom.randbytes"],
        "os.urandom reads the kernel's random source with getrandom(); no file is opened",
    ),
    **dict.fromkeys(
        [
            f"numpy.{n}"
            for n in ["array2string", "array_repr", "array_str", "get_printoptions", "geterr", "geterrcall"]
        ],
        "reads numpy's settings, or sets them inside a with block that restores them",
    ),
    "numpy.isclose": "uses np.errstate in a with block, which restores the setting",
    "numpy.printoptions": "a context manager that restores the options when the block ends",
    **dict.fromkeys(
        ["numpy.ma.alltrue", "numpy.ma.sometrue"],
        "reduce() of a masked operation object; it keeps nothing between calls (attributes not writable)",
    ),
}
# C functions change shared state too, and have no source to read: listed by hand.
C_STATE = {
    "decimal.setcontext": "sets the thread's decimal context",
    "numpy.seterr": "sets numpy's floating-point error handling",
}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
