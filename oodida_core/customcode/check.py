"""Custom code: what can be checked without running it, code versions, and the policy.

A custom module defines ``custom_code(x)``. ``check_source`` does every check that needs no
execution (size, UTF-8, RestrictedPython's compile, the entry point and its arity, imports
against the allowlist, names that are never available) and lists every problem it finds.
``check_result`` (from ``oodida_core.customcode.results``, importable from here too) turns a return
value into the contract's JSON types or says which part is wrong. Running the code is
``oodida_core.customcode.sandbox``'s job; the tables of what custom code may not reach live in
``oodida_core.customcode.rules`` (importable from here too), shared by the static check and the
sandbox's guards.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import CodeType
from typing import Literal

from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import IOPERATOR_TO_STR, RestrictingNodeTransformer, copy_locations

from oodida_core.customcode.results import MAX_DEPTH as MAX_DEPTH
from oodida_core.customcode.results import MAX_RESULT_BYTES
from oodida_core.customcode.results import check_result as check_result
from oodida_core.customcode.results import encode_result as encode_result
from oodida_core.customcode.rules import (  # noqa: F401 - the tables live there, importable from here too
    ARRAY_REFUSED,
    DEFAULT_ALLOWED_IMPORTS,
    MODULE_REFUSED,
    NEVER_ALLOWED,
    NUMPY_REFUSED,
    NUMPY_SUBMODULES,
    REFUSED_ATTRIBUTES,
    TYPING_NAMES,
    UNAVAILABLE_BUILTINS,
    USER_MODULE_NAME,
    _words,
    attribute_refusal,
    module_refusal,
    static_problems,
)
from oodida_core.protocol.errors import CustomCodeError, OodidaError

MiB = 1024 * 1024
ENTRY_POINT = "custom_code"


def code_version(source: str) -> str:
    """The contract's code version: ``sha256:`` and the hex digest of the UTF-8 source."""
    return "sha256:" + hashlib.sha256(source.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CodePolicy:
    """What custom code may import and use: set by the operator, the same on every machine."""

    allowed_imports: frozenset[str] = DEFAULT_ALLOWED_IMPORTS
    time_limit: float = 30.0  # seconds per call
    memory_limit: int = 512 * MiB  # bytes of address space of the process running the code
    max_source_bytes: int = 256 * 1024
    max_result_bytes: int = MAX_RESULT_BYTES

    def __post_init__(self) -> None:
        names = frozenset(self.allowed_imports)
        object.__setattr__(self, "allowed_imports", names)
        problems = [f"{n!r} is not a module name" for n in sorted(names) if not _is_module_name(n)]
        problems += [
            f"{n} can never be allowed: it reaches the interpreter's internals"
            for n in sorted(names & NEVER_ALLOWED)
        ]
        if not 0 < self.time_limit <= 24 * 3600:
            problems.append(f"time_limit must be between 0 and 86400 seconds (got {self.time_limit})")
        if self.memory_limit < 128 * MiB:
            problems.append(f"memory_limit must be at least 128 MiB (got {self.memory_limit} bytes)")
        if self.max_source_bytes < 1 or self.max_result_bytes < 1:
            problems.append("max_source_bytes and max_result_bytes must be positive")
        if problems:
            raise OodidaError("bad custom code policy: " + "; ".join(problems))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CodePolicy:
        """From ``OODIDA_CODE_ALLOWED_IMPORTS`` (comma list, replaces the default),
        ``OODIDA_CODE_TIME_LIMIT`` (seconds) and ``OODIDA_CODE_MEMORY_LIMIT`` (bytes, or with a
        K/M/G/KiB/MiB/GiB suffix)."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        raw = source.get("OODIDA_CODE_ALLOWED_IMPORTS", "").strip()
        if raw:
            values["allowed_imports"] = frozenset(p.strip() for p in raw.split(",") if p.strip())
        for key, name, parse in (
            ("OODIDA_CODE_TIME_LIMIT", "time_limit", float),
            ("OODIDA_CODE_MEMORY_LIMIT", "memory_limit", _parse_bytes),
        ):
            text = source.get(key, "").strip()
            if text:
                try:
                    values[name] = parse(text)
                except ValueError:
                    raise OodidaError(f"bad settings: {key}: cannot read {text!r}") from None
        return cls(**values)  # type: ignore[arg-type]


def _is_module_name(name: str) -> bool:
    return all(p.isidentifier() for p in name.split("."))


def _parse_bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMG]i?B?|B)?", text.strip(), re.IGNORECASE)
    if not m:
        raise ValueError(text)
    unit = (m.group(2) or "B").upper()[:1]
    return int(m.group(1)) * {"B": 1, "K": 1024, "M": MiB, "G": 1024 * MiB}[unit]


# --- compiling -----------------------------------------------------------------------------


def _slice_expr(node: ast.expr) -> ast.expr:
    """A subscript's index as an ordinary expression (slices become slice(...) calls)."""
    if isinstance(node, ast.Slice):
        none = ast.Constant(None)
        args = [node.lower or none, node.upper or none, node.step or none]
        return ast.Call(func=ast.Name("slice", ast.Load()), args=args, keywords=[])
    if isinstance(node, ast.Tuple):
        return ast.Tuple(elts=[_slice_expr(e) for e in node.elts], ctx=ast.Load())
    return node


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's rules, plus two things analysts write all the time:
    ``counts[k] += 1`` / ``obj.total += v`` (through the same guards as plain reads and writes)
    and annotated names (``x: int = 0``, which dataclasses need)."""

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        target, op = node.target, ast.Constant(IOPERATOR_TO_STR[type(node.op)])
        if isinstance(target, ast.Subscript):
            helper, key = "_inplace_item_", _slice_expr(target.slice)
        elif isinstance(target, ast.Attribute):
            if target.attr.startswith("_"):
                self.error(node, f'"{target.attr}" is an invalid attribute name because it starts with "_".')
            helper, key = "_inplace_attr_", ast.Constant(target.attr)
        else:
            return super().visit_AugAssign(node)  # type: ignore[return-value]
        args = [self.visit(target.value), self.visit(key), op, self.visit(node.value)]
        new = ast.Expr(ast.Call(func=ast.Name(helper, ast.Load()), args=args, keywords=[]))
        copy_locations(new, node)
        return ast.fix_missing_locations(new)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if isinstance(node.target, ast.Name):
            self.check_name(node, node.target.id)
            return self.node_contents_visit(node)
        if node.value is None:
            return None
        new = ast.Assign(targets=[node.target], value=node.value)
        copy_locations(new, node)
        return self.visit(new)


@dataclass(frozen=True)
class CheckedModule:
    """A custom module that passed ``check_source``: ready to run in the sandbox."""

    version: str
    filename: str
    source: str
    code: CodeType = field(repr=False, compare=False)
    imports: tuple[str, ...] = ()  # every module it imports, as written


def check_source(source: str | bytes, filename: str, policy: CodePolicy | None = None) -> CheckedModule:
    """Every check that needs no execution; raises CustomCodeError listing all problems."""
    policy = policy or CodePolicy()
    limit = policy.max_source_bytes
    if isinstance(source, (bytes, bytearray)):
        if len(source) > limit:
            raise CustomCodeError(f"{filename} is {len(source)} bytes; the limit is {limit} bytes")
        try:
            source = bytes(source).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CustomCodeError(f"{filename} is not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        size = len(source.encode("utf-8"))
    except UnicodeEncodeError:
        raise CustomCodeError(f"{filename} contains characters that are not valid text") from None
    if size > limit:
        raise CustomCodeError(f"{filename} is {size} bytes; the limit is {limit} bytes")
    problems: list[tuple[int, str]] = []
    result = compile_restricted_exec(source, filename, policy=_Policy)
    for error in result.errors:
        m = re.match(r"Line (\d+): (.*)", error, re.DOTALL)
        line, text = (int(m.group(1)), m.group(2)) if m else (0, error.removeprefix("Line None: "))
        problems.append((line, text.replace("SyntaxError: ", "syntax error: ")))
    imports: list[str] = []
    try:
        tree = ast.parse(source, filename)
    except SyntaxError:
        pass  # compile_restricted_exec reported it, with its line
    else:
        problems += _check_entry_point(tree) + _check_names(tree, policy, imports) + static_problems(tree)
    if problems or result.code is None:
        problems = sorted(set(problems)) or [(0, "the module could not be compiled")]
        n = len(problems)
        head = f"{filename} cannot be used as custom code ({n} problem{'s' if n > 1 else ''}):"
        lines = [f"  - {filename}{f' line {line}' if line else ''}: {text}" for line, text in problems]
        raise CustomCodeError("\n".join([head, *lines]))
    return CheckedModule(
        code_version(source), filename, source, _compile(source, filename), tuple(dict.fromkeys(imports))
    )


def _compile(source: str, filename: str) -> CodeType:
    """The module compiled as RestrictedPython does, but without inheriting its
    ``from __future__ import annotations`` (which made every annotation a string, and
    ``typing`` evaluates strings with ``eval``): annotations are evaluated, through the guards,
    where they are written."""
    tree = ast.parse(source, filename)
    _Policy([], [], {}).visit(tree)
    return compile(tree, filename, "exec", dont_inherit=True)


def _check_entry_point(tree: ast.Module) -> list[tuple[int, str]]:
    want = f"define it at the top level as: def {ENTRY_POINT}(x):"
    found: ast.FunctionDef | None = None
    problems: list[tuple[int, str]] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == ENTRY_POINT:
            found = stmt
        elif isinstance(stmt, ast.AsyncFunctionDef) and stmt.name == ENTRY_POINT:
            problems.append((stmt.lineno, f"{ENTRY_POINT} must be a plain function, not async def"))
        elif isinstance(stmt, ast.ClassDef) and stmt.name == ENTRY_POINT:
            problems.append((stmt.lineno, f"{ENTRY_POINT} is a class; {want}"))
        elif not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and any(
            (isinstance(n, ast.Name) and n.id == ENTRY_POINT and isinstance(n.ctx, ast.Store))
            or (isinstance(n, ast.alias) and (n.asname or n.name) == ENTRY_POINT)
            for n in ast.walk(stmt)
        ):
            problems.append((stmt.lineno, f"{ENTRY_POINT} is assigned here; {want}"))
    if found is None and not problems:
        nested = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == ENTRY_POINT]
        if nested:
            return [(nested[0].lineno, f"{ENTRY_POINT} is nested inside another statement; {want}")]
        return [(0, f"the module does not define {ENTRY_POINT}; {want}")]
    if found is not None:
        a = found.args
        if a.vararg or a.kwarg or a.kwonlyargs or len(a.posonlyargs) + len(a.args) != 1:
            takes = f"({ast.unparse(a)})" if ast.unparse(a) else "no parameters"
            text = f"{ENTRY_POINT} must take exactly one positional parameter, as in {ENTRY_POINT}(x)"
            problems.append((found.lineno, f"{text}; it takes {takes}"))
    return problems


def _check_names(tree: ast.Module, policy: CodePolicy, imports: list[str]) -> list[tuple[int, str]]:
    """Imports against the allowlist, refused attributes of imported modules, unavailable
    builtins, three-argument type(), and getattr/hasattr with names starting with '_'."""
    problems: list[tuple[int, str]] = []
    aliases: dict[str, str] = {}  # local name -> the module it is bound to
    allowed = policy.allowed_imports
    nodes = list(ast.walk(tree))
    stored = {n.id for n in nodes if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    bound = stored | {n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    bound |= {n.arg for n in nodes if isinstance(n, ast.arg)}

    def refused(module: str, name: str) -> str | None:
        full = f"{module}.{name}"
        why = attribute_refusal(module, name)
        return why or (module_refusal(full, allowed) if full in _NUMPY_MODS else None)

    for node in nodes:
        why: str | None = None
        if isinstance(node, ast.Import):
            for alias in node.names:
                imports.append(alias.name)
                why = why or module_refusal(alias.name, allowed)
                top = alias.name.split(".")[0]
                aliases[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            imports.append(mod)
            why = "relative imports are not available in custom code" if node.level else None
            why = why or module_refusal(mod, allowed)
            for alias in [] if why else node.names:
                why = why or refused(mod, alias.name)
                aliases[alias.asname or alias.name] = f"{mod}.{alias.name}"
        elif isinstance(node, ast.Attribute):
            chain = _dotted(node.value)
            if chain and chain[0] in aliases and chain[0] not in stored:
                why = refused(".".join([aliases[chain[0]], *chain[1:]]), node.attr)
            elif (reason := REFUSED_ATTRIBUTES.get(node.attr)) is not None:
                why = f".{node.attr} is not available in custom code: {reason}"
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
            if (reason := UNAVAILABLE_BUILTINS.get(node.id)) and node.id not in {"eval", "exec"}:
                why = f"{node.id}() is not available in custom code: {reason}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in bound:
            name, args = node.func.id, node.args
            if name == "type" and len(args) + len(node.keywords) != 1:
                why = "type() takes one argument in custom code (type(name, bases, dict) is not available)"
            elif name in {"getattr", "hasattr"} and len(args) > 1 and isinstance(args[1], ast.Constant):
                internal = str(args[1].value).startswith("_")
                why = f"{name}() with the name {args[1].value!r} is not available" if internal else None
        if why:
            problems.append((getattr(node, "lineno", 0), why))
    return problems


# numpy's modules by name (for the static check of np.<name>): functions are not modules
_NUMPY_MODS = NUMPY_SUBMODULES | {
    f"numpy.{n}" for n in _words("lib core testing f2py distutils ctypeslib typing rec matlib")
}


def _dotted(node: ast.expr) -> list[str] | None:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return [node.id, *reversed(names)] if isinstance(node, ast.Name) else None


def unresolved_imports(checked: CheckedModule) -> list[str]:
    """The module's imports that cannot be found on this machine (the clients' deploy check)."""
    return [name for name in checked.imports if name != "__future__" and not _found(name)]


def _found(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_imports_resolve(checked: CheckedModule) -> None:
    """Raise CustomCodeError naming the imports that are not installed here."""
    missing = unresolved_imports(checked)
    if missing:
        raise CustomCodeError(
            f"{checked.filename} imports {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed on this machine"
        )


# --- dry runs ------------------------------------------------------------------------------

Role = Literal["onboard", "offboard"]


def _floats(n: int, start: float, step: float) -> list[float]:
    return [round(start + step * math.sin(i / 7.0) + i * 0.01, 6) for i in range(n)]


def sample_inputs(role: Role) -> list[object]:
    """Inputs of the expected shape for a dry run (deterministic)."""
    if role == "onboard":
        one = _floats(100, 50.0, 10.0)
        two = {"speed": _floats(100, 50.0, 10.0), "rpm": _floats(100, 2000.0, 300.0)}
        return [
            one,
            two,
            {"data": one, "model": None},
            {"data": two, "model": {"weights": [0.5, -0.25, 1.0]}},
        ]
    if role == "offboard":
        return [
            [51.2, 49.8, 50.4],
            [_floats(5, 1.0, 0.5), _floats(5, 2.0, 0.5), _floats(5, 3.0, 0.5)],
            [{"speed": 51.2, "rpm": 2010.5}, {"speed": 49.8, "rpm": 1990.0}],
        ]
    raise ValueError(f"role must be 'onboard' or 'offboard', not {role!r}")


def describe_input(x: object) -> str:
    """A short description of an input's shape, for messages ("a list of 100 numbers")."""
    if isinstance(x, dict) and set(x) == {"data", "model"}:
        data, model = describe_input(x["data"]), describe_input(x["model"])
        return f"the federated form {{'data': {data}, 'model': {model}}}"
    if isinstance(x, dict):
        return f"a dict of {len(x)} signal{'s' if len(x) != 1 else ''} ({', '.join(map(str, x))})"
    if isinstance(x, list):
        names = {int: "numbers", float: "numbers", list: "lists", dict: "dicts"}
        kinds = sorted({names.get(type(i), type(i).__name__) for i in x})
        return f"a list of {len(x)} {' and '.join(kinds) or 'items'}"
    return "None" if x is None else type(x).__name__
