"""The one error that backends/ raises, and the base of every nnx error.

``NNXError`` is defined here (not in nnx/errors.py) so that backends/ never imports nnx;
nnx re-exports both as ``nnx.NNXError`` and ``nnx.DeviceError``.
"""


class NNXError(Exception):
    """Base class of nnx's own errors."""


class DeviceError(NNXError, ValueError):
    """A device string is unknown or unavailable, or arrays sit on different devices."""
