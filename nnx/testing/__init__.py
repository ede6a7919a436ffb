"""A test kit for your own layers: prove a module on every backend nnx can use here::

    from nnx.testing import check_module
    report = check_module(lambda: Cube(), (4, 5))      # raises if any check fails
    print(report)

``check_module`` runs, for every available device and every dtype asked for:

- ``keeps its input`` / ``keeps its grad_output`` / ``keeps the dtype``: fprop leaves x and
  bprop leaves grad_output as they were (no in-place change), and the dtype is kept;
- ``gradcheck``: bprop against finite differences of fprop (``nnx.gradcheck``);
- ``agrees with cpu``: the same weights (built on cpu, copied over) and the same input give
  the same output, input gradient and parameter gradients as NumPy, and they stay on the
  device;
- ``bprop before fprop``: a fresh module's bprop raises ``nnx.StateError``;
- ``device mixing``: a module with parameters, given an input on another device, raises
  ``nnx.DeviceError`` (a module without parameters computes wherever its input lives).

``count_ops(fn)`` counts the array operations (each a kernel launch on a GPU) and the
readbacks (each a synchronisation) that ``fn()`` issues on array-api-strict or torch arrays.

The pytest plugin (``nnx.testing.plugin``, loaded automatically once nnx is installed) gives
your tests an ``nnx_device`` fixture: one run per device, each selected for the test, with
the reason printed for every device that is unavailable here.
"""

from ._count import count_ops
from .kit import CheckReport, ModuleCheckError, check_module, device_params

__all__ = ["check_module", "CheckReport", "ModuleCheckError", "device_params", "count_ops"]
