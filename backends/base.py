"""What every backend provides, and the Device that nnx passes around."""

import contextlib
import importlib
import threading

_tracing = threading.local()    # per thread: another thread's eager calls are not traced


class Backend:
    """One array library.  Subclasses fill in the library-specific parts."""

    name = ""           # registry key, e.g. "numpy"
    module = ""         # what must be importable, e.g. "numpy"
    prefixes = ()       # device-string prefixes this backend answers to
    mutable = True      # arrays support in-place updates
    # optimisers update all parameters of a dtype as one flat buffer: few operations (kernel
    # launches) per step; where an operation costs next to nothing to issue (NumPy on the
    # host) the per-array update is faster, as it copies no gradient into a flat buffer
    flat_updates = True

    @property
    def tracing(self):
        """The device a program is being traced for on this backend in this thread (set by
        nnx.compile_step and compile_fprop while they trace), else None."""
        return getattr(_tracing, self.name, None)

    @tracing.setter
    def tracing(self, native):
        setattr(_tracing, self.name, native)

    def probe(self):
        """None when usable here, else a short reason why not."""
        try:
            importlib.import_module(self.module)
        except Exception as e:  # ImportError, or a broken install
            return f"{self.module} is not installed ({type(e).__name__}: {e})"
        return None

    def namespace(self):
        raise NotImplementedError

    def parse(self, prefix, rest):
        """(canonical spec, native device) for ``prefix[:rest]``; raise ValueError if bad."""
        raise NotImplementedError

    def listed(self):
        """Canonical specs of the devices usable here."""
        raise NotImplementedError

    def unusable(self):
        """[(spec, reason)] for devices the library has but nnx cannot run on."""
        return []

    def from_host(self, host_array, native):
        raise NotImplementedError

    def to_host(self, x):
        raise NotImplementedError

    def native_device(self, x):
        import array_api_compat
        return array_api_compat.device(x)

    def spec_of(self, native):
        raise NotImplementedError

    def synchronize(self, native):
        """Wait until queued work on ``native`` has finished (for timing)."""

    def has_float64(self, native):
        return True

    def context(self, native):
        """Make ``native`` the current device of the library (CuPy needs this)."""
        return contextlib.nullcontext()

    def activate(self, native):
        """Make ``native`` the library's current device from now on (nnx.set_device)."""


class Device:
    """A concrete device: the backend, its namespace and the library's own device object.

    Compare and print it by its canonical string, e.g. ``cpu``, ``cuda:0``, ``strict:device1``.
    """

    __slots__ = ("spec", "backend", "native", "_xp")

    def __init__(self, spec, backend, native):
        self.spec, self.backend, self.native = spec, backend, native
        self._xp = None

    @property
    def xp(self):
        """The array-api-compat namespace of this device's library."""
        if self._xp is None:
            self._xp = self.backend.namespace()
        return self._xp

    def __deepcopy__(self, memo):      # a device is a singleton per spec
        return self

    def __reduce__(self):
        return (_resolve, (self.spec,))

    def __eq__(self, other):
        return isinstance(other, Device) and other.spec == self.spec

    def __hash__(self):
        return hash(self.spec)

    def __str__(self):
        return self.spec

    def __repr__(self):
        return f"Device({self.spec!r})"


def _resolve(spec):
    from . import resolve
    return resolve(spec)
