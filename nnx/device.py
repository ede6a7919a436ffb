"""Which device new parameters and data go to, and moving arrays between devices.

The selection is a plain module-level setting (not a context variable), so it survives
across notebook cells; ``with nnx.device(...)`` restores the previous one on exit.
"""

import contextlib
import os

import array_api_compat

from nnx import backends
from nnx.backends import Device

from . import _checks
from .errors import ArgumentTypeError, DeviceError, DTypeError

_current = None                     # a Device, resolved lazily
_requested = os.environ.get("NNX_DEVICE", "cpu")   # read on import, checked on first use
_default_dtype = "float32"
FLOAT_DTYPES = ("float32", "float64", "float16")
_namespaces = {}


def get_device():
    """The current ``Device`` (``NNX_DEVICE`` or ``cpu`` until ``set_device`` is called)."""
    global _current
    if _current is None:
        try:
            _current = backends.resolve(_requested)
        except DeviceError as e:
            raise DeviceError(f"NNX_DEVICE: {e}") from None
    return _current


def set_device(spec):
    """Select the device for new modules and data: 'cpu', 'cuda:1', 'strict:device1', ..."""
    global _current
    _current = backends.resolve(spec)
    _current.backend.activate(_current.native)
    return _current


@contextlib.contextmanager
def device(spec):
    """``with nnx.device('torch:cpu'):`` selects a device for the block only."""
    global _current
    previous = _current
    set_device(spec)
    try:
        yield _current
    finally:
        _current = previous
        if previous is not None:
            previous.backend.activate(previous.native)


def devices():
    """{device string: None if usable here, else why not} for everything nnx knows; each
    key is a string ``set_device`` takes (a backend that is not installed is listed by its
    main device: ``cuda`` for CuPy, ``torch:cpu``, ``jax:cpu``)."""
    return dict(backends.listing())


def namespace(x):
    """The Array API namespace of ``x`` (array-api-compat's, cached by type: it is hot)."""
    t = type(x)
    xp = _namespaces.get(t)
    if xp is None:
        try:
            xp = array_api_compat.array_namespace(x)
        except TypeError:
            raise ArgumentTypeError(f"expected an array, got {t.__name__}; "
                            f"convert it with nnx.asarray(x)") from None
        _namespaces[t] = xp
    return xp


_wide_ints = {}


def index_dtype(xp):
    """The namespace's default integer type for indices and counts: int64, or int32 on JAX
    while its float64/int64 switch is off (asking it for int64 would warn and truncate)."""
    dtype = _wide_ints.get(id(xp))
    if dtype is None:
        try:
            dtype = xp.__array_namespace_info__().default_dtypes()["indexing"]
        except AttributeError:                  # a namespace without the inspection API
            dtype = xp.int64
        if dtype == xp.int64:                   # the widest: it cannot change later
            _wide_ints[id(xp)] = dtype
    return dtype


def device_of(x):
    """The ``Device`` an array lives on."""
    return backends.device_of(x)


def short_dtype(dtype):
    """'float32' for any library's float32 (for messages)."""
    return str(dtype).rsplit(".", 1)[-1]


def dtype_name(dtype):
    """'float32' for float32 of any library (or the string itself)."""
    name = dtype if isinstance(dtype, str) else str(dtype).rsplit(".", 1)[-1].strip("')")
    name = name.replace("dtype(", "").strip("'")
    if name not in FLOAT_DTYPES:
        raise DTypeError(f"nnx computes in floating point: use one of {', '.join(FLOAT_DTYPES)}, "
                         f"not {dtype!r}")
    return name


def set_default_dtype(dtype):
    """Dtype of new parameters and of ``asarray`` for float data ('float32' by default)."""
    global _default_dtype
    _default_dtype = dtype_name(dtype)


def get_default_dtype():
    """The dtype of new parameters and of ``asarray`` for float data (see ``set_default_dtype``)."""
    return _default_dtype


def resolve_dtype(dtype, device):
    """The namespace's dtype object for ``dtype`` (a name or object; None: the default)."""
    name = _default_dtype if dtype is None else dtype_name(dtype)
    if name == "float64" and not device.backend.has_float64(device.native):
        raise DTypeError(f"device {device} has no float64; use float32")
    if not hasattr(device.xp, name):
        raise DTypeError(f"device {device} has no {name} ({device.backend.module} lacks it); "
                         f"use float32")
    return getattr(device.xp, name)


def asarray(x, *, device=None, dtype=None):
    """``x`` (a list, a NumPy array or any backend's array) as an array on ``device``.

    Floating-point data takes ``dtype`` (default: the default dtype); integer data (labels)
    keeps its integer type unless ``dtype`` is given.  No copy when nothing changes.
    """
    target = get_device() if device is None else backends.resolve(device)
    if x is None or isinstance(x, (str, bytes, dict)):
        raise ArgumentTypeError(f"asarray: expected numbers, a nested list or an array, "
                        f"got {type(x).__name__}")
    x = _numbers(x)
    want = None
    if dtype is not None or _is_float(x):
        want = resolve_dtype(dtype, target)     # before the transfer: it may enable float64
    if backends.device_of(x) != target:
        try:
            host = backends.to_host(x)
        except (TypeError, ValueError, RuntimeError) as e:   # e.g. torch's bfloat16
            raise ArgumentTypeError(f"asarray: cannot read a {type(x).__name__} of dtype "
                                    f"{x.dtype} ({str(e).splitlines()[0]}); convert it to "
                                    f"float32 first (in torch: x.float())") from None
        x = backends.from_host(host, target)
    if want is not None and x.dtype != want:
        x = target.xp.astype(x, want)
    return x


_KINDS = {"U": "strings", "S": "bytes", "O": "Python objects (None, mixed types)",
          "V": "records", "c": "complex numbers", "M": "dates", "m": "time spans"}


def _numbers(x):
    """``x`` itself when it is an array; a list or scalar as a host array of real numbers;
    anything else (ragged rows, strings, None, complex) an ArgumentTypeError saying so."""
    if not hasattr(x, "dtype"):
        try:
            x = backends.host.as_array(x)
        except (ValueError, TypeError) as e:
            raise ArgumentTypeError(f"asarray: expected a rectangular nested list of numbers "
                                    f"(every row of one length), got rows of different "
                                    f"lengths or shapes: {str(e).splitlines()[0]}") from None
    kind = getattr(x.dtype, "kind", None)
    if kind == "V" and getattr(x.dtype, "names", None) is None and \
            not str(x.dtype).startswith("|V"):
        return x                    # an extension float such as ml_dtypes' bfloat16 (JAX)
    if isinstance(kind, str) and kind in _KINDS:
        raise ArgumentTypeError(f"asarray: expected real numbers, got {_KINDS[kind]} (dtype "
                                f"{x.dtype}); convert them first, e.g. [float(v) for v in ...]")
    return x


def _is_float(x):
    """Whether ``x`` (any array, a list or a scalar) holds floating-point numbers."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = backends.host.as_array(x).dtype
    return "float" in str(dtype)


def permutation(n, *, device=None):
    """A random order of 0..n-1 (int64), drawn on the host (``nnx.seed``), on ``device``."""
    n = _checks.non_negative_int("permutation", "n", n)
    return asarray(backends.host.permutation(n), device=device)


def to_numpy(x):
    """A NumPy array with the values of ``x``, from any device."""
    return backends.to_host(x)


def synchronize(device=None):
    """Wait for queued work on ``device`` (default: the current one); for timing."""
    backends.synchronize(get_device() if device is None else device)


def check_same_device(where, a, b, what_a="input", what_b="parameters"):
    """Raise a DeviceError naming both devices when ``a`` and ``b`` live apart."""
    da, db = backends.device_of(a), backends.device_of(b)
    if da != db:
        verb = "are" if what_b.endswith("s") else "is"
        raise DeviceError(f"{where}: {what_a} is on {da} but {what_b} {verb} on {db}; move one: "
                          f"nnx.asarray(x, device='{db}') or module.to('{da}')")


__all__ = ["Device", "get_device", "set_device", "device", "devices", "namespace",
           "device_of", "set_default_dtype", "get_default_dtype", "asarray", "permutation", "to_numpy",
           "synchronize"]
