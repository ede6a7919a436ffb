import numpy as np

from .base import Backend


UNUSABLE = "no_x64"          # no int64 there: array-api-strict's own argmax fails on it
NO_X64 = (f"array-api-strict's {UNUSABLE} device has no 64-bit integers, so argmax, integer "
          f"sums and int64 labels fail there; nnx does not run on it (strict:no_float64 "
          f"checks float32-only code)")


class StrictBackend(Backend):
    """array-api-strict: the reference namespace, with fake devices to catch device mixing."""

    name, module, prefixes = "strict", "array_api_strict", ("strict",)

    def namespace(self):
        import array_api_strict
        return array_api_strict

    def _names(self):
        return [str(d).split("'")[1] for d in self.namespace().__array_namespace_info__().devices()]

    def parse(self, prefix, rest):
        names = self._names()
        name = {n.lower(): n for n in names}.get((rest or "CPU_DEVICE").lower())
        if name == UNUSABLE:
            raise ValueError(NO_X64)
        if name is None:
            raise ValueError(f"array-api-strict has the devices {', '.join(self._usable())}")
        return self.spec_of_name(name), self.namespace().Device(name)

    def spec_of_name(self, name):
        return "strict" if name == "CPU_DEVICE" else f"strict:{name}"

    def _usable(self):
        return [n for n in self._names() if n != UNUSABLE]

    def listed(self):
        return [self.spec_of_name(n) for n in self._usable()]

    def unusable(self):
        return [(self.spec_of_name(UNUSABLE), NO_X64)] if UNUSABLE in self._names() else []

    def from_host(self, host_array, native):
        host = np.asarray(host_array)
        if host.dtype.itemsize == 8 and host.dtype.kind in "fc" and not self.has_float64(native):
            # a device without float64 (no_float64, no_x64): the data arrives as float32 and
            # nnx casts it to its dtype (nnx refuses float64 on such a device before this)
            host = host.astype(np.float32 if host.dtype.kind == "f" else np.complex64)
        return self.namespace().asarray(host, device=native)

    def to_host(self, x):
        xp = self.namespace()
        return np.asarray(x.to_device(xp.Device("CPU_DEVICE")))

    def native_device(self, x):
        return x.device

    def has_float64(self, native):
        return str(native).split("'")[1] not in ("no_float64", "no_x64")

    def spec_of(self, native):
        return self.spec_of_name(str(native).split("'")[1])
