"""pytest plugin of nnx (entry point ``pytest11``): the ``nnx_device`` fixture::

    def test_my_layer(nnx_device):           # runs once per device nnx knows
        x = nnx.asarray([[1.0, 2.0]])       # on nnx_device, selected for the test
        ...

Devices that are unavailable here are skipped with nnx's reason (``pytest -rs`` lists them).
Loading the plugin probes no backend and changes nothing: that happens only in a test that
asks for ``nnx_device``.
"""

import pytest


def _parametrized_by_user(metafunc):
    """Whether the test's own ``@pytest.mark.parametrize`` already names ``nnx_device``."""
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "nnx_device" in names:
            return True
    return False


def pytest_generate_tests(metafunc):
    if "nnx_device" not in metafunc.fixturenames or _parametrized_by_user(metafunc):
        return
    from .kit import device_params
    metafunc.parametrize("nnx_device", [
        pytest.param(spec, id=spec, marks=() if reason is None else pytest.mark.skip(reason=reason))
        for spec, reason in device_params()], indirect=True)


@pytest.fixture
def nnx_device(request):
    """A device string, selected (``nnx.device``) and seeded (``nnx.seed(0)``) for the test.

    Your own ``@pytest.mark.parametrize("nnx_device", ["cpu"], indirect=True)`` picks the
    devices instead.  The default dtype (``nnx.set_default_dtype``) and the host generator's
    state are put back after the test."""
    import nnx
    from nnx import backends
    spec = getattr(request, "param", None)
    if spec is None:
        spec = str(nnx.get_device())
    dtype, state = nnx.get_default_dtype(), backends.host.get_state()
    try:
        with nnx.device(spec):
            nnx.seed(0)
            yield spec
    finally:
        nnx.set_default_dtype(dtype)
        backends.host.set_state(state)
