"""nnx.compile_fprop: the compiled inference pass equals net.fprop, on every backend."""

import numpy as np
import pytest

import nnx
from cases import compiled_mode
from nnx.errors import ArgumentError, ArgumentTypeError, DeviceError, ShapeError, StateError


def _net(dtype, dropout=False):
    nnx.seed(0)
    layers = [nnx.Linear(6, 9, dtype=dtype), nnx.Tanh(), nnx.BatchNorm(9, dtype=dtype)]
    layers += [nnx.Dropout(0.5)] if dropout else []
    return nnx.Sequential(*layers, nnx.Linear(9, 4, dtype=dtype))


def _inputs(dtype, sizes=(8, 8, 5, 8)):
    rng = np.random.default_rng(3)
    return [nnx.asarray(rng.standard_normal((n, 6)), dtype=dtype) for n in sizes]


def _state(net):
    return [nnx.to_numpy(a) for a in net.params() + net.buffers()]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("training", [False, True])
def test_compiled_fprop_equals_fprop(device, dtype, training):
    """In eval mode and in training mode (BatchNorm's batch statistics and running-stat
    update), batch shape after batch shape, with the weights changed between calls."""
    compiled, eager = _net(dtype), _net(dtype)
    for n in (compiled, eager):
        n.train() if training else n.eval()
    f = nnx.compile_fprop(compiled)
    assert f.mode == compiled_mode(device) and f.reason
    tol = 1e-12 if dtype == "float64" else 1e-5
    for i, x in enumerate(_inputs(dtype)):
        y = f(x)
        expected = eager.fprop(x)
        assert nnx.device_of(y) == nnx.get_device() and y.dtype == expected.dtype
        np.testing.assert_allclose(nnx.to_numpy(y), nnx.to_numpy(expected), rtol=tol, atol=tol)
        for a, b in zip(_state(compiled), _state(eager)):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        for n in (compiled, eager):             # the next call sees new weights
            n.set_params([p * (1.0 + 0.1 * i) for p in n.params()])
    if f.mode != "eager":                         # one program per input shape
        assert f.traces == 2 and len(f.compile_seconds) == 2


def test_no_tracer_is_left_and_a_mode_switch_compiles_once():
    jax = pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        net = _net("float32")
        f = nnx.compile_fprop(net)
        x = _inputs("float32")[0]
        for training in (False, True, False, True):
            net.train() if training else net.eval()
            f(x)
        assert f.traces == 2                    # eval and training mode, once each
        for m in [net] + list(net.children()):
            for value in vars(m).values():
                assert not isinstance(value, jax.core.Tracer), m


def test_a_bprop_after_a_compiled_fprop_refuses_until_the_next_fprop(device):
    """The jitted fprop keeps no caches for bprop, so bprop must not use an older
    fprop's: it says what to do; an eager fprop makes it work again."""
    net = _net("float64")
    f = nnx.compile_fprop(net)
    x = _inputs("float64")[0]
    net.fprop(x)
    y = f(x)
    if f.mode != "eager":
        with pytest.raises(StateError, match="run fprop"):
            net.bprop(y * 0.0 + 1.0)
    net.bprop(net.fprop(x) * 0.0 + 1.0)         # eager fprop again: bprop works
    assert all(g is not None for g in net.grads())


def test_an_active_dropout_runs_that_call_eagerly_with_the_host_masks():
    pytest.importorskip("jax", reason="jax is not installed")
    with nnx.device("jax:cpu"):
        compiled, eager = _net("float64", dropout=True), _net("float64", dropout=True)
        f = nnx.compile_fprop(compiled)
        x = _inputs("float64")[0]
        nnx.seed(5)
        y = f(x)
        nnx.seed(5)
        expected = eager.fprop(x)
        np.testing.assert_allclose(nnx.to_numpy(y), nnx.to_numpy(expected), rtol=1e-12)
        assert f.traces == 0                    # eager: the masks come from nnx.seed
        compiled.eval()
        f(x)
        assert f.traces == 1


def test_bad_arguments_and_inputs_say_what_is_wrong():
    with pytest.raises(ArgumentTypeError, match="compile_fprop: net must be an nnx Module"):
        nnx.compile_fprop(lambda x: x)
    net = _net("float64")
    with pytest.raises(ArgumentError, match="mode must be one of auto, jit, eager"):
        nnx.compile_fprop(net, mode="fast")
    with pytest.raises(ArgumentError, match="cannot jit net.fprop: NumPy"):
        nnx.compile_fprop(net, mode="jit")      # on the CPU (NumPy)
    f = nnx.compile_fprop(net)
    assert f.mode == "eager" and "NumPy" in f.reason
    jax = pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        net = _net("float32")
        f = nnx.compile_fprop(net, mode="jit")
        with pytest.raises(ShapeError, match=r"expected .*6"):
            f(nnx.asarray(np.zeros((4, 5)), dtype="float32"))
        with pytest.raises(DeviceError):
            f(np.zeros((4, 6), dtype="float32"))
        assert not any(isinstance(v, jax.core.Tracer)       # the failed trace left none
                       for m in [net] + list(net.children()) for v in vars(m).values())
        y = f(_inputs("float32")[0])            # still works after the refusals
        assert tuple(y.shape) == (8, 4)
        net.to("cpu")                           # moved off JAX: eager, and says why
        y = f(nnx.asarray(np.zeros((2, 6)), dtype="float32", device="cpu"))
        assert f.mode == "eager" and "moved off JAX" in f.reason and tuple(y.shape) == (2, 4)


def test_an_input_it_cannot_take_gets_a_one_line_error_naming_compile_fprop():
    pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        f = nnx.compile_fprop(nnx.Sequential(nnx.Linear(3, 2), nnx.ReLU()))
        with pytest.raises(nnx.DeviceError, match=r"^compile_fprop: input is on cpu but "
                                                  r"parameters are on jax:cpu; move one"):
            f(np.ones((4, 3), "float32"))
        with pytest.raises(TypeError, match=r"expected an array, got list; convert it with "
                                            r"nnx.asarray"):
            f([[1.0, 2.0, 3.0]])


def test_evaluate_through_compile_fprop_counts_as_net_fprop_and_compiles_once(device):
    net = _net("float64")
    rng = np.random.default_rng(4)
    x = nnx.asarray(rng.standard_normal((21, 6)), dtype="float64")
    t = nnx.asarray(rng.integers(0, 4, 21))
    f = nnx.compile_fprop(net)
    expected = nnx.evaluate(net, x, t, batch_size=8)
    for _ in range(3):                          # batches of 8, 8 and 5, three times
        assert nnx.evaluate(net, x, t, batch_size=8, fprop=f) == expected
    assert f.traces == (2 if f.mode != "eager" else 0)     # once per batch shape
    assert net.training                         # evaluate restored the training flags


def test_evaluate_refuses_an_fprop_that_is_not_this_networks_compile_fprop():
    net, other = _net("float64"), _net("float64")
    x, t = _inputs("float64")[0], nnx.asarray(np.arange(8) % 4)
    with pytest.raises(ArgumentTypeError, match=r"^evaluate: fprop must be "
                       r"nnx.compile_fprop\(net\) or None, got function$"):
        nnx.evaluate(net, x, t, fprop=lambda x: net.fprop(x))
    with pytest.raises(ArgumentError, match=r"^evaluate: fprop was compiled for another "
                       r"network; pass nnx.compile_fprop\(net\) of the network evaluated$"):
        nnx.evaluate(net, x, t, fprop=nnx.compile_fprop(other))
