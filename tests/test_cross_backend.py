"""The same parameters and inputs give the same outputs and gradients on every backend."""

import numpy as np
import pytest

import nnx
from cases import CLASSES, LOSSES, MODULES, as_device, module_input

TOL = {"float64": 1e-10, "float32": 2e-5}


def run(spec, make, dtype, x_host):
    """fprop, then bprop of a fixed upstream gradient, on ``spec``; host copies back."""
    with nnx.device(spec):
        nnx.seed(7)
        module = make().to(dtype=dtype)
        module.train()
        y = module.fprop(as_device(x_host, dtype))
        g_host = np.linspace(-1, 1, int(np.prod(y.shape))).reshape(tuple(y.shape))
        g = as_device(g_host, dtype)
        g_before = nnx.to_numpy(g).copy()
        nnx.seed(7)                      # Dropout: the mask came from this state in fprop
        gx = module.bprop(g)
        assert np.array_equal(nnx.to_numpy(g), g_before), \
            f"{module!r}.bprop changed its grad_output in place on {spec}"
        return [nnx.to_numpy(a) for a in [y, gx] + module.grads() if a is not None]  # None:
        # no gradient for integer inputs (an Embedding's indices)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", MODULES)
def test_modules_agree_with_numpy(device, name, dtype):
    x = module_input(name, np.random.default_rng(5))
    ours = run(device, MODULES[name], dtype, x)
    reference = run("cpu", MODULES[name], dtype, x)
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("name", LOSSES)
def test_losses_agree_with_numpy(device, name):
    make_loss, scores, targets = LOSSES[name]
    rng = np.random.default_rng(6)
    z_host, t_host = scores(rng), targets(rng)

    def run_loss(spec):
        with nnx.device(spec):
            loss = make_loss()
            value = loss.fprop(as_device(z_host, "float64"), as_device(t_host, "float64"))
            return float(value), nnx.to_numpy(loss.bprop())

    (v, g), (v_ref, g_ref) = run_loss(device), run_loss("cpu")
    assert v == pytest.approx(v_ref, rel=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)


def test_softmax_cross_entropy_against_a_direct_formula():
    rng = np.random.default_rng(8)
    z, t = rng.standard_normal((6, CLASSES)) * 50, rng.integers(0, CLASSES, 6)   # large scores
    loss = nnx.SoftmaxCrossEntropy()
    value = float(loss.fprop(nnx.asarray(z, dtype="float64"), nnx.asarray(t)))
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert np.isfinite(value) and value == pytest.approx(-logp[np.arange(6), t].mean())
    expected = (np.exp(logp) - np.eye(CLASSES)[t]) / 6
    np.testing.assert_allclose(nnx.to_numpy(loss.bprop()), expected, atol=1e-12)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int32", "uint64"])
def test_narrow_and_unsigned_labels_give_the_same_loss(device, dtype):
    rng = np.random.default_rng(9)
    z_host, labels = rng.standard_normal((300, 10)), rng.integers(0, 10, 300)
    z = nnx.asarray(z_host, dtype="float64")
    reference = nnx.SoftmaxCrossEntropy()
    expected = float(reference.fprop(z, nnx.asarray(labels)))
    loss = nnx.SoftmaxCrossEntropy()
    assert float(loss.fprop(z, nnx.asarray(labels.astype(dtype)))) == pytest.approx(expected)
    np.testing.assert_allclose(nnx.to_numpy(loss.bprop()), nnx.to_numpy(reference.bprop()))
