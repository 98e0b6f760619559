"""A catalogue of hostile or broken custom modules: (name, source, expected error fragment).

Every module must be refused (by ``check_source`` at deploy time, or by the sandbox when it
runs) with a message containing the fragment; a fragment of None means the module runs and
the sandbox contains it (its printed output stays bounded). The tests run each one, check that
every message is short, and then that the same sandbox still serves the next call. Add new
cases to their category.

The categories (issue 5's list, and what else was tried):

* imports outside the allowlist, and modules re-exported by allowed ones (``json.codecs``,
  ``statistics.sys``);
* numpy's ways to files, raw memory and internals (``load``, ``genfromtxt``, ``fromregex``,
  ``savetxt``, ``memmap``, ``ctypeslib``, ``lib``, ``testing``, ``f2py``, ``core``,
  ``frombuffer`` of objects, object views), also spelled dynamically or through ``*args`` and
  ``**kwargs``;
* introspection: dunder attributes, ``getattr``/``attrgetter``/``methodcaller``/``map`` with
  dunder names, ``str.format`` and ``string.Formatter``, frames and generators, ``globals``,
  ``vars``, ``dir``, ``mro``, three-argument ``type``, metaclasses, ``memoryview``;
* interaction and exits: ``open``, ``eval``, ``exec``, ``compile``, ``input``, ``help``,
  ``breakpoint``, ``exit``, ``quit``, ``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``;
* infinite loops, in Python and inside C code (``sum(itertools.count())``, a backtracking regex,
  a huge power, ``math.factorial``), and a loop that catches every exception: stopped at the
  time limit;
* memory bombs (lists, strings, bytearrays, dicts, numpy, ``format`` widths, nesting): stopped
  at the memory limit; one that catches its MemoryError runs on within the limit;
* deep recursion, in Python and in C (``json``, ``repr``, comparison, ``deepcopy``);
* results outside the contract: huge, non-finite (NaN, ±inf, numpy and Decimal NaN), integers
  too large for JSON, self-referencing, iterators, generators, sets, bytes, objects, None;
* output flooding: megabytes printed in one call or in 100,000 calls (a million in
  test_sandbox.py, with a longer time limit), huge exception messages;
* broken entry points: no ``custom_code``, wrong arity, a class, a lambda, async, syntax errors.

* routes through the allowed modules around the guards (issue 11): ``eval``/``exec`` of strings
  through typing, functools, dataclasses and collections, ``str.format`` on every kind of
  string, numpy's tests, files and raw memory, and state shared with the next call; they live
  in ``hostile_escapes.ESCAPES``, appended here.

The tests run the catalogue with a 1 s time limit and a 256 MiB memory limit.
"""

from __future__ import annotations

from hostile_escapes import ESCAPES


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
    # ---- modules re-exported by allowed ones
    (
        "json_codecs_open",
        _module("return json.codecs.open('/etc/passwd').read()", "import json\n"),
        "import of 'codecs'",
    ),
    ("statistics_sys", _module("return statistics.sys.modules", "import statistics\n"), "import of 'sys'"),
    ("random_os", _module("return random.os.getcwd()", "import random\n"), "has no attribute 'os'"),
    ("enum_import", _module("return 1", "import enum\n"), "import of 'enum' is not allowed"),
    (
        "abc_metaclass",
        _module("return abc.ABCMeta('A', (), {})", "import abc\n"),
        "import of 'abc' is not allowed",
    ),
    # ---- more of numpy's ways out
    ("numpy_testing", _module("return np.testing.os", NP), "numpy.testing is not available"),
    ("numpy_genfromtxt", _module("return np.genfromtxt('/etc/passwd').tolist()", NP), "numpy.genfromtxt"),
    (
        "numpy_loadtxt_dynamic",
        _module("return getattr(np, 'load' + 'txt')('/etc/passwd')", NP),
        "'loadtxt' is not available",
    ),
    (
        "numpy_fromregex",
        _module("return np.fromregex('/etc/passwd', 'r', [('a', 'S5')])", NP),
        "numpy.fromregex",
    ),
    ("numpy_savetxt", _module("np.savetxt('/tmp/oodida-hostile', x)\nreturn 1", NP), "numpy.savetxt"),
    ("numpy_f2py", _module("return np.f2py", NP), "numpy.f2py is not available"),
    ("numpy_core", _module("return np.core.multiarray", NP), "numpy.core is not available"),
    ("numpy_show_config", _module("np.show_config()\nreturn 1", NP), "numpy.show_config"),
    (
        "numpy_frombuffer_objects",
        _module("return np.frombuffer(bytearray(16), dtype=object).tolist()", NP),
        "cannot create an OBJECT array from memory buffer",
    ),
    ("numpy_view_as_objects", _module("return np.zeros(2).view(object).tolist()", NP), "array of references"),
    # ---- the same escapes through *args and **kwargs (RestrictedPython's _apply_)
    ("star_args_getattr", _module("return getattr(*[x, '_' + '_class__'])"), "names starting with '_'"),
    ("star_args_type", _module("return type(*('A', (), {}))"), "type() takes one argument"),
    ("star_args_numpy_load", _module("return getattr(np, *['lo' + 'ad'])('/etc/passwd')", NP), "numpy.load"),
    (
        "kwargs_ndarray_buffer",
        _module("return np.ndarray((1,), **{'dtype': object, 'buffer': np.zeros(1)}).tolist()", NP),
        "buffer=",
    ),
    ("kwargs_resize", _module("a = np.zeros(3)\na.resize(*[(10,)], **{'refcheck': False})", NP), "resize"),
    (
        "star_args_str_format",
        _module("return str.format(*['{0.__class__}', x])"),
        "'format' is not available",
    ),
    # ---- introspection
    (
        "methodcaller_dunder",
        _module("return operator.methodcaller('__reduce_ex__', 2)(x)", "import operator\n"),
        "methodcaller",
    ),
    ("map_getattr", _module("return list(map(getattr, [x], ['_' + '_class__']))"), "names starting with '_'"),
    (
        "string_formatter",
        _module("return string.Formatter().format('{0.__class__}', x)", "import string\n"),
        "string.Formatter",
    ),
    ("type_mro", _module("return type(x).mro()[-1]"), ".mro is not available"),
    ("dir", _module("return dir(x)"), "dir() is not available"),
    ("memoryview", _module("return memoryview(b'abc').tolist()"), "memoryview() is not available"),
    # ---- interaction and exits
    ("help", _module("help(x)\nreturn 1"), "help() is not available"),
    ("breakpoint", _module("breakpoint()\nreturn 1"), "breakpoint() is not available"),
    ("input", _module("return input()"), "input() is not available"),
    ("quit", _module("quit()"), "quit() is not available"),
    ("keyboard_interrupt", _module("raise KeyboardInterrupt"), "KeyboardInterrupt (hostile.py line 2"),
    ("generator_exit", _module("raise GeneratorExit"), "GeneratorExit (hostile.py line 2"),
    ("base_exception", _module("raise BaseException('x')"), "BaseException: x"),
    ("raise_a_number", _module("raise 5"), "exceptions must derive from BaseException"),
    # ---- loops the interpreter cannot interrupt, and one that catches everything
    (
        "loop_in_c_itertools",
        _module("return sum(itertools.count())", "import itertools\n"),
        "ran longer than 1 s",
    ),
    (
        "regex_backtracking",
        _module("return bool(re.match('(a+)+$', 'a' * 40 + 'b'))", "import re\n"),
        "ran longer than 1 s",
    ),
    ("huge_power", _module("return 10 ** 10 ** 9 > 0"), "ran longer than 1 s"),
    ("huge_factorial", _module("return math.factorial(10 ** 8) > 0", "import math\n"), "ran longer than 1 s"),
    ("iter_sentinel_loop", _module("for _ in iter(int, 1):\n    pass"), "ran longer than 1 s"),
    (
        "loop_catching_everything",
        _module(
            "while True:\n    try:\n        while True:\n            pass\n"
            "    except BaseException:\n        pass"
        ),
        "ran longer than 1 s",
    ),
    # ---- more memory bombs
    ("bytearray_bomb", _module("return len(bytearray(10 ** 10))"), "used more than 256 MiB"),
    ("numpy_2d_bomb", _module("return np.empty((10 ** 6, 10 ** 6)).shape[0]", NP), "used more than 256 MiB"),
    ("dict_bomb", _module("return len({i: i for i in range(10 ** 9)})"), "used more than 256 MiB"),
    ("format_width_bomb", _module("return format(1, '>10000000000')"), "used more than 256 MiB"),
    ("ljust_bomb", _module("return ' '.ljust(10 ** 10)"), "used more than 256 MiB"),
    ("input_repeat_bomb", _module("return len(x * 10 ** 9)"), "used more than 256 MiB"),
    (
        "nesting_bomb",
        _module("y = 1\nfor i in range(10 ** 7):\n    y = [y]\nreturn y"),
        "used more than 256 MiB",
    ),
    ("raise_memory_error", _module("raise MemoryError"), "used more than 256 MiB"),
    (
        "catch_memory_error",
        _module("try:\n    y = 'x' * 10 ** 10\nexcept MemoryError:\n    return 'within the limit'"),
        None,
    ),
    # ---- deep recursion, in Python and in C
    (
        "mutual_recursion",
        "def a(n):\n    return b(n + 1)\n\ndef b(n):\n    return a(n + 1)\n\n"
        "def custom_code(x):\n    return a(0)\n",
        "RecursionError",
    ),
    ("lambda_recursion", _module("f = lambda n: f(n + 1)\nreturn f(0)"), "RecursionError"),
    (
        "deep_json_dumps",
        _module("y = []\nfor i in range(10 ** 5):\n    y = [y]\nreturn json.dumps(y)", "import json\n"),
        "RecursionError",
    ),
    (
        "deep_json_loads",
        _module("return json.loads('[' * 10 ** 5 + ']' * 10 ** 5)", "import json\n"),
        "RecursionError",
    ),
    ("deep_repr", _module("y = []\nfor i in range(10 ** 5):\n    y = [y]\nreturn repr(y)"), "RecursionError"),
    (
        "deep_compare",
        _module("y, z = [], []\nfor i in range(10 ** 5):\n    y, z = [y], [z]\nreturn y == z"),
        "RecursionError",
    ),
    (
        "deep_deepcopy",
        _module("y = []\nfor i in range(10 ** 5):\n    y = [y]\nreturn copy.deepcopy(y)", "import copy\n"),
        "RecursionError",
    ),
    # ---- more results outside the contract
    ("minus_inf_result", _module("return -float('inf')"), "result is -inf"),
    ("numpy_inf_scalar_result", _module("return np.float64('inf')", NP), "result is inf"),
    (
        "decimal_nan_result",
        _module("return decimal.Decimal('NaN')", "import decimal\n"),
        "result is a Decimal object",
    ),
    (
        "fraction_result",
        _module("return fractions.Fraction(1, 3)", "import fractions\n"),
        "result is a Fraction object",
    ),
    ("complex_result", _module("return 1j"), "result is complex"),
    ("huge_int_result", _module("return 10 ** 5000"), "result is an integer of 16,610 bits"),
    ("huge_int_inside_result", _module("return {'n': [1, 7 ** 20000]}"), "result['n'][1] is an integer"),
    ("self_referencing_list", _module("y = []\ny.append(y)\nreturn y"), "nested more than 64"),
    ("self_referencing_dict", _module("y = {}\ny['a'] = y\nreturn y"), "nested more than 64"),
    ("iterator_result", _module("return iter(x)"), "result is a list_iterator object"),
    ("generator_result", _module("return (v for v in x)"), "result is a generator object"),
    ("range_result", _module("return range(3)"), "result is a range object"),
    ("huge_key_result", _module("return {'k' * 2000000: 1}"), "once serialised to JSON"),
    # ---- output flooding: megabytes printed, huge messages
    ("print_ten_megabytes", _module("print('x' * 10 ** 7)\nreturn len(printed)"), None),
    (
        "print_a_hundred_thousand_times",
        _module("for i in range(10 ** 5):\n    print('x', end='')\nreturn len(printed)"),
        None,
    ),
    ("print_a_huge_list", _module("print(x * 100000)\nreturn len(printed)"), None),
    ("print_into_the_input", _module("print('x', file=x)\nreturn 1"), "has no attribute 'write'"),
    ("huge_exception_message", _module("raise ValueError('x' * 10 ** 7)"), "ValueError: xxxx"),
    (
        "exception_with_a_million_args",
        _module("raise ValueError(*range(10 ** 6))"),
        "ValueError: (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...) (1,000,000 arguments)",
    ),
]
HOSTILE += ESCAPES
