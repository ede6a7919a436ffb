"""Device strings, selection, moving data and modules, and device mixing."""

import os
import subprocess
import sys

import numpy as np
import pytest

import nnx
from conftest import REPO


def test_default_is_cpu_and_devices_lists_reasons():
    assert str(nnx.get_device()) == "cpu"
    listing = nnx.devices()
    assert listing["cpu"] is None
    for name, reason in listing.items():
        assert reason is None or isinstance(reason, str) and reason, name
    for spec in listing:                 # every key is a device string set_device takes
        nnx.backends.split_spec(spec)    # (an unknown one raises DeviceError)
    assert "cupy" not in listing and "cuda" in listing


def test_set_device_persists_and_the_block_restores():
    nnx.set_device("strict")
    try:
        assert str(nnx.get_device()) == "strict"
        with nnx.device("strict:device1") as d:
            assert str(d) == "strict:device1" == str(nnx.get_device())
            assert str(nnx.device_of(nnx.Linear(2, 2).W)) == "strict:device1"
        assert str(nnx.get_device()) == "strict"      # still selected, like a notebook cell
    finally:
        nnx.set_device("cpu")


@pytest.mark.parametrize("spec, message", [
    ("gpu", r"unknown device 'gpu': use one of cpu, cuda, cuda:N"),
    ("strict:device9", r"device 'strict:device9' is unavailable: .*Available here: cpu"),
    ("", r"a device is a string such as cpu"),
])
def test_unknown_devices(spec, message):
    with pytest.raises(nnx.DeviceError, match=message):
        nnx.set_device(spec)


def test_unavailable_cuda_names_what_is_available():
    if nnx.devices().get("cuda") is None:
        pytest.skip("CuPy is usable here, so cuda:0 is available")
    with pytest.raises(nnx.DeviceError, match=r"device 'cuda:0' is unavailable: .*Available "
                                              r"here: cpu"):
        nnx.set_device("cuda:0")


def test_nnx_device_environment_variable():
    code = "import nnx; print(nnx.get_device())"
    env = dict(os.environ, NNX_DEVICE="strict:device1")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, text=True,
                         capture_output=True, check=True)
    assert out.stdout.strip() == "strict:device1"
    env["NNX_DEVICE"] = "tpu:0"
    bad = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, text=True,
                         capture_output=True)
    assert bad.returncode != 0 and "unknown device 'tpu:0'" in bad.stderr


def test_mixing_devices_names_both_and_the_fix():
    with nnx.device("strict:device1"):
        layer = nnx.Linear(3, 2)
    x = nnx.asarray(np.ones((2, 3)), device="strict")
    with pytest.raises(nnx.DeviceError, match=r"Linear\(3, 2\).fprop: input is on strict but "
                                              r"parameters are on strict:device1; move one: "
                                              r"nnx.asarray\(x, device='strict:device1'\)"):
        layer.fprop(x)
    with pytest.raises(nnx.DeviceError, match=r"input is on cpu but parameters are on "
                                              r"strict:device1"):
        layer.fprop(nnx.asarray(np.ones((2, 3))))


def test_mixing_devices_in_a_loss():
    z = nnx.asarray(np.ones((2, 3)), device="strict:device1")
    t = nnx.asarray(np.array([0, 1]), device="strict")
    with pytest.raises(nnx.DeviceError, match=r"targets is on strict but scores are on "
                                              r"strict:device1"):
        nnx.SoftmaxCrossEntropy().fprop(z, t)


def test_module_to_moves_parameters_and_gradients(device):
    with nnx.device("cpu"):
        net = nnx.Sequential(nnx.Linear(3, 4), nnx.PReLU(), nnx.Linear(4, 2))
    before = [nnx.to_numpy(p) for p in net.params()]
    assert net.to(device) is net
    for p, g, b in zip(net.params(), net.grads(), before):
        assert str(nnx.device_of(p)) == str(nnx.device_of(g)) == device
        np.testing.assert_array_equal(nnx.to_numpy(p), b)
    y = net(nnx.asarray(np.ones((5, 3))))
    assert str(nnx.device_of(y)) == device


def test_module_to_dtype(device):
    net = nnx.Linear(3, 2).to(dtype="float64")
    assert str(net.W.dtype).endswith("float64") and str(net.dW.dtype).endswith("float64")
    assert net(nnx.asarray(np.ones((1, 3)), dtype="float64")).shape == (1, 2)


def test_asarray_and_to_numpy_round_trip(device):
    host = np.arange(6.0).reshape(2, 3)
    x = nnx.asarray(host)
    assert str(nnx.device_of(x)) == device
    assert str(x.dtype).endswith("float32")                 # the default dtype
    np.testing.assert_array_equal(nnx.to_numpy(x), host)
    labels = nnx.asarray(np.array([1, 2, 3]))
    assert "int" in str(labels.dtype)                       # integers stay integers


def test_default_dtype():
    nnx.set_default_dtype("float64")
    try:
        assert str(nnx.Linear(2, 2).W.dtype) == "float64"
        assert str(nnx.asarray([1.0]).dtype) == "float64"
    finally:
        nnx.set_default_dtype("float32")
    with pytest.raises(nnx.DTypeError, match="use one of float32, float64, float16"):
        nnx.set_default_dtype("int8")


def test_no_float64_device_says_so():
    if "strict:no_float64" not in nnx.devices():
        pytest.skip("this array-api-strict has no no_float64 device (it came after 2.5)")
    with pytest.raises(nnx.DTypeError, match="device strict:no_float64 has no float64"):
        nnx.Linear(2, 2, dtype="float64", device="strict:no_float64")


def test_same_initial_weights_on_every_backend(device):
    nnx.seed(42)
    w = nnx.to_numpy(nnx.Linear(200, 50).W)
    with nnx.device("cpu"):
        nnx.seed(42)
        np.testing.assert_array_equal(w, nnx.to_numpy(nnx.Linear(200, 50).W))
    assert abs(w.std() / np.sqrt(2 / 250) - 1) < 0.03       # W ~ N(0, sqrt(2/(n_in+n_out)))


def test_selecting_a_device_makes_it_current_in_its_library(monkeypatch):
    """CuPy ignores device= in most creation functions: nnx makes cuda:N current instead."""
    seen = []
    backend = nnx.set_device("strict:device1").backend
    nnx.set_device("cpu")
    monkeypatch.setattr(type(backend), "activate", lambda self, native: seen.append(str(native)))
    with nnx.device("strict:device1"):
        assert seen == ["array_api_strict.Device('device1')"]
        with nnx.device("strict"):
            pass
        assert seen[-1] == "array_api_strict.Device('device1')"      # restored on exit
