"""nnx's errors: each says what was wrong and how to fix it, naming the module."""

from nnx.backends.errors import DeviceError


class NNXError(Exception):
    """Base class of nnx's own errors."""


class ShapeError(NNXError, ValueError):
    """An array has the wrong shape for the module it was given to."""


class DTypeError(NNXError, TypeError):
    """An array has the wrong dtype (e.g. float64 data into float32 weights)."""


class LabelError(NNXError, ValueError):
    """Integer labels out of range, or targets that are neither labels nor one-hot."""


class StateError(NNXError, RuntimeError):
    """A call out of order, such as bprop before fprop."""


class GradcheckError(NNXError, AssertionError):
    """Analytic and numerical gradients disagree."""


class ArgumentError(NNXError, ValueError):
    """An argument nnx cannot use: a module placed twice, data with NaNs, nothing to check."""


__all__ = ["NNXError", "ShapeError", "DTypeError", "DeviceError", "LabelError",
           "StateError", "GradcheckError", "ArgumentError"]
