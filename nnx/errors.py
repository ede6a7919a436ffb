"""nnx's errors: each says what was wrong and how to fix it, naming the module."""

from nnx.backends.errors import DeviceError, NNXError


class ShapeError(NNXError, ValueError):
    """An array has the wrong shape for the module it was given to."""


class DTypeError(NNXError, TypeError):
    """An array has the wrong dtype (e.g. float64 data into float32 weights)."""


class LabelError(NNXError, ValueError):
    """Integer labels out of range, or targets that are neither labels nor one-hot."""


class StateError(NNXError, RuntimeError):
    """A call out of order, such as bprop before fprop."""


class ArgumentError(NNXError, ValueError):
    """An argument nnx cannot use: out of range or NaN/inf, a module placed twice, data with
    NaNs, nothing to check."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument has the wrong type (a string or a bool where a number is meant...)."""


class NonFiniteError(NNXError, FloatingPointError):
    """A network produced NaN or infinite values where a result was to be read off."""


class GradcheckError(NNXError, AssertionError):
    """Analytic and numerical gradients disagree."""


__all__ = ["NNXError", "ShapeError", "DTypeError", "DeviceError", "LabelError",
           "StateError", "GradcheckError", "ArgumentError", "ArgumentTypeError", "NonFiniteError"]
