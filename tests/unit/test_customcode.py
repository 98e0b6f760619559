"""Custom code without running it: versions, the policy, static checks, result checking."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, OrderedDict

import numpy as np
import pytest

from oodida_core.customcode.check import (
    DEFAULT_ALLOWED_IMPORTS,
    CodePolicy,
    MiB,
    attribute_refusal,
    check_imports_resolve,
    check_result,
    check_source,
    code_version,
    describe_input,
    encode_result,
    module_refusal,
    sample_inputs,
    unresolved_imports,
)
from oodida_core.protocol.errors import CustomCodeError, OodidaError

GOOD = "import numpy as np\nimport statistics\n\ndef custom_code(x):\n    return float(np.mean(x))\n"


def problems(source: str, policy: CodePolicy | None = None) -> str:
    with pytest.raises(CustomCodeError) as caught:
        check_source(source, "my_module.py", policy)
    return str(caught.value)


def test_code_version_is_sha256_of_the_utf8_source() -> None:
    source = "def custom_code(x):\n    return 'héllo'\n"
    assert code_version(source) == "sha256:" + hashlib.sha256(source.encode("utf-8")).hexdigest()
    assert code_version(source) != code_version(source + "\n")


def test_policy_defaults_are_numpy_and_the_pure_computation_standard_library() -> None:
    policy = CodePolicy()
    assert {"numpy", "math", "statistics", "json", "re", "collections"} <= policy.allowed_imports
    assert policy.time_limit == 30 and policy.memory_limit == 512 * MiB
    assert policy.max_source_bytes == 256 * 1024 and policy.max_result_bytes == MiB


def test_policy_from_env_reads_the_operators_settings() -> None:
    env = {
        "OODIDA_CODE_ALLOWED_IMPORTS": " numpy, math ,scipy,",
        "OODIDA_CODE_TIME_LIMIT": "2.5",
        "OODIDA_CODE_MEMORY_LIMIT": "256MiB",
    }
    policy = CodePolicy.from_env(env)
    assert policy.allowed_imports == {"numpy", "math", "scipy"}
    assert policy.time_limit == 2.5 and policy.memory_limit == 256 * MiB
    assert CodePolicy.from_env({}) == CodePolicy()
    assert CodePolicy.from_env({"OODIDA_CODE_MEMORY_LIMIT": str(300 * MiB)}).memory_limit == 300 * MiB


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"OODIDA_CODE_ALLOWED_IMPORTS": "numpy,os"}, "os can never be allowed"),
        ({"OODIDA_CODE_ALLOWED_IMPORTS": "numpy,not-a-module"}, "'not-a-module' is not a module name"),
        ({"OODIDA_CODE_TIME_LIMIT": "soon"}, "OODIDA_CODE_TIME_LIMIT"),
        ({"OODIDA_CODE_TIME_LIMIT": "0"}, "time_limit"),
        ({"OODIDA_CODE_MEMORY_LIMIT": "1MiB"}, "at least 128 MiB"),
    ],
)
def test_policy_refuses_bad_settings(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(OodidaError, match=fragment):
        CodePolicy.from_env(env)


def test_a_good_module_passes_with_its_version_and_imports() -> None:
    checked = check_source(GOOD, "mean.py")
    assert checked.version == code_version(GOOD) and checked.filename == "mean.py"
    assert checked.imports == ("numpy", "statistics") and checked.code is not None
    assert check_source(GOOD.encode("utf-8"), "mean.py").version == checked.version


def test_every_problem_is_listed_with_its_line_not_just_the_first() -> None:
    source = (
        "import os\n"  # 1
        "from numpy import load\n"  # 2
        "\n"
        "def custom_code(x, y):\n"  # 4
        "    open('/etc/passwd')\n"  # 5
        "    return x._secret\n"  # 6
    )
    text = problems(source)
    assert text.startswith("my_module.py cannot be used as custom code (5 problems):")
    for fragment in (
        "my_module.py line 1: import of 'os' is not allowed",
        "my_module.py line 2: numpy.load is not available",
        "my_module.py line 4: custom_code must take exactly one positional parameter",
        "my_module.py line 5: open() is not available in custom code: custom code has no file access",
        'my_module.py line 6: "_secret" is an invalid attribute name',
    ):
        assert fragment in text


def test_a_syntax_error_names_its_line() -> None:
    assert "my_module.py line 3: syntax error" in problems("def custom_code(x):\n    y = 1\n    return y +\n")
    assert "line 2: syntax error: '[' was never closed" in problems("def custom_code(x):\n    y = [1,\n")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("x = 1\n", "does not define custom_code"),
        ("def custom_code():\n    return 1\n", "it takes no parameters"),
        ("def custom_code(x, y=1):\n    return 1\n", "it takes (x, y=1)"),
        ("def custom_code(**kw):\n    return 1\n", "it takes (**kw)"),
        ("def custom_code(x, /, *, y):\n    return 1\n", "exactly one positional parameter"),
        ("custom_code = lambda x: x\n", "line 1: custom_code is assigned here"),
        ("def custom_code(x):\n    return 1\ncustom_code = None\n", "line 3: custom_code is assigned here"),
        ("from math import sqrt as custom_code\n", "custom_code is assigned here"),
        ("class custom_code:\n    pass\n", "custom_code is a class"),
        ("async def custom_code(x):\n    return 1\n", "not async def"),
        ("def outer():\n    def custom_code(x):\n        return 1\n", "line 2: custom_code is nested"),
    ],
)
def test_the_entry_point_must_be_a_top_level_function_of_one_parameter(source: str, fragment: str) -> None:
    assert fragment in problems(source)


def test_a_default_on_the_one_parameter_and_decorators_are_fine() -> None:
    check_source("import functools\n\n@functools.lru_cache\ndef custom_code(x=None):\n    return 1\n", "m.py")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("import scipy\n", "import of 'scipy' is not allowed"),
        ("import numpy.testing\n", "numpy.testing is not available"),
        ("from numpy.lib import stride_tricks\n", "numpy.lib is not available"),
        ("from numpy import ctypeslib\n", "numpy.ctypeslib is not available"),
        (
            "import numpy as np\ny = np.random.default_rng().bit_generator.ctypes\n",
            ".ctypes is not available",
        ),
        ("from typing import get_type_hints\n", "typing.get_type_hints is not available"),
        ("import typing\ny = typing.Type\n", "only type annotations"),
        ("def f():\n    import os\n", "line 2: import of 'os' is not allowed"),
        ("def f(x):\n    return x.tofile('a')\n", ".tofile is not available"),
        ("y = type('A', (), {})\n", "type() takes one argument"),
        ("y = hasattr(1, '__class__')\n", "hasattr() with the name '__class__'"),
        ("y = globals()\n", "globals() is not available"),
    ],
)
def test_imports_and_names_that_custom_code_cannot_use_are_refused(source: str, fragment: str) -> None:
    assert fragment in problems(source + "\ndef custom_code(x):\n    return 1\n")


def test_a_name_the_module_defines_itself_is_not_mistaken_for_a_builtin() -> None:
    check_source("def custom_code(x):\n    input = x\n    vars = len(input)\n    return vars\n", "m.py")
    check_source("import numpy as np\nnp = None\n\ndef custom_code(x):\n    return np.load\n", "m.py")


def test_the_operator_can_allow_more_modules() -> None:
    source = "import scipy.stats\n\ndef custom_code(x):\n    return 1\n"
    policy = CodePolicy(allowed_imports=DEFAULT_ALLOWED_IMPORTS | {"scipy"})
    assert check_source(source, "m.py", policy).imports == ("scipy.stats",)


def test_item_and_attribute_augmented_assignment_and_annotations_compile() -> None:
    source = (
        "from dataclasses import dataclass\n\n@dataclass\nclass P:\n    n: int = 0\n\n"
        "def custom_code(x):\n    c = {'a': 0}\n    c['a'] += 1\n    p = P()\n    p.n += 2\n"
        "    total: float = 0.0\n    return [c, p.n, total]\n"
    )
    check_source(source, "m.py")
    assert '"_n"' in problems("def custom_code(x):\n    x._n += 1\n")


def test_size_and_encoding_are_checked_first() -> None:
    small = CodePolicy(max_source_bytes=100)
    assert "is 126 bytes; the limit is 100 bytes" in problems("#" * 100 + "\n" + GOOD[:25], small)
    with pytest.raises(CustomCodeError, match="not UTF-8 text"):
        check_source(b"def custom_code(x):\n    return '\xff'\n", "m.py")


def test_imports_that_do_not_resolve_here_are_named() -> None:
    policy = CodePolicy(allowed_imports=DEFAULT_ALLOWED_IMPORTS | {"oodida_no_such_package"})
    checked = check_source(
        "import numpy\nimport oodida_no_such_package\n\ndef custom_code(x):\n    return 1\n", "m.py", policy
    )
    assert unresolved_imports(checked) == ["oodida_no_such_package"]
    with pytest.raises(CustomCodeError, match="oodida_no_such_package, which is not installed"):
        check_imports_resolve(checked)
    check_imports_resolve(check_source(GOOD, "m.py"))


def test_refusal_tables_agree_with_the_contract() -> None:
    allowed = DEFAULT_ALLOWED_IMPORTS
    assert module_refusal("numpy.linalg", allowed) is None and module_refusal("numpy.random", allowed) is None
    assert (
        module_refusal("collections.abc", allowed) is None and module_refusal("__future__", allowed) is None
    )
    assert module_refusal("numpy.polynomial.chebyshev", allowed) is None
    for bad in ("os", "numpy.lib", "numpy.core", "numpy.f2py", "numpy._core", "numpy.ma.mrecords", "json._x"):
        assert module_refusal(bad, allowed) is not None
    assert attribute_refusal("numpy", "mean") is None and attribute_refusal("json", "dumps") is None
    for module, name in [
        ("numpy", "save"),
        ("numpy", "dumps"),
        ("numpy.ma", "load"),
        ("operator", "attrgetter"),
    ]:
        assert attribute_refusal(module, name) is not None


def test_results_are_converted_to_the_contracts_types() -> None:
    value = {
        "t": (1, 2.5, "a", True),
        "np": np.float32(1.5),
        "arr": np.arange(3),
        "m": np.eye(2),
        "c": Counter(a=2),
        "o": OrderedDict(b=[np.int8(3)]),
        "b": np.bool_(False),
    }
    converted = check_result(value)
    assert converted == {
        "t": [1, 2.5, "a", True],
        "np": 1.5,
        "arr": [0, 1, 2],
        "m": [[1.0, 0.0], [0.0, 1.0]],
        "c": {"a": 2},
        "o": {"b": [3]},
        "b": False,
    }
    assert type(converted["b"]) is bool and type(converted["arr"][0]) is int  # type: ignore[index]
    assert json.loads(encode_result(value)) == converted


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"a": [0, 1, 2, {3}]}, "result['a'][3] is a set"),
        ([b"x"], "result[0] is bytes"),
        (float("nan"), "result is nan"),
        ({"x": [float("-inf")]}, "result['x'][0] is -inf"),
        (np.array([1.0, np.inf]), "result[1] is inf"),
        (np.array([None]), "numpy value holding Python objects"),
        ({1: "a"}, "result has the key 1 (int); dictionary keys must be strings"),
        (None, "result is None"),
        ([1j], "result[0] is complex"),
        (object(), "result is a object object"),
        (len, "result is a function"),
        (int, "result is a class"),
    ],
)
def test_results_outside_the_contract_are_refused_with_their_path(value: object, fragment: str) -> None:
    with pytest.raises(CustomCodeError, match=None) as caught:
        check_result(value)
    assert fragment in str(caught.value)


def test_results_nested_deeper_than_64_levels_are_refused() -> None:
    value: list[object] = []
    for _ in range(64):
        value = [value]
    check_result(value)
    with pytest.raises(CustomCodeError, match="nested more than 64 levels"):
        check_result([value])


def test_results_larger_than_the_limit_say_how_big_they_were() -> None:
    check_result("x" * (MiB - 2))
    with pytest.raises(
        CustomCodeError, match=r"the result is 1.0 MiB once serialised to JSON; at most 1.0 MiB"
    ):
        check_result("x" * MiB)
    with pytest.raises(CustomCodeError, match="at most 10 bytes"):
        check_result([1, 2, 3, 4, 5], CodePolicy(max_result_bytes=10))


def test_sample_inputs_have_the_expected_shapes() -> None:
    one, several, fed_one, fed_several = sample_inputs("onboard")
    assert isinstance(one, list) and all(isinstance(v, float) for v in one)
    assert isinstance(several, dict) and set(several) == {"speed", "rpm"}
    assert fed_one == {"data": one, "model": None}
    assert isinstance(fed_several, dict) and fed_several["data"] == several and fed_several["model"]
    assert [describe_input(x) for x in sample_inputs("offboard")] == [
        "a list of 3 numbers",
        "a list of 3 lists",
        "a list of 2 dicts",
    ]
    assert describe_input(fed_one) == "the federated form {'data': a list of 100 numbers, 'model': None}"
    assert sample_inputs("onboard") == sample_inputs("onboard")
    with pytest.raises(ValueError):
        sample_inputs("cloud")  # type: ignore[arg-type]
