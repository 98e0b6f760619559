"""Hostile modules of issue 11, item 5: routes through the allowed modules around the restricted
interpreter's guards, each tried as an attacker would and now refused (``HOSTILE`` in
``hostile_modules`` includes them; same format: name, source, expected error fragment).

Every case here escaped, or changed state shared with the next call, before it was closed; the
payloads are harmless (they count ``object.__subclasses__()``, the first step of every escape).

* ``eval``/``exec``/``compile`` of strings: ``functools.singledispatch(f).register(g)`` and
  ``singledispatchmethod`` (``typing.get_type_hints`` evaluates g's string annotations with g's
  globals and no guards), ``typing.ForwardRef`` built from ``List["..."]``, ``TypeVar``,
  ``NamedTuple`` and ``TypedDict``; ``dataclasses.dataclass`` of a class whose field names are
  code (a ``TypedDict`` built from a dict); ``collections.namedtuple`` with such names;
* ``str.format`` on ``str`` subclasses, ``collections.UserString``, numpy strings, reached
  through the class, ``super()`` or ``type()``; ``string.Formatter``;
* numpy: ``.test`` (pytest), ``dump`` on numpy scalars, ``np.char.chararray(buffer=...)``,
  writing into numpy's shared arrays (``Polynomial.domain``);
* state shared with the next call: ``decimal.DefaultContext``, the ABC registry,
  ``np.ma.masked_print_option``, ``dataclass``/``total_ordering`` on library classes, generator
  clean-up code left to run in a later call.
"""

from __future__ import annotations


def _module(body: str, imports: str = "") -> str:
    lines = body.strip("\n").splitlines()
    return imports + "def custom_code(x):\n" + "".join(f"    {line}\n" for line in lines)


NP = "import numpy as np\n"
FT = "import functools\n"
TY = "import typing\n"
# What an escape evaluates: a string of code, kept in a variable so that no annotation is a literal.
CODE = "OUT = []\nS = '(OUT.append(len(().__class__.__base__.__subclasses__())), int)[1]'\n"
STRING_ANNOTATION = "annotations written as strings are evaluated with eval()"
FORWARD = "typing evaluates types written as strings with eval()"
DISPATCH = "def f(a):\n    return 0\n\n"

ESCAPES: list[tuple[str, str, str | None]] = [
    # ---- eval/exec/compile of strings through typing, functools, dataclasses, collections
    (
        "singledispatch_register_string_annotation",
        FT
        + DISPATCH
        + "def g(a: '().__class__'):\n    return 1\n\n"
        + _module("functools.singledispatch(f).register(g)"),
        STRING_ANNOTATION,
    ),
    (
        "singledispatch_register_annotation_from_a_variable",
        FT
        + CODE
        + DISPATCH
        + "def g(a: S):\n    return 1\n\n"
        + _module("functools.singledispatch(f).register(g)\nreturn OUT"),
        "register() of g: annotations written as strings",
    ),
    (
        "singledispatch_register_string_inside_a_generic",
        FT
        + CODE
        + DISPATCH
        + "def g(a: list[S]):\n    return 1\n\n"
        + _module("functools.singledispatch(f).register(g)\nreturn OUT"),
        "register() of g: annotations written as strings",
    ),
    (
        "singledispatch_register_with_explicit_function",
        FT
        + CODE
        + DISPATCH
        + "def g(a: S):\n    return 1\n\n"
        + _module("functools.singledispatch(f).register(int, g)\nreturn OUT"),
        "register() of g: annotations written as strings",
    ),
    (
        "singledispatchmethod_register_string_annotation",
        FT + CODE + "class C:\n    @functools.singledispatchmethod\n    def m(self, a):\n        return 0\n\n"
        "    @m.register\n    def m_str(self, a: S):\n        return 1\n\n" + _module("return OUT"),
        "register() of m_str: annotations written as strings",
    ),
    (
        "future_annotations",
        "from __future__ import annotations\n"
        + FT
        + DISPATCH
        + "def g(a: int):\n    return 1\n\n"
        + _module("return 1"),
        "from __future__ import annotations turns every annotation into a string",
    ),
    ("typing_list_of_a_string", TY + CODE + _module("return str(typing.List[S])"), FORWARD),
    ("typing_optional_string_in_a_tuple", TY + CODE + _module("return str(typing.Dict[int, S])"), FORWARD),
    ("typevar_string_bound", TY + CODE + _module("return str(typing.TypeVar('T', bound=S))"), FORWARD),
    ("typevar_string_constraint", TY + CODE + _module("return str(typing.TypeVar('T', S, int))"), FORWARD),
    (
        "named_tuple_string_type",
        TY + CODE + _module("return str(typing.NamedTuple('N', [('a', S)]))"),
        FORWARD,
    ),
    ("typed_dict_string_type", TY + CODE + _module("return str(typing.TypedDict('T', {'a': S}))"), FORWARD),
    (
        "forward_ref_by_name",
        TY + CODE + _module("return str(getattr(typing, 'Forward' + 'Ref')(S))"),
        "typing.ForwardRef is not available",
    ),
    (
        "get_type_hints_by_name",
        TY + _module("return getattr(typing, 'get_type' + '_hints')(custom_code)"),
        "'get_type_hints' is not available",
    ),
    (
        "dataclass_of_a_typed_dict_whose_keys_are_code",
        "import dataclasses\nimport typing\n"
        + _module(
            "T = typing.TypedDict('T', {'a=[c for c in ().__class__.__base__.__subclasses__()],b': int})\n"
            "return str(dataclasses.dataclass(T))"
        ),
        "dataclass() cannot make T a dataclass: its field 'a=[c for c",
    ),
    (
        "dataclass_of_a_library_class",
        "import dataclasses\nimport fractions\n"
        + _module("return str(dataclasses.dataclass(fractions.Fraction))"),
        "dataclass() takes only classes defined in the custom module",
    ),
    (
        "make_dataclass_by_name",
        "import dataclasses\n"
        + _module("return str(getattr(dataclasses, 'make_' + 'dataclass')('A', ['a']))"),
        "'make_dataclass' is not available",
    ),
    (
        "namedtuple_with_code_as_a_field_name",
        "import collections\n" + _module("return str(collections.namedtuple('P', ['a=().__class__']))"),
        "must be valid identifiers",
    ),
    (
        "total_ordering_of_a_library_class",
        "import fractions\n" + FT + _module("return str(functools.total_ordering(fractions.Fraction))"),
        "total_ordering() takes only classes defined in the custom module",
    ),
    # ---- str.format, which walks attributes around the attribute guard
    (
        "user_string_format",
        "import collections\n" + _module("return collections.UserString('{0.__class__.__mro__}').format(x)"),
        "format is not available in custom code",
    ),
    (
        "user_string_format_map_by_name",
        "import collections\n"
        + _module("return getattr(collections.UserString('{a.__class__}'), 'format' + '_map')({'a': x})"),
        "'format_map' is not available",
    ),
    (
        "user_string_format_through_the_class",
        "import collections\n"
        + _module("u = collections.UserString\nreturn u.format(u('{0.__class__}'), x)"),
        "format is not available in custom code",
    ),
    (
        "str_subclass_format_through_the_class",
        "class S(str):\n    pass\n\n" + _module("return S.format(S('{0.__class__}'), x)"),
        "format is not available in custom code",
    ),
    (
        "str_subclass_format_through_super",
        "class S(str):\n    def show(self, v):\n        return super().format(v)\n\n"
        + _module("return S('{0.__class__}').show(x)"),
        "format is not available in custom code",
    ),
    (
        "str_format_through_type",
        _module("return type('{0.__class__}').format('{0.__class__}', x)"),
        "'format' is not available",
    ),
    (
        "numpy_string_format",
        NP + _module("return np.str_('{0.__class__}').format(x)"),
        "'format' is not available",
    ),
    (
        "string_formatter_by_name",
        "import string\n" + _module("return getattr(string, 'Form' + 'atter')().format('{0.__class__}', x)"),
        "'Formatter' is not available",
    ),
    ("literal_format_is_refused_at_deploy", _module("return '{0}'.format(1)"), "'format' is not available"),
    # ---- numpy's tests, files and raw memory
    ("numpy_linalg_test", NP + _module("return np.linalg.test()"), "numpy.linalg.test is not available"),
    (
        "numpy_test_by_name",
        NP + _module("return getattr(np.fft, 'te' + 'st')()"),
        "numpy.fft.test is not available",
    ),
    (
        "numpy_scalar_dump",
        NP + _module("np.float64(1).dump('/tmp/oodida-hostile')\nreturn 1"),
        "'dump' is not available",
    ),
    (
        "numpy_scalar_class_dump",
        NP + _module("return str(getattr(np.float64, 'du' + 'mp'))"),
        "'dump' is not available",
    ),
    (
        "chararray_over_a_buffer",
        NP + _module("return np.char.chararray((2,), itemsize=2, buffer=b'abcd').tolist()"),
        "np.chararray(buffer=..., offset=..., strides=...) is not available",
    ),
    (
        "chararray_over_a_buffer_positionally",
        NP + _module("return np.char.chararray((2,), 2, False, b'abcd').tolist()"),
        "np.chararray(buffer=..., offset=..., strides=...) is not available",
    ),
    (
        "writing_into_numpys_shared_polynomial_domain",
        NP + _module("np.polynomial.Polynomial.domain[0] = 5\nreturn 1"),
        "assignment destination is read-only",
    ),
    (
        "making_a_shared_array_writable",
        NP + _module("np.polynomial.Polynomial([1]).domain.setflags(write=True)\nreturn 1"),
        "'setflags' is not available",
    ),
    # ---- state shared with the next call
    (
        "decimal_default_context",
        "import decimal\n" + _module("decimal.DefaultContext.prec = 3"),
        "decimal.DefaultContext",
    ),
    (
        "decimal_basic_context_by_name",
        "import decimal\n" + _module("getattr(decimal, 'Basic' + 'Context').traps.update({})\nreturn 1"),
        "decimal.BasicContext is not available",
    ),
    (
        "abc_registry",
        "import collections.abc\n" + _module("collections.abc.Mapping.register(list)\nreturn 1"),
        "'register' is not available in custom code: it changes the registry of a library class",
    ),
    (
        "abc_registry_through_from_import",
        "from collections.abc import Sequence\n" + _module("Sequence.register(dict)\nreturn 1"),
        "'register' is not available",
    ),
    (
        "masked_print_option",
        NP + _module("np.ma.masked_print_option.set_display('forged')\nreturn 1"),
        "numpy.ma.masked_print_option is not available",
    ),
    (
        "masked_print_option_by_name",
        NP + _module("getattr(np.ma, 'masked_print' + '_option').set_display('forged')\nreturn 1"),
        "numpy.ma.masked_print_option is not available",
    ),
    (
        "generator_finaliser_in_a_cycle",
        NP
        + "\ndef g():\n    try:\n        yield 1\n    finally:\n        np.seterr(all='ignore')\n\n"
        + _module("it = g()\nnext(it)\ncycle = [it]\ncycle.append(cycle)\nreturn 1"),
        "line 5: a generator that yields inside try/finally",
    ),
    (
        "generator_finaliser_catching_generator_exit",
        "def g():\n    while True:\n        try:\n            yield 1\n"
        "        except BaseException:\n            pass\n\n" + _module("it = g()\nnext(it)\nreturn 1"),
        "line 4: a generator that yields inside try/finally",
    ),
    (
        "generator_finaliser_in_a_with_block",
        "import decimal\n\ndef g():\n    with decimal.localcontext(decimal.Context(prec=2)):\n"
        "        yield 1\n\n" + _module("it = g()\nnext(it)\nreturn 1"),
        "line 5: a generator that yields inside try/finally, try/except or with",
    ),
    (
        # found by the red team: a Field subclass whose name property ignores what dataclasses
        # sets, and answers text that dataclasses pastes into the source it exec()s
        "dataclass_field_subclass_injects_into_generated_code",
        "import dataclasses\n\ndef getter(self):\n"
        "    return '\\\"+str(__import__(\\'os\\').getuid())+\\\"'\n\n"
        "def setter(self, value):\n    pass\n\n"
        "class F(dataclasses.Field):\n    name = property(getter, setter)\n\n"
        "@dataclasses.dataclass(init=False, eq=False)\nclass C:\n    'doc'\n"
        "    a: int = F(dataclasses.MISSING, dataclasses.MISSING, True, True, None, True, None, False)\n\n"
        "def custom_code(x):\n    return repr(C())\n",
        "not a dataclasses.Field",
    ),
    (
        # found by the second red team: memoryview, an unavailable builtin, in numpy's tuple
        "numpy_scalar_type_reaches_memoryview",
        "import numpy as np\n\ndef custom_code(x):\n    return len(np.ScalarType[6](bytearray(b'ab')))\n",
        "numpy.ScalarType is not available",
    ),
]
