"""A catalogue of hostile or broken custom modules: (name, source, expected error fragment).

Every module must be refused (by ``check_source`` at deploy time, or by the sandbox when it
runs) with a message containing the fragment; a fragment of None means the module runs and
the sandbox contains it (its output is bounded). The tests run each one and then check that
the same sandbox still serves the next call. Add new cases at the end.

The tests run the catalogue with a 1 s time limit and a 256 MiB memory limit.
"""

from __future__ import annotations


def _module(body: str, imports: str = "") -> str:
    lines = body.strip("\n").splitlines()
    return imports + "def custom_code(x):\n" + "".join(f"    {line}\n" for line in lines)


NP = "import numpy as np\n"

HOSTILE: list[tuple[str, str, str | None]] = [
    # imports outside the allowlist
    *[
        (f"import_{m}", _module("return 1", f"import {m}\n"), f"import of '{m}' is not allowed")
        for m in ("os", "subprocess", "socket", "sys", "builtins", "importlib", "ctypes")
    ],
    ("from_os_import", _module("return 1", "from os import path\n"), "import of 'os' is not allowed"),
    ("nested_import", _module("import os\nreturn os.getcwd()"), "import of 'os' is not allowed"),
    ("relative_import", _module("return 1", "from . import helper\n"), "relative imports"),
    ("star_import", _module("return 1", "from numpy import *\n"), '"*" imports are not allowed'),
    # numpy's ways to files, raw memory and internals
    (
        "from_numpy_import_load",
        _module("return 1", "from numpy import load\n"),
        "numpy.load is not available",
    ),
    ("numpy_lib", _module("return np.lib.stride_tricks.as_strided", NP), "numpy.lib is not available"),
    ("import_numpy_lib", _module("return 1", "import numpy.lib.stride_tricks\n"), "numpy.lib.stride_tricks"),
    ("numpy_ctypeslib", _module("return np.ctypeslib.as_array(0)", NP), "ctypeslib"),
    ("numpy_fromfile", _module("return np.fromfile('/etc/passwd').tolist()", NP), "fromfile"),
    ("array_tofile", _module("np.array(x).tofile('/tmp/oodida-hostile')\nreturn 1", NP), "tofile"),
    ("numpy_memmap", _module("return np.memmap('/etc/passwd').tolist()", NP), "memmap"),
    ("numpy_save", _module("np.save('/tmp/oodida-hostile', x)\nreturn 1", NP), "numpy.save is not available"),
    (
        "numpy_rec_fromstring",
        _module("return np.rec.fromstring(b'x' * 8, dtype=[('a', 'O')])", NP),
        "numpy.rec",
    ),
    ("array_ctypes", _module("return np.zeros(1).ctypes.data", NP), "ctypes"),
    ("numpy_ma_core", _module("return np.ma.core.builtins", NP), "numpy.ma.core"),
    # the same, spelled so that only the sandbox can see it
    ("dynamic_numpy_load", _module("return getattr(np, 'lo' + 'ad')('/etc/passwd')", NP), "numpy.load"),
    ("dynamic_numpy_lib", _module("return getattr(np, 'l' + 'ib').stride_tricks", NP), "numpy.lib"),
    ("dynamic_tofile", _module("getattr(np.array(x), 'to' + 'file')('/tmp/oodida-hostile')", NP), "tofile"),
    ("dynamic_dunder", _module("return getattr(x, '_' + '_class__')"), "names starting with '_'"),
    (
        "ndarray_over_raw_memory",
        _module("return np.ndarray((1,), dtype=object, buffer=np.zeros(1)).tolist()", NP),
        "buffer=",
    ),
    ("array_resize_refcheck", _module("a = np.zeros(3)\na.resize((10,), refcheck=False)", NP), "resize"),
    (
        "array_dtype_write",
        _module("a = np.zeros(2)\na.dtype = object\nreturn 1", NP),
        "cannot change attributes",
    ),
    ("subclass_ndarray", _module("class A(np.ndarray):\n    pass\nreturn 1", NP), "subclassing numpy arrays"),
    # files, generated code, the interpreter's internals
    ("open_passwd", _module("return open('/etc/passwd').read()"), "open() is not available"),
    ("dunder_import", _module("return __import__('os').getcwd()"), 'starts with "_"'),
    ("eval", _module("return eval('1 + 1')"), "Eval calls are not allowed"),
    ("exec", _module("exec('y = 1')\nreturn 1"), "Exec calls are not allowed"),
    ("compile", _module("return compile('1', 'f', 'eval')"), "compile() is not available"),
    ("getattr_class", _module("return getattr(x, '__class__')"), "'__class__'"),
    ("subclasses_walk", _module("return ().__class__.__bases__[0].__subclasses__()"), '"__class__"'),
    ("function_globals", _module("return custom_code.__globals__"), '"__globals__"'),
    ("function_code", _module("def f():\n    pass\nreturn f.__code__"), '"__code__"'),
    ("globals", _module("return globals()"), "globals() is not available"),
    ("vars", _module("return vars()"), "vars() is not available"),
    (
        "frame_walk",
        _module("walk = lambda g: g.gi_frame.f_back.f_globals\nreturn walk(i for i in x)"),
        "gi_frame",
    ),
    ("type_three_args", _module("return type('A', (), {})"), "type() takes one argument"),
    ("metaclass_of", _module("return type(type(x))('A', (), {})"), "it can build code or classes"),
    ("str_format_escape", _module("return '{0.__class__}'.format(x)"), "'format' is not available"),
    ("attrgetter", _module("return operator.attrgetter('__class__')(x)", "import operator\n"), "attrgetter"),
    (
        "dynamic_attrgetter",
        _module("return getattr(operator, 'attr' + 'getter')('__class__')(x)", "import operator\n"),
        "attrgetter",
    ),
    ("update_wrapper", _module("return functools.update_wrapper", "import functools\n"), "update_wrapper"),
    (
        "get_type_hints",
        _module("return typing.get_type_hints(custom_code)", "import typing\n"),
        "get_type_hints",
    ),
    (
        "make_dataclass",
        _module("return dataclasses.make_dataclass('A', [])", "import dataclasses\n"),
        "make_dataclass",
    ),
    ("module_reexport", _module("return dataclasses.sys.modules", "import dataclasses\n"), "import of 'sys'"),
    (
        "module_reexport_types",
        _module("return dataclasses.types.FunctionType", "import dataclasses\n"),
        "import of 'types'",
    ),
    ("module_write", _module("math.pi = 3\nreturn 1", "import math\n"), "cannot change"),
    (
        "metaclass_keyword",
        _module("class A(metaclass=abs):\n    pass\nreturn 1"),
        '"metaclass" is not allowed',
    ),
    ("exit", _module("exit()"), "exit() is not available"),
    ("raise_system_exit", _module("raise SystemExit(3)"), "SystemExit"),
    # runaway code: stopped, and the worker goes on serving
    ("infinite_loop", _module("while True:\n    pass"), "ran longer than 1 s and was stopped"),
    ("memory_list_bomb", _module("return [0] * 10**10"), "used more than 256 MiB and was stopped"),
    ("memory_string_bomb", _module("return 'x' * 10**10"), "used more than 256 MiB and was stopped"),
    ("memory_growing_list", _module("y = [0]\nwhile True:\n    y = y + y"), "used more than 256 MiB"),
    ("memory_numpy", _module("return np.ones(10**10).sum()", NP), "used more than 256 MiB"),
    (
        "deep_recursion",
        "def f(n):\n    return f(n + 1)\n\ndef custom_code(x):\n    return f(0)\n",
        "RecursionError",
    ),
    ("print_flooding", _module("for i in range(20000):\n    print('x' * 100)\nreturn printed[-30:]"), None),
    # results outside the contract
    ("huge_result", _module("return 'x' * (2 * 1024 * 1024)"), "once serialised to JSON"),
    ("huge_list_result", _module("return [1.5] * 400000"), "at most 1.0 MiB is allowed"),
    ("nan_result", _module("return float('nan')"), "only finite numbers"),
    ("inf_result", _module("return {'a': [1.0, float('inf')]}"), "result['a'][1] is inf"),
    ("numpy_nan_result", _module("return np.array([1.0, np.nan])", NP), "result[1] is nan"),
    ("set_result", _module("return {'a': [0, 1, 2, set(x)]}"), "result['a'][3] is a set"),
    ("bytes_result", _module("return b'abc'"), "result is bytes"),
    ("object_result", _module("class A:\n    pass\nreturn A()"), "result is a A object"),
    ("function_result", _module("return custom_code"), "result is a function"),
    ("none_result", _module("y = 1"), "result is None"),
    ("int_key_result", _module("return {1: 2}"), "dictionary keys must be strings"),
    ("deep_result", _module("y = []\nfor i in range(100):\n    y = [y]\nreturn y"), "nested more than 64"),
    ("object_array_result", _module("return np.array([None, 1], dtype=object)", NP), "Python objects"),
    # the entry point
    ("no_custom_code", "def f(x):\n    return 1\n", "does not define custom_code"),
    ("two_parameters", "def custom_code(x, y):\n    return 1\n", "exactly one positional parameter"),
    ("star_args", "def custom_code(*args):\n    return 1\n", "exactly one positional parameter"),
    ("keyword_only", "def custom_code(x, *, y=1):\n    return 1\n", "exactly one positional parameter"),
    ("no_parameters", "def custom_code():\n    return 1\n", "exactly one positional parameter"),
    ("lambda", "custom_code = lambda x: 1\n", "custom_code is assigned here"),
    ("a_class", "class custom_code:\n    pass\n", "custom_code is a class"),
    ("async", "async def custom_code(x):\n    return 1\n", "not async def"),
    ("syntax_error", "def custom_code(x):\n    y = 1\n    return (y\n", "hostile.py line 3: syntax error"),
    (
        "zero_division_line_7",
        "import math\n\n\ndef custom_code(x):\n    total = len(x)\n    n = 0\n    return total / n\n",
        "ZeroDivisionError: division by zero (hostile.py line 7, in custom_code)",
    ),
]
