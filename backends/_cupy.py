from .base import Backend


class CupyBackend(Backend):
    """CuPy on NVIDIA GPUs (``cuda``, ``cuda:N``).

    array-api-compat ignores ``device=`` for most CuPy creation functions, so work for
    ``cuda:N`` must run with that GPU current: ``nnx.set_device`` makes it current
    (``activate``), and ``with nnx.device(...)`` restores the previous one on exit.
    """

    name, module, prefixes = "cupy", "cupy", ("cuda", "cupy")

    def probe(self):
        reason = super().probe()
        if reason:
            return f"{reason}; pip install 'nnx-backprop[cuda12]' (or [cuda13]) on a CUDA machine"
        import cupy
        try:
            n = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:
            return f"CuPy is installed but CUDA is not usable ({type(e).__name__}: {e})"
        return None if n else "CuPy is installed but there is no GPU"

    def namespace(self):
        import array_api_compat.cupy
        return array_api_compat.cupy

    def parse(self, prefix, rest):
        import cupy
        index = int(rest) if rest not in (None, "") else 0
        count = cupy.cuda.runtime.getDeviceCount()
        if not 0 <= index < count:
            raise ValueError(f"there are {count} GPU(s): cuda:0 to cuda:{count - 1}")
        return f"cuda:{index}", cupy.cuda.Device(index)

    def listed(self):
        import cupy
        return [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]

    def from_host(self, host_array, native):
        import cupy
        with native:
            return cupy.asarray(host_array)

    def to_host(self, x):
        return x.get()

    def native_device(self, x):
        return x.device

    def spec_of(self, native):
        return f"cuda:{native.id}"

    def synchronize(self, native):
        with native:
            native.synchronize()

    def context(self, native):
        return native

    def activate(self, native):
        native.use()          # allocations and kernels now go to this GPU
