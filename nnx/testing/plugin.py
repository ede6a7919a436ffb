"""pytest plugin of nnx (entry point ``pytest11``): the ``nnx_device`` fixture.

    def test_my_layer(nnx_device):           # runs once per device nnx knows
        x = nnx.asarray([[1.0, 2.0]])       # on nnx_device, selected for the test
        ...

Devices that are unavailable here are skipped with nnx's reason (``pytest -rs`` lists them).
Loading the plugin probes no backend and changes nothing: that happens only in a test that
asks for ``nnx_device``.
"""

import pytest


def pytest_generate_tests(metafunc):
    if "nnx_device" not in metafunc.fixturenames:
        return
    from .kit import device_params
    metafunc.parametrize("nnx_device", [
        pytest.param(spec, id=spec, marks=() if reason is None else pytest.mark.skip(reason=reason))
        for spec, reason in device_params()], indirect=True)


@pytest.fixture
def nnx_device(request):
    """A device string, selected (``nnx.device``) and seeded (``nnx.seed(0)``) for the test."""
    import nnx
    with nnx.device(request.param):
        nnx.seed(0)
        yield request.param
