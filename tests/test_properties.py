"""Property tests: shapes and batch sizes, including batch size 1."""

import numpy as np
from hypothesis import given, settings, strategies as st

import nnx

sizes = st.integers(min_value=1, max_value=9)


@settings(max_examples=40, deadline=None)
@given(batch=sizes, n_in=sizes, hidden=sizes, n_out=sizes, seed=st.integers(0, 2**16))
def test_mlp_shapes_and_batch_mean(batch, n_in, hidden, n_out, seed):
    rng = np.random.default_rng(seed)
    net = nnx.Sequential(nnx.Linear(n_in, hidden), nnx.Tanh(), nnx.Linear(hidden, n_out))
    loss = nnx.SoftmaxCrossEntropy()
    x = nnx.asarray(rng.standard_normal((batch, n_in)))
    t = nnx.asarray(rng.integers(0, n_out, batch))
    y = net.fprop(x)
    assert tuple(y.shape) == (batch, n_out)
    value = float(loss.fprop(y, t))
    g = loss.bprop()
    assert np.isfinite(value) and value >= 0
    # the gradient of a batch mean: each row of (p - onehot)/N sums to zero
    np.testing.assert_allclose(nnx.to_numpy(g).sum(1), 0, atol=1e-6)
    gx = net.bprop(g)
    assert tuple(gx.shape) == (batch, n_in)
    for p, d in zip(net.params(), net.grads()):
        assert tuple(p.shape) == tuple(d.shape)
    assert net.bprop(g, need_input_grad=False) is None


@settings(max_examples=40, deadline=None)
@given(batch=sizes, width=sizes, seed=st.integers(0, 2**16))
def test_softmax_rows_are_distributions(batch, width, seed):
    x = np.random.default_rng(seed).standard_normal((batch, width)) * 100
    y = nnx.to_numpy(nnx.Softmax().fprop(nnx.asarray(x, dtype="float64")))
    assert np.all(y >= 0)
    np.testing.assert_allclose(y.sum(1), 1.0, rtol=1e-12)
    logy = nnx.to_numpy(nnx.LogSoftmax().fprop(nnx.asarray(x, dtype="float64")))
    np.testing.assert_allclose(np.exp(logy), y, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(batch=sizes, seed=st.integers(0, 2**16))
def test_batch_of_one_matches_the_full_batch(batch, seed):
    rng = np.random.default_rng(seed)
    net = nnx.Sequential(nnx.Linear(4, 3), nnx.Sigmoid())
    x = rng.standard_normal((batch, 4))
    full = nnx.to_numpy(net.fprop(nnx.asarray(x, dtype="float32")))
    for i in range(batch):
        row = nnx.to_numpy(net.fprop(nnx.asarray(x[i:i + 1], dtype="float32")))
        np.testing.assert_allclose(row[0], full[i], rtol=1e-5, atol=1e-6)
