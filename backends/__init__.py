"""Everything that names a concrete array library.

nnx itself is written against the Array API namespace only; it asks this package which
libraries are usable (``available``), turns device strings into ``Device`` objects
(``resolve``), moves data between host and device (``from_host``/``to_host``), draws random
numbers on the host (``host``) and waits for asynchronous devices (``synchronize``).
"""

from . import host
from .base import Backend, Device
from .errors import DeviceError
from ._cupy import CupyBackend
from ._jax import JaxBackend
from ._numpy import NumpyBackend
from ._strict import StrictBackend
from ._torch import TorchBackend

BACKENDS = {b.name: b for b in (NumpyBackend(), CupyBackend(), TorchBackend(),
                                 StrictBackend(), JaxBackend())}
_BY_PREFIX = {p: b for b in BACKENDS.values() for p in b.prefixes}
_probed = {}
_resolved = {}

EXAMPLES = "cpu, cuda, cuda:N, torch:cpu, torch:cuda:N, strict, strict:device1, jax:cpu"
# the device string that names a backend's main device (how an unavailable one is listed)
MAIN_DEVICE = {"numpy": "cpu", "cupy": "cuda", "torch": "torch:cpu", "strict": "strict",
               "jax": "jax:cpu"}


def unavailable_reason(name):
    """None when backend ``name`` is usable here, else why not (probed once, cached)."""
    if name not in _probed:
        _probed[name] = BACKENDS[name].probe()
    return _probed[name]


def available():
    """{backend name: None or the reason it cannot be used here}."""
    return {name: unavailable_reason(name) for name in BACKENDS}


def listing():
    """[(device spec, None or reason)] for every device known here; a backend that cannot
    be used at all is listed by the device string it would give (cuda for CuPy)."""
    rows = []
    for name, backend in BACKENDS.items():
        reason = unavailable_reason(name)
        if reason:
            rows.append((MAIN_DEVICE.get(name, name), reason))
            continue
        try:
            rows.extend((spec, None) for spec in backend.listed())
            rows.extend(backend.unusable())
        except Exception as e:
            rows.append((name, f"{type(e).__name__}: {e}"))
    return rows


def split_spec(spec):
    """'torch:cuda:1' -> ('torch', 'cuda:1'); check the prefix is known."""
    if not isinstance(spec, str) or not spec.strip():
        raise DeviceError(f"a device is a string such as {EXAMPLES}; got {spec!r}")
    prefix, _, rest = spec.strip().partition(":")
    if prefix.lower() not in _BY_PREFIX:
        raise DeviceError(f"unknown device {spec!r}: use one of {EXAMPLES} "
                          f"(nnx.devices() lists what is available here)")
    return prefix.lower(), rest.strip().lower() or None     # device strings ignore case


def resolve(spec):
    """The ``Device`` for a device string; DeviceError naming what is available if not."""
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):           # a list or a number is never a device
        split_spec(spec)
    if spec in _resolved:
        return _resolved[spec]
    prefix, rest = split_spec(spec)
    backend = _BY_PREFIX[prefix]
    reason = unavailable_reason(backend.name)
    if reason:
        raise DeviceError(f"device {spec!r} is unavailable: {reason}. "
                          f"Available here: {', '.join(available_specs())}")
    try:
        canonical, native = backend.parse(prefix, rest)
    except Exception as e:
        raise DeviceError(f"device {spec!r} is unavailable: {e}. "
                          f"Available here: {', '.join(available_specs())}") from None
    device = _resolved.get(canonical) or Device(canonical, backend, native)
    _resolved[spec] = _resolved[canonical] = device
    return device


def available_specs():
    return [spec for spec, reason in listing() if reason is None]


def backend_of(x):
    """The backend whose arrays ``x`` is, or None for anything else (lists, scalars)."""
    import array_api_compat as c
    if c.is_numpy_array(x):
        return BACKENDS["numpy"]
    if c.is_cupy_array(x):
        return BACKENDS["cupy"]
    if c.is_torch_array(x):
        return BACKENDS["torch"]
    if c.is_jax_array(x):
        return BACKENDS["jax"]
    if type(x).__module__.startswith("array_api_strict"):
        return BACKENDS["strict"]
    return None


def device_of(x):
    """The ``Device`` an array lives on (None for non-arrays)."""
    backend = backend_of(x)
    if backend is None:
        return None
    spec = backend.spec_of(backend.native_device(x))
    return _resolved.get(spec) or resolve(spec)


def from_host(host_array, device):
    device = resolve(device)
    return device.backend.from_host(host_array, device.native)


def to_host(x):
    """A NumPy array with the values of ``x`` (from any backend; copies from GPUs)."""
    backend = backend_of(x)
    if backend is None:
        import numpy as np
        return np.asarray(x)
    return backend.to_host(x)


def tracing():
    """Whether nnx.compile_step or compile_fprop is tracing a program now (on any backend):
    the arrays in hand are then abstract (a tracer, a traced tensor), not values."""
    return any(getattr(b, "tracing", None) is not None for b in BACKENDS.values())


def synchronize(device):
    device = resolve(device)
    device.backend.synchronize(device.native)


__all__ = ["Backend", "Device", "DeviceError", "BACKENDS", "available", "listing",
           "resolve", "device_of", "backend_of", "from_host", "to_host", "synchronize"]
