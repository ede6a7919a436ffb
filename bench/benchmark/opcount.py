"""Array operations and device-to-host readbacks of one step, for the ops/step and
syncs/step columns (nnx.testing._count does the counting).

- torch tensors (nnx on torch:*, PyTorch eager, the floor on torch): top-level aten
  operators in torch.profiler, views left out; readbacks: aten::item / is_nonzero;
- array-api-strict (nnx on strict, the floor there): every namespace call and array
  operator, views (reshape, transposes, slices) left out; readbacks: bool/float/int of an
  array and copies to the host;
- NumPy, JAX and CuPy rows are not counted (None): NumPy launches no kernels, and a JAX or
  CUDA count needs a device-side profiler; the torch:cpu and strict rows count the portable
  path that CuPy and JAX run.
"""

FOOTNOTE = ("ops: array operations one step issues (each a kernel launch on a GPU): on torch, "
            "top-level aten ops in torch.profiler; on strict, namespace calls and operators; "
            "views (reshape, transpose, slice...) left out; syncs: device-to-host readbacks in "
            "the step (bool/float/int of an array, aten::item); '-': not counted (NumPy, "
            "JAX, CuPy)")


def counter(case):
    """The counting function for ``case`` (callable -> Count), or None."""
    from nnx.testing import _count
    if case.impl == "torch eager" or case.device.startswith("torch"):
        try:
            import torch.profiler  # noqa: F401
        except ImportError:
            return None
        return _count.count_torch
    if case.device.startswith("strict"):
        return _count.count_strict
    return None


def count(case, mode):
    """(ops, syncs) of one ``mode`` step of ``case`` (run warm), or (None, None)."""
    fn = counter(case)
    if fn is None:
        return None, None
    step = getattr(case, mode)
    step()                                  # warm: caches built, labels checked
    c = fn(step)
    case.sync()
    return c.ops, c.readbacks
