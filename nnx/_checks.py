"""Argument checks shared by every public constructor and function, so that a misuse always
reads "<Where>: <arg> must be <what>, got <value>" and raises an nnx error:
ArgumentTypeError (also a TypeError) for a wrong type, ArgumentError (a ValueError) for a
value out of range.  Python and NumPy numbers count as numbers; bools never do.
"""

import math
import numbers
import operator

from .errors import ArgumentError, ArgumentTypeError


def _fail(where, name, what, value, kind=ArgumentError):
    raise kind(f"{where}: {name} must {what}, got {value!r}")


def number(where, name, value):
    """``value`` as a float, if it is a real number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            type(value).__name__ == "bool_":
        _fail(where, name, "be a number", value, ArgumentTypeError)
    return float(value)


def finite_number(where, name, value):
    v = number(where, name, value)
    if not math.isfinite(v):
        _fail(where, name, "be a finite number", value)
    return v


def positive_number(where, name, value):
    """A finite number > 0 (learning rates, eps)."""
    v = number(where, name, value)
    if not (v > 0 and math.isfinite(v)):
        _fail(where, name, "be a positive finite number", value)
    return v


def learning_rate(where, name, value):
    """A finite number >= 0 (0 is a step that changes nothing: a warm-up's or a decay's
    end, as torch.optim allows)."""
    v = number(where, name, value)
    if not (v >= 0 and math.isfinite(v)):
        _fail(where, name, "be a finite number >= 0", value)
    return v


def fraction(where, name, value, upper=1.0):
    """A number in [0, upper) (probabilities, momenta; upper=inf: a finite one >= 0)."""
    v = number(where, name, value)
    if not 0.0 <= v < upper:
        _fail(where, name, f"lie in [0, {upper:g})", value)
    return v


def integer(where, name, value, low, what, type_what=None):
    """An int >= ``low`` (Python or NumPy integers; not bools, not floats); ``what`` reads
    'be a positive integer' (``type_what``, if given, is said instead for a non-integer)."""
    try:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            raise TypeError
        v = operator.index(value)
    except TypeError:
        _fail(where, name, type_what or what, value, ArgumentTypeError)
    if v < low:
        _fail(where, name, what, value)
    return v


def positive_int(where, name, value):
    return integer(where, name, value, 1, "be a positive integer")


def non_negative_int(where, name, value):
    return integer(where, name, value, 0, "be a non-negative integer")


def instance(where, name, value, cls, what):
    if not isinstance(value, cls):
        raise ArgumentTypeError(f"{where}: {name} must be {what}, got {type(value).__name__}")
    return value


def function(where, name, value):
    if value is not None and not callable(value):
        _fail(where, name, "be callable (or None)", value, ArgumentTypeError)
    return value


def pair(where, name, value, what="a pair"):
    """A sequence of exactly two items (a tuple or list)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        _fail(where, name, f"be {what}", value, ArgumentTypeError)
    return value[0], value[1]


def count(n, word, plural=None):
    """'1 epoch', '2 epochs', '1,000 examples': a number with its noun, in messages."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def axis_of(module, x, axis):
    """``axis`` as a non-negative index into ``x``'s axes (ShapeError naming the module
    when ``x`` has no such axis)."""
    from .errors import ShapeError
    ndim = len(tuple(x.shape))
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{module!r}.fprop: input has shape {tuple(x.shape)}, which has no "
                         f"axis {axis}; give an axis in [{-ndim}, {ndim})")
    return axis % ndim
