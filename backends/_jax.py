import functools

import numpy as np

from .base import Backend


class JaxBackend(Backend):
    """JAX arrays (immutable: optimisers rebind parameters instead of updating in place)."""

    name, module, prefixes, mutable = "jax", "jax", ("jax",), False

    def namespace(self):
        import jax.numpy as jnp
        return jnp

    def has_float64(self, native):
        """JAX keeps float64 behind a process-wide switch (``jax_enable_x64``); without it a
        float64 array silently becomes float32.  Asking nnx for float64 on a JAX device turns
        that switch on, for the whole process, and only then (float32 work leaves it alone)."""
        import jax
        if not jax.config.jax_enable_x64:
            jax.config.update("jax_enable_x64", True)
        return True

    def parse(self, prefix, rest):
        import jax
        platform, _, index = (rest or "cpu").partition(":")
        devices = jax.devices(platform)
        i = int(index or 0)
        if i >= len(devices):
            raise ValueError(f"jax sees {len(devices)} {platform} device(s)")
        return f"jax:{platform}:{i}" if i else f"jax:{platform}", devices[i]

    def listed(self):
        import jax
        return [self.spec_of(d) for d in jax.devices()]

    def from_host(self, host_array, native):
        import jax
        # host data is a constant: a concrete array even while a step is being traced (a
        # tracer would leak into whatever caches it, e.g. the gather indices)
        with jax.ensure_compile_time_eval():
            return jax.device_put(host_array, native)

    def to_host(self, x):
        return np.asarray(x)


    def jit(self, fn, *, native=None, **options):
        """``jax.jit(fn, **options)``: the whole step as one compiled program, for the device
        ``native``.  On the CPU it is compiled with XLA's region analysis for copy insertion
        (where this jaxlib has the option; for this program only, nothing process-wide): with
        the parameters donated, XLA's default analysis cannot tell that the backward pass
        reads a weight (g·Wᵀ) before the update overwrites its buffer, and copies every such
        weight each step (a 4 MB copy for a 1024×1024 layer); region analysis sees the
        order and updates in place."""
        import jax
        if getattr(native, "platform", None) == "cpu":
            extra = _cpu_compiler_options()
            if extra:
                options["compiler_options"] = {**extra, **options.get("compiler_options", {})}
        return jax.jit(fn, **options)

    def native_device(self, x):
        try:
            return next(iter(x.devices()))
        except Exception:
            if self.tracing is None or not _is_tracer(x):
                raise
            return self.tracing     # an abstract array inside jax.jit: where the step runs

    def spec_of(self, native):
        return f"jax:{native.platform}:{native.id}" if native.id else f"jax:{native.platform}"

    def synchronize(self, native):
        pass  # nnx calls block_until_ready on the results it times


@functools.cache
def _cpu_compiler_options():
    """{"xla_cpu_copy_insertion_use_region_analysis": True} where this jaxlib takes it, else
    {} (asked once per process, by compiling a one-line program with it)."""
    import jax
    options = {"xla_cpu_copy_insertion_use_region_analysis": True}
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(
            jax.ShapeDtypeStruct((), np.float32)).compile()
    except Exception:       # noqa: BLE001 - an older jaxlib: no such option
        return {}
    return options


def _is_tracer(x):
    import jax
    return isinstance(x, jax.core.Tracer)
