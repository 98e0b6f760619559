"""What custom code may reach: the tables shared by the static check and the sandbox's guards.

``module_refusal`` and ``attribute_refusal`` say why a module or ``module.name`` is unavailable;
``static_problems`` finds, in a parsed module, what can be refused before it runs (annotations
written as strings, generators whose clean-up could run in another call, ``"...".format``).
``RUNTIME_GUARDED`` records what stays reachable only behind a run-time guard, and why: the
audit of the allowed modules (``scripts/audit_allowed.py``, ``docs/ALLOWED_AUDIT.md``) checks
that everything it finds dangerous is either refused here or listed there.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _why(reason: str, names: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), reason)


USER_MODULE_NAME = "custom_module"  # __name__ of every custom module while it runs
DEFAULT_ALLOWED_IMPORTS = _words(
    "numpy math cmath statistics random itertools functools collections heapq bisect json re "
    "operator decimal fractions string datetime copy typing dataclasses array"
)
# Never allowed, whatever the operator configures: the file, process and interpreter access the
# safeguards exist to keep out.
NEVER_ALLOWED = _words(
    "os sys subprocess socket builtins importlib ctypes io pickle marshal shutil pathlib tempfile "
    "signal threading multiprocessing gc inspect types code codeop runpy pty posix nt resource "
    "mmap fcntl select asyncio ssl urllib http ftplib smtplib webbrowser pdb site sysconfig "
    "zipimport pkgutil shelve dbm sqlite3 glob fileinput linecache tokenize traceback"
)
NUMPY_SUBMODULES = frozenset(
    "numpy." + n
    for n in _words("linalg fft random polynomial ma emath exceptions dtypes strings char version")
)
TYPING_NAMES = _words(
    "Any Optional Union List Dict Tuple Set FrozenSet Sequence Mapping MutableMapping "
    "MutableSequence Iterable Iterator Collection Container Callable Literal Final ClassVar "
    "TypeVar Generic NamedTuple TypedDict cast overload NoReturn TYPE_CHECKING Deque DefaultDict "
    "Counter OrderedDict SupportsFloat SupportsInt Hashable Sized Generator"
)
_FILES = "it reads or writes files, and custom code has no file access"
_MEMORY = "it gives raw memory access"
_INTERNALS = "it reaches the interpreter's internals"
_BY_NAME = "it reaches attributes by name, around the attribute checks"
_CODE = "it compiles and runs source text built from its arguments"
_SHARED = "it is state shared with the next call, possibly another user's"
# Refused on every object (the sandbox's attribute guard, and the static check of any `a.name`).
REFUSED_ATTRIBUTES: Mapping[str, str] = {
    **_why(_FILES, "tofile fromfile memmap loadtxt savetxt genfromtxt fromregex DataSource savez"),
    **_why(_FILES, "savez_compressed fromtextfile openfile"),
    **_why(_MEMORY, "ctypes ctypeslib cffi"),
    **_why(_INTERNALS, "gi_frame gi_code gi_yieldfrom cr_frame cr_code cr_await cr_origin ag_frame"),
    **_why(_INTERNALS, "ag_code ag_await tb_frame tb_next f_back f_globals f_locals f_builtins f_code"),
    **_why(_INTERNALS, "f_trace f_generator co_code mro"),
    **_why(_BY_NAME, "attrgetter methodcaller update_wrapper wraps get_type_hints get_origin"),
    **_why(_BY_NAME, "Formatter format_map"),
    "make_dataclass": _CODE,
}
# Refused on numpy's modules: files, raw memory, internals, tests, global state shared between calls.
NUMPY_REFUSED: Mapping[str, str] = {
    **REFUSED_ATTRIBUTES,
    **_why(_FILES, "load save loads dump dumps"),
    **_why("it can build arrays over raw memory", "rec recarray"),
    "ScalarType": "it holds memoryview, which custom code has no use of",
    **_why(_INTERNALS, "lib core testing f2py distutils typing show_config show_runtime info lookfor"),
    **_why(_INTERNALS, "source get_include add_newdoc add_docstring add_newdoc_ufunc"),
    "test": "it runs numpy's test suite (pytest, files, subprocesses)",
    **_why(_SHARED, "masked_print_option"),
    **_why(
        "it changes numpy's global settings; use np.errstate or np.printoptions in a with block",
        "seterrcall set_printoptions setbufsize set_string_function",
    ),
}
# Refused on particular modules (the full name of the module, then the attribute).
MODULE_REFUSED: Mapping[str, Mapping[str, str]] = {
    "decimal": _why(
        f"{_SHARED}; use decimal.Context(prec=...) or decimal.localcontext()",
        "DefaultContext BasicContext ExtendedContext",
    ),
}
ARRAY_REFUSED: Mapping[str, str] = {  # on numpy arrays and numpy scalars, and their classes
    **_why(_FILES, "tofile dump dumps"),
    "resize": "array.resize can leave dangling views; use np.resize(a, shape)",
    "ctypes": _MEMORY,
    "setflags": "numpy's shared arrays are read-only in custom code; use a.copy()",
}
UNAVAILABLE_BUILTINS: Mapping[str, str] = {
    "open": "custom code has no file access",
    **_why("running generated code is not allowed", "eval exec compile"),
    **_why(_INTERNALS, "globals locals vars dir"),
    **_why("custom code cannot interact", "breakpoint input help"),
    "memoryview": _MEMORY,
    **_why("assign with obj.name = value instead", "setattr delattr"),
    **_why("return from custom_code instead", "exit quit"),
}
# What the audit finds dangerous but leaves reachable, each behind a run-time guard of
# ``oodida_core.customcode._guards`` (the hostile-module catalogue has a case for each).
RUNTIME_GUARDED: Mapping[str, str] = {
    "functools.singledispatch": "register(g) evaluates g's annotations: the guard refuses string "
    "annotations, and typing.ForwardRef refuses to be built while custom code runs",
    "functools.singledispatchmethod": "as functools.singledispatch",
    "functools.total_ordering": "sets methods on its class: only on classes the module defined",
    "collections.namedtuple": "exec()s a template; it accepts only identifiers as names",
    "collections.abc": "the ABCs' register() is refused on classes the module did not define",
    "dataclasses.dataclass": "exec()s generated methods: only on classes the module defined, whose "
    "field names are identifiers",
    "typing.NamedTuple": "calls collections.namedtuple; string types are refused (ForwardRef)",
    "typing.TypedDict": "string types are refused (ForwardRef)",
    "typing.TypeVar": "string bounds are refused (ForwardRef)",
    "typing.overload": "its registry lasts for the process: every call runs in a fresh process",
    "decimal.setcontext": "the context lasts for the process: every call runs in a fresh process",
    "random.*": "the module's generator lasts for the process: every call runs in a fresh process",
    "numpy.char.chararray": "a checked stand-in: no buffer=, offset= or strides=",
    "numpy.polynomial": "its shared arrays (domain, window, polyx...) are made read-only",
    "numpy.random.*": "the module's generator lasts for the process: every call runs in a fresh process",
    "numpy.seterr": "the setting lasts for the process: every call runs in a fresh process",
    "typing.Generic": "Generic[...] with strings is refused (ForwardRef)",
}


def module_refusal(name: str, allowed: Iterable[str]) -> str | None:
    """Why the module ``name`` is unavailable to custom code, or None when it is available."""
    if name == "__future__":
        return None
    parts = name.split(".")
    if parts[0] not in allowed:
        shown = ", ".join(sorted(allowed))
        return f"import of {name!r} is not allowed in custom code (allowed: {shown})"
    if any(p.startswith("_") for p in parts):
        return f"module {name} is internal and not available in custom code"
    numpy_ok = name in NUMPY_SUBMODULES or name.startswith(("numpy.polynomial.", "numpy.random."))
    if parts[0] == "numpy" and len(parts) > 1 and not numpy_ok:
        reason = NUMPY_REFUSED.get(parts[1], "only numpy's computation modules are available")
        return f"{name} is not available in custom code: {reason}"
    return None


def attribute_refusal(module: str, name: str) -> str | None:
    """Why ``module.name`` is unavailable to custom code (module is a module's full name)."""
    if name.startswith("_"):
        return f"{module}.{name} is not available: names starting with '_' are internal"
    top = module.split(".")[0]
    reason = (NUMPY_REFUSED if top == "numpy" else REFUSED_ATTRIBUTES).get(name)
    reason = reason or MODULE_REFUSED.get(module, {}).get(name)
    if reason is None and module == "typing" and name not in TYPING_NAMES:
        reason = "only type annotations such as List, Dict and Optional are available from typing"
    return None if reason is None else f"{module}.{name} is not available in custom code: {reason}"


# --- what the static check refuses beyond names ----------------------------------------------

STRING_ANNOTATION = (
    "annotations written as strings are evaluated with eval() by typing (functools.singledispatch "
    "does it); write the annotation as a plain name"
)
FUTURE_ANNOTATIONS = (
    "from __future__ import annotations turns every annotation into a string, which typing "
    "evaluates with eval(); write annotations as plain names without it"
)
GENERATOR_CLEANUP = (
    "a generator that yields inside try/finally, try/except or with runs that clean-up whenever "
    "it is collected, possibly in another call; move the yield out of the block"
)
LITERAL_FORMAT = "str.format walks attributes around the attribute checks; use an f-string or %"
_BROAD = {"BaseException", "GeneratorExit"}


def static_problems(tree: ast.Module) -> list[tuple[int, str]]:
    """Annotations written as strings, ``from __future__ import annotations``, generators with
    clean-up code around a ``yield``, and ``"...".format``."""
    problems: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            if any(a.name == "annotations" for a in node.names):
                problems.append((node.lineno, FUTURE_ANNOTATIONS))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            notes = [a.annotation for a in every if a is not None and a.annotation is not None]
            if not isinstance(node, ast.Lambda):
                notes += [node.returns] if node.returns is not None else []
                problems += [(line, GENERATOR_CLEANUP) for line in _guarded_yields(node.body, False)]
            problems += [(n.lineno, STRING_ANNOTATION) for n in notes if _has_string(n)]
        elif isinstance(node, ast.AnnAssign) and _has_string(node.annotation):
            problems.append((node.lineno, STRING_ANNOTATION))
        elif isinstance(node, ast.Attribute) and node.attr in {"format", "format_map"}:
            literal = isinstance(node.value, ast.JoinedStr) or (
                isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            )
            if literal:
                problems.append(
                    (node.lineno, f"'{node.attr}' is not available in custom code: {LITERAL_FORMAT}")
                )
    return problems


def _has_string(node: ast.expr) -> bool:
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str) for n in ast.walk(node))


def _guarded_yields(body: list[ast.stmt], guarded: bool) -> list[int]:
    """Lines of ``yield`` inside a try with finally or a broad handler, or inside with, in one
    function's own body (nested functions are checked on their own)."""
    lines: list[int] = []
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        inner = guarded
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            inner = True
        elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
            handlers: list[ast.ExceptHandler] = getattr(stmt, "handlers", [])
            broad = any(h.type is None or not _narrow(h.type) for h in handlers)
            inner = guarded or bool(getattr(stmt, "finalbody", [])) or broad
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(stmt, field, None)
            if isinstance(block, list):
                stmts = [s for h in block for s in h.body] if field == "handlers" else block
                lines += _guarded_yields(stmts, inner)
        if inner:
            for part in _own_expressions(stmt):
                lines += [n.lineno for n in ast.walk(part) if isinstance(n, (ast.Yield, ast.YieldFrom))]
    return lines


def _narrow(kind: ast.expr) -> bool:
    """An except clause that cannot catch GeneratorExit (named exceptions other than the broad ones)."""
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    return all(isinstance(n, ast.Name) and n.id not in _BROAD for n in names)


def _own_expressions(stmt: ast.stmt) -> list[ast.AST]:
    """The expressions of a statement itself, without its nested statement blocks."""
    parts: list[ast.AST] = []
    for field, value in ast.iter_fields(stmt):
        if field in ("body", "orelse", "finalbody", "handlers"):
            continue
        items = value if isinstance(value, list) else [value]
        parts += [v for v in items if isinstance(v, ast.AST) and not isinstance(v, ast.stmt)]
    return parts
