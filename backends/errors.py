"""The one error that backends/ raises; nnx re-exports it as ``nnx.DeviceError``."""


class DeviceError(ValueError):
    """A device string is unknown or unavailable, or arrays sit on different devices."""
