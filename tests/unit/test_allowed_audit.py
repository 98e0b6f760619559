"""The restricted layer on its own: the audit of the allowed modules, every escape of the
catalogue refused by the guards alone (no jail), and the legitimate uses they keep working."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_escapes import ESCAPES

from oodida_core.customcode.check import CodePolicy, MiB, code_version
from oodida_core.customcode.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
UNIT = Path(__file__).resolve().parent

# Runs the escapes through the static check and the guards in a plain process: no jail, no audit
# hook, nothing but the restricted layer (files cannot be written, in case a guard regresses).
_ALONE = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from hostile_escapes import ESCAPES
from oodida_core.customcode._guards import _Guards
from oodida_core.customcode.check import DEFAULT_ALLOWED_IMPORTS, check_source
from oodida_core.protocol.errors import CustomCodeError
guards = _Guards(DEFAULT_ALLOWED_IMPORTS)
out = {}
for name, source, _ in ESCAPES:
    try:
        namespace = dict(guards.template)
        namespace["_print_"] = None
        exec(check_source(source, "hostile.py").code, namespace)
        out[name] = "ran: " + repr(namespace["custom_code"]([1.0, 2.0]))[:200]
    except CustomCodeError as exc:
        out[name] = str(exc)
    except Exception as exc:
        out[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_the_audit_finds_nothing_dangerous_that_is_neither_refused_nor_guarded() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "audit_allowed.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stderr
    assert summary.endswith(", 0 open") and "refused" in summary
    assert "typing.NamedTuple" in done.stdout and "functools.singledispatch " in done.stdout


def test_the_guards_alone_refuse_every_escape_without_the_jail() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ALONE, str(ROOT), str(UNIT)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = {name: outcome[name] for name, _, fragment in ESCAPES if fragment not in outcome[name]}
    assert wrong == {}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(CodePolicy(time_limit=20.0, memory_limit=512 * MiB), max_children=1) as box:
        yield box


def run(box: Sandbox, source: str) -> object:
    return box.run((code_version(source), "legit.py", source), [1.0, 2.0, 4.0])


def test_dataclasses_namedtuples_and_plain_annotations_still_work(sandbox: Sandbox) -> None:
    source = (
        "import collections\nimport dataclasses\nimport typing\n\n"
        "@dataclasses.dataclass(frozen=True)\nclass Stats:\n    n: int\n    mean: float = 0.0\n"
        "    tags: typing.List[str] = dataclasses.field(default_factory=list)\n\n"
        "class Pair(typing.NamedTuple):\n    low: float\n    high: float\n\n"
        "Point = collections.namedtuple('Point', ['x', 'y'], defaults=[0.0])\n\n"
        "def custom_code(x: typing.List[float]) -> typing.Dict[str, typing.Any]:\n"
        "    s = dataclasses.replace(Stats(len(x)), mean=sum(x) / len(x))\n"
        "    return {'s': dataclasses.asdict(s), 'pair': Pair(min(x), max(x)), 'p': Point(1.0),\n"
        "            'lit': str(typing.Literal['a'])}\n"
    )
    assert run(sandbox, source) == {
        "s": {"n": 3, "mean": 7 / 3, "tags": []},
        "pair": [1.0, 4.0],
        "p": [1.0, 0.0],
        "lit": "typing.Literal['a']",
    }


def test_single_dispatch_with_plain_annotations_and_own_classes_still_work(sandbox: Sandbox) -> None:
    source = (
        "import collections.abc\nimport functools\n\n"
        "@functools.singledispatch\ndef size(v):\n    return 1\n\n"
        "@size.register\ndef size_list(v: list):\n    return len(v)\n\n"
        "class Shape:\n    @functools.singledispatchmethod\n    def area(self, v):\n        return 0\n\n"
        "    @area.register\n    def area_float(self, v: float):\n        return v * v\n\n"
        "@functools.total_ordering\nclass Version:\n    def __init__(self, n):\n        self.n = n\n\n"
        "    def __eq__(self, other):\n        return self.n == other.n\n\n"
        "    def __lt__(self, other):\n        return self.n < other.n\n\n"
        "class Bag(collections.abc.Hashable):\n    pass\n\n"
        "class Other:\n    pass\n\n"
        "def custom_code(x):\n    Bag.register(Other)\n"
        "    ordered = Version(1) >= Version(0)\n"
        "    return [size(x), size(1), Shape().area(2.0), ordered, isinstance(Other(), Bag)]\n"
    )
    assert run(sandbox, source) == [3, 1, 4.0, True, True]


def test_numpy_polynomials_chararrays_decimal_contexts_and_narrow_generators_still_work(
    sandbox: Sandbox,
) -> None:
    source = (
        "import decimal\nimport numpy as np\n\n"
        "def pairs(v):\n    for a in v:\n        try:\n            yield 1.0 / a\n"
        "        except ZeroDivisionError:\n            yield 0.0\n\n"
        "def custom_code(x):\n"
        "    fit = np.polynomial.Polynomial.fit(x, x, 1)\n"
        "    chars = np.char.chararray((2,), itemsize=3, unicode=True)\n    chars[:] = 'ab'\n"
        "    with decimal.localcontext(decimal.Context(prec=3)):\n"
        "        third = str(decimal.Decimal(1) / 3)\n"
        "    return [round(float(fit(2.0)), 6), chars.tolist(), third, list(pairs([2, 0])), '%.1f' % x[0]]\n"
    )
    assert run(sandbox, source) == [2.0, ["ab", "ab"], "0.333", [0.5, 0.0], "1.0"]
