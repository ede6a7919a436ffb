"""Attention and the transformer block: PyTorch agreement with weights mapped, hostile
inputs, checkpoints and descriptions, and the fixed count of array operations per layer.
(Gradchecks and cross-backend agreement of each module: cases.py.)"""

import math

import numpy as np
import pytest

import nnx
import nnx.models

F64 = "float64"
TIGHT = {"rtol": 1e-12, "atol": 1e-12}


def host(shape, seed=0, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal(shape)


def arr(a, dtype=F64):
    return nnx.asarray(a, dtype=dtype)


def np_of(a):
    return a.detach().numpy() if hasattr(a, "detach") else nnx.to_numpy(a)


def run(module, x_host, seed=2):
    """fprop on x, bprop of a fixed random upstream gradient: (y, dx, grads, g) on the host."""
    x = arr(x_host)
    y = module.fprop(x)
    g = host(tuple(y.shape), seed)
    dx = module.bprop(arr(g))
    return np_of(y), np_of(dx), [np_of(d) for d in module.grads()], g


def torch_run(torch, forward, params, x_host, g):
    """The same through torch autograd: forward(x) with ``params`` (tensors needing grad)."""
    x = torch.tensor(x_host, requires_grad=True)
    y = forward(x)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), x.grad.numpy(), [p.grad.numpy() for p in params]


def assert_same(ours, theirs):
    (y, dx, grads, _), (yt, dxt, gradst) = ours, theirs
    np.testing.assert_allclose(y, yt, **TIGHT)
    np.testing.assert_allclose(dx, dxt, **TIGHT)
    assert len(grads) == len(gradst)
    for a, b in zip(grads, gradst):
        np.testing.assert_allclose(a, b, **TIGHT)


def load_into(torch, module, arrays):
    """Copy nnx arrays into torch parameters (transposed where the layouts differ)."""
    with torch.no_grad():
        for p, a in zip(module.parameters(), arrays):
            p.copy_(torch.tensor(np.ascontiguousarray(a)))


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is not installed: no PyTorch reference")


# -- against PyTorch, float64 ----------------------------------------------------------------
def test_layer_norm_matches_torch(torch):
    ours = nnx.LayerNorm(6, eps=1e-3, dtype=F64)
    ours.set_params([arr(1 + host(6, 3, 0.3)), arr(host(6, 4, 0.3))])
    theirs = torch.nn.LayerNorm(6, eps=1e-3, dtype=torch.float64)
    load_into(torch, theirs, [nnx.to_numpy(p) for p in ours.params()])
    x = host((3, 4, 6), 1, 3.0) + 2
    result = run(ours, x)
    assert_same(result, torch_run(torch, theirs, list(theirs.parameters()), x, result[3]))


def test_gelu_matches_torch_tanh_form(torch):
    x = host((3, 4, 5), 1, 3.0)
    result = run(nnx.GELU(), x)
    assert_same(result, torch_run(torch, torch.nn.GELU(approximate="tanh"), [], x, result[3]))


def test_linear_on_sequences_matches_torch(torch):
    ours = nnx.Linear(5, 3, dtype=F64)
    ours.set_params([ours.W, arr(host(3, 3))])
    theirs = torch.nn.Linear(5, 3, dtype=torch.float64)
    load_into(torch, theirs, [nnx.to_numpy(ours.W).T, nnx.to_numpy(ours.b)])
    x = host((2, 4, 5), 1)
    result = run(ours, x)
    theirs_result = torch_run(torch, theirs, list(theirs.parameters()), x, result[3])
    theirs_result[2][0] = theirs_result[2][0].T
    assert_same(result, theirs_result)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax_along_an_axis_match_torch(torch, axis):
    x = host((2, 3, 4), 1)
    for ours, theirs in [(nnx.Softmax(axis=axis), torch.nn.Softmax(dim=axis)),
                         (nnx.LogSoftmax(axis=axis), torch.nn.LogSoftmax(dim=axis))]:
        result = run(ours, x)
        assert_same(result, torch_run(torch, theirs, [], x, result[3]))


def torch_attention(torch, ours):
    """torch.nn.MultiheadAttention(batch_first=True) holding ``ours``'s weights."""
    theirs = torch.nn.MultiheadAttention(ours.d_model, ours.heads, batch_first=True,
                                         dtype=torch.float64)
    W_qkv, b_qkv, W_out, b_out = (nnx.to_numpy(p) for p in ours.params())
    load_into(torch, theirs, [W_qkv.T, b_qkv, W_out.T, b_out])   # in_proj, then out_proj
    return theirs


def attention_forward(torch, theirs, causal):
    def forward(x):
        T = x.shape[1]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
        return theirs(x, x, x, need_weights=False, attn_mask=mask)[0]
    return forward


def torch_grads_of_attention(grads):
    """torch's (in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias) grads in nnx's
    layout (W_qkv, b_qkv, W_out, b_out)."""
    return [grads[0].T, grads[1], grads[2].T, grads[3]]


@pytest.mark.parametrize("d, heads, causal, shape", [
    (6, 2, False, (3, 4)), (8, 4, True, (2, 5)), (6, 3, True, (3, 1)), (4, 1, False, (1, 3)),
    (6, 6, False, (2, 2))])
def test_multi_head_attention_matches_torch(torch, d, heads, causal, shape):
    nnx.seed(1)
    ours = nnx.MultiHeadAttention(d, heads, causal=causal, dtype=F64)
    ours.set_params([ours.W_qkv, arr(host(3 * d, 5, 0.3)), ours.W_out, arr(host(d, 6, 0.3))])
    theirs = torch_attention(torch, ours)
    x = host(shape + (d,), 1)
    result = run(ours, x)
    yt, dxt, grads = torch_run(torch, attention_forward(torch, theirs, causal),
                               list(theirs.parameters()), x, result[3])
    assert_same(result, (yt, dxt, torch_grads_of_attention(grads)))


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_the_attention_map_is_torchs_attention_weights(torch, causal):
    nnx.seed(2)
    ours = nnx.MultiHeadAttention(6, 3, causal=causal, dtype=F64)
    with pytest.raises(nnx.StateError, match=r"\.attention: no attention computed yet; run "
                                             r"fprop\(x\) first"):
        ours.attention
    theirs = torch_attention(torch, ours)
    x = host((2, 4, 6), 3)
    ours.fprop(arr(x))
    xt = torch.tensor(x)
    mask = torch.triu(torch.ones(4, 4, dtype=torch.bool), 1) if causal else None
    _, weights = theirs(xt, xt, xt, need_weights=True, attn_mask=mask,
                        average_attn_weights=False)
    p = nnx.to_numpy(ours.attention)
    assert p.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(p, weights.detach().numpy(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-14)


def torch_block(torch, ours):
    """A pre-LN block written out in torch: x + MHA(LN(x)), then h + W2·GELU(W1·LN(h))."""
    d, ff = ours.d_model, ours.d_ff
    ln1, ln2 = (torch.nn.LayerNorm(d, dtype=torch.float64) for _ in range(2))
    mha = torch_attention(torch, ours.blocks[0].body[1])
    fc1 = torch.nn.Linear(d, ff, dtype=torch.float64)
    fc2 = torch.nn.Linear(ff, d, dtype=torch.float64)
    ours_ln1, _, ours_ln2, ours_fc1, _, ours_fc2 = \
        list(ours.blocks[0].body) + list(ours.blocks[1].body)
    load_into(torch, ln1, [nnx.to_numpy(p) for p in ours_ln1.params()])
    load_into(torch, ln2, [nnx.to_numpy(p) for p in ours_ln2.params()])
    load_into(torch, fc1, [nnx.to_numpy(ours_fc1.W).T, nnx.to_numpy(ours_fc1.b)])
    load_into(torch, fc2, [nnx.to_numpy(ours_fc2.W).T, nnx.to_numpy(ours_fc2.b)])
    gelu, attend = torch.nn.GELU(approximate="tanh"), attention_forward(torch, mha,
                                                                       ours.causal)

    def forward(x):
        h = x + attend(ln1(x))
        return h + fc2(gelu(fc1(ln2(h))))
    params = [*ln1.parameters(), *mha.parameters(), *ln2.parameters(), *fc1.parameters(),
              *fc2.parameters()]
    return forward, params


def to_nnx_layout(grads):
    """torch's grads of torch_block's params in the order and layout of block.grads()."""
    ln1, attn, ln2, fc1, fc2 = grads[0:2], grads[2:6], grads[6:8], grads[8:10], grads[10:12]
    return [*ln1, *torch_grads_of_attention(attn), *ln2, fc1[0].T, fc1[1], fc2[0].T, fc2[1]]


@pytest.mark.parametrize("causal", [False, True])
def test_transformer_block_matches_a_torch_pre_ln_block(torch, causal):
    nnx.seed(3)
    ours = nnx.TransformerBlock(8, 2, 12, causal=causal, dtype=F64)
    rng = np.random.default_rng(4)
    ours.set_params([p + arr(rng.standard_normal(tuple(p.shape)) * 0.2) for p in ours.params()])
    forward, params = torch_block(torch, ours)
    x = host((3, 5, 8), 1)
    result = run(ours, x)
    yt, dxt, grads = torch_run(torch, forward, params, x, result[3])
    assert_same(result, (yt, dxt, to_nnx_layout(grads)))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimiser_steps_of_a_small_transformer_track_torch(torch, optimizer):
    """Three SGD (momentum) or Adam steps of a causal block + Linear head under
    cross-entropy: the losses and the weights agree with torch's step for step.  (nnx's
    Adam adds ε to √v before the bias correction, torch after it: ε = 1e-14 here makes the
    two forms agree to ~1e-11; the keys' bias has a zero gradient in exact arithmetic, which
    Adam's g/√v turns from rounding noise into full steps.)"""
    nnx.seed(5)
    block = nnx.TransformerBlock(8, 2, 12, causal=True, dtype=F64)
    head = nnx.Linear(8, 4, dtype=F64)
    net = nnx.Sequential(block, head)
    forward, params = torch_block(torch, block)
    fc = torch.nn.Linear(8, 4, dtype=torch.float64)
    load_into(torch, fc, [nnx.to_numpy(head.W).T, nnx.to_numpy(head.b)])
    params += list(fc.parameters())
    opt, topt = (nnx.SGD(net, lr=0.1, momentum=0.9), torch.optim.SGD(params, lr=0.1,
                                                                      momentum=0.9)) \
        if optimizer == "sgd" else (nnx.Adam(net, lr=0.01, eps=1e-14),
                                    torch.optim.Adam(params, lr=0.01, eps=1e-14))
    rng = np.random.default_rng(6)
    x, t = host((6, 5, 8), 7), rng.integers(0, 4, 6)
    loss = nnx.SoftmaxCrossEntropy()
    for _ in range(3):
        scores = net.fprop(arr(x))[:, -1, :]             # the last step's scores
        value = float(loss.fprop(scores, nnx.asarray(t)))
        g = nnx.to_numpy(loss.bprop())
        full = np.zeros((6, 5, 4))
        full[:, -1, :] = g
        net.bprop(arr(full))
        opt.step()
        topt.zero_grad()
        tvalue = torch.nn.functional.cross_entropy(fc(forward(torch.tensor(x)))[:, -1, :],
                                                   torch.tensor(t))
        tvalue.backward()
        topt.step()
        assert value == pytest.approx(tvalue.item(), rel=1e-12 if optimizer == "sgd" else 1e-10)
    np.testing.assert_allclose(nnx.to_numpy(head.W), fc.weight.detach().numpy().T, rtol=1e-10,
                               atol=1e-12)


# -- hostile inputs: one clear error each ------------------------------------------------------
def test_heads_that_do_not_divide_d_model():
    with pytest.raises(nnx.ArgumentError, match=r"MultiHeadAttention: heads must divide "
                                                r"d_model = 6 .*got 4; use one of 1, 2, 3, 6"):
        nnx.MultiHeadAttention(6, 4)
    with pytest.raises(nnx.ArgumentError, match="heads must divide d_model = 10"):
        nnx.TransformerBlock(10, 3, 20)
    with pytest.raises(nnx.ArgumentTypeError, match="causal must be True or False, got int"):
        nnx.MultiHeadAttention(6, 2, causal=1)
    with pytest.raises(nnx.ArgumentError, match="heads must be a positive integer, got 0"):
        nnx.MultiHeadAttention(6, 0)


@pytest.mark.parametrize("make", [lambda: nnx.MultiHeadAttention(6, 2),
                                  lambda: nnx.TransformerBlock(6, 2, 8),
                                  lambda: nnx.PositionalEmbedding(4, 6)])
def test_an_empty_sequence_is_refused(make):
    with pytest.raises(nnx.ShapeError, match=r"input has shape \(2, 0, 6\), a sequence of 0 "):
        make().fprop(arr(np.zeros((2, 0, 6)), "float32"))


@pytest.mark.parametrize("shape, expected", [((2, 3, 5), r"\(2, 3, 5\), expected \(batch, "
                                                         r"steps, 6\)"),
                                             ((2, 6), r"\(2, 6\), expected \(batch, steps, 6\)")])
def test_wrong_d_model_or_rank(shape, expected):
    with pytest.raises(nnx.ShapeError, match=r"MultiHeadAttention\(6, 2\).fprop: input has "
                                             r"shape " + expected):
        nnx.MultiHeadAttention(6, 2).fprop(arr(np.zeros(shape), "float32"))
    with pytest.raises(nnx.ShapeError, match=r"LayerNorm\(6\).fprop: input has shape"):
        nnx.LayerNorm(6).fprop(arr(np.zeros(shape[:-1] + (5,)), "float32"))


def test_a_sequence_longer_than_the_positional_table():
    with pytest.raises(nnx.ShapeError, match=r"a sequence of 9 steps; this table holds 1 to 8 "
                                             r"\(build PositionalEmbedding\(9, 4\) or larger\)"):
        nnx.PositionalEmbedding(8, 4).fprop(arr(np.zeros((2, 9, 4)), "float32"))
    net = nnx.models.transformer(d_model=8, heads=2, d_ff=8, blocks=1)
    with pytest.raises(nnx.ShapeError, match=r"values per example do not fill \(28, 28\)"):
        net.fprop(nnx.asarray(np.zeros((2, 785)), dtype="float32"))


def test_input_dtype_differs_from_the_parameters():
    with pytest.raises(nnx.DTypeError, match="input dtype float32 differs from the parameters' "
                                             "float64"):
        nnx.MultiHeadAttention(4, 2, dtype=F64).fprop(arr(np.zeros((1, 2, 4)), "float32"))


def test_nan_inputs_come_out_nan_and_fit_names_them():
    """A module never hides a NaN (the causal mask included): the example holding it comes
    out NaN (P·V multiplies the masked weight 0 by the NaN value ahead, as torch does), the
    others stay finite; fit refuses NaN data with one clear error."""
    x = host((2, 4, 6), 1)
    x[0, 1, 2] = math.nan
    y = nnx.to_numpy(nnx.TransformerBlock(6, 2, 8, causal=True, dtype=F64).fprop(arr(x)))
    assert np.isnan(y[0, 1:]).all() and np.isfinite(y[1]).all()
    net = nnx.models.transformer(d_model=8, heads=2, d_ff=8, blocks=1)
    images = np.random.default_rng(0).random((20, 784)).astype("float32")
    images[3, 5] = math.nan
    with pytest.raises(nnx.NNXError, match="fit: the training inputs contain NaN"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.Adam(net), nnx.asarray(images),
                nnx.asarray(np.zeros(20, dtype="int64")), epochs=1, batch_size=10,
                verbose=False)


def test_causal_attention_with_one_step_is_the_value_path(device):
    """T = 1: the softmax over one position is 1, so y = (x·W_v + b_v)·W_out + b_out."""
    m = nnx.MultiHeadAttention(4, 2, causal=True, dtype=F64)
    x = arr(host((3, 1, 4), 1))
    y = nnx.to_numpy(m.fprop(x))
    W, b = nnx.to_numpy(m.W_qkv), nnx.to_numpy(m.b_qkv)
    xh = host((3, 1, 4), 1)
    expected = (xh @ W[:, 8:] + b[8:]) @ nnx.to_numpy(m.W_out) + nnx.to_numpy(m.b_out)
    np.testing.assert_allclose(y, expected, **TIGHT)


def test_causal_attention_never_looks_ahead():
    """Changing the last step changes no earlier output."""
    m = nnx.MultiHeadAttention(6, 3, causal=True, dtype=F64)
    x = host((2, 5, 6), 1)
    y1 = nnx.to_numpy(m.fprop(arr(x)))
    x[:, -1] += 10
    y2 = nnx.to_numpy(m.fprop(arr(x)))
    np.testing.assert_array_equal(y1[:, :-1], y2[:, :-1])
    assert not np.allclose(y1[:, -1], y2[:, -1])


def test_layer_norm_in_float16_normalises_in_float32():
    x = (1000 + host((4, 3, 64), 1)).astype("float16")      # large mean, small spread
    m = nnx.LayerNorm(64, dtype="float16")
    y = m.fprop(nnx.asarray(x, dtype="float16"))
    assert str(y.dtype).endswith("float16") and str(m.dgamma.dtype).endswith("float16")
    exact = nnx.to_numpy(nnx.LayerNorm(64, dtype=F64).fprop(arr(x.astype("float64"))))
    np.testing.assert_allclose(nnx.to_numpy(y).astype("float64"), exact, atol=5e-3)
    dx = m.bprop(nnx.asarray(np.ones((4, 3, 64)), dtype="float16"))
    assert str(dx.dtype).endswith("float16") and np.isfinite(nnx.to_numpy(dx)).all()


def test_broadcasting_add_refuses_shapes_that_do_not_broadcast():
    with pytest.raises(nnx.ShapeError, match=r"Add\(\).fprop: inputs have shapes \(2, 3\), "
                                             r"\(2, 4\), which do not broadcast"):
        nnx.Add().fprop(arr(np.zeros((2, 3))), arr(np.zeros((2, 4))))
    y = nnx.Add().fprop(arr(np.zeros((2, 3, 4))), arr(np.ones(4)))
    assert tuple(y.shape) == (2, 3, 4)


# -- checkpoints, descriptions, the testing kit ------------------------------------------------
def test_checkpoint_round_trip_of_the_transformer(device, tmp_path):
    nnx.seed(0)
    net = nnx.models.transformer(d_model=8, heads=2, d_ff=16, blocks=2).to(dtype=F64)
    net.modules[3] = nnx.TransformerBlock(8, 4, 16, causal=True, dtype=F64)
    x = arr(host((3, 784), 1))
    y = nnx.to_numpy(net.fprop(x))
    nnx.save(net, tmp_path / "t.npz")
    back = nnx.load(tmp_path / "t.npz")
    assert repr(back) == repr(net) and "TransformerBlock(8, 4, 16, causal=True)" in repr(back)
    np.testing.assert_array_equal(nnx.to_numpy(back.fprop(x)), y)


def test_summary_and_print():
    net = nnx.models.transformer(d_model=16, heads=4, d_ff=32, blocks=1)
    text = nnx.summary(net, input_shape=(2, 784))
    count = sum(math.prod(p.shape) for p in net.params())
    assert f"Total params: {count:,}" in text
    assert "MultiHeadAttention(16, 4)" in text and "(2, 28, 16)" in text and "(2, 10)" in text
    assert "attention: Residual" in text and "feed_forward: Residual" in text
    assert "TransformerBlock(16, 4, 32)" in repr(net)


@pytest.mark.parametrize("factory, shape", [
    (lambda: nnx.MultiHeadAttention(4, 2, causal=True), (2, 3, 4)),
    (lambda: nnx.TransformerBlock(4, 2, 6), (2, 3, 4)),
    (lambda: nnx.LayerNorm(4), (2, 3, 4))])
def test_check_module(factory, shape):
    from nnx.testing import check_module
    assert check_module(factory, shape).ok


# -- a fixed number of array operations per layer ----------------------------------------------
COUNTED = ["__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
           "__rtruediv__", "__matmul__", "__neg__", "__iadd__", "__isub__", "__imul__",
           "__itruediv__", "__ge__", "__getitem__"]
SKIPPED = {"isdtype", "result_type", "finfo", "iinfo", "can_cast", "asarray", "astype"}


def count_ops(monkeypatch, make, shape):
    """Array operations (array-api-strict calls and operators) of one fprop and one bprop,
    after a first warm-up pass (the causal mask is made once per length)."""
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict not installed")
    Array, counts = strict._array_object.Array, {"n": 0}

    def counting(real):
        def call(*a, **k):
            counts["n"] += 1
            return real(*a, **k)
        return call
    with nnx.device("strict"):
        m = make().to(dtype=F64)
        x = nnx.asarray(host(shape, 1), dtype=F64)
        g = nnx.asarray(host(shape[:-1] + (m.fprop(x).shape[-1],), 2), dtype=F64)
        m.bprop(g)
        with monkeypatch.context() as patch:
            for name in COUNTED:
                patch.setattr(Array, name, counting(getattr(Array, name)))
            for name in dir(strict):
                f = getattr(strict, name)
                if callable(f) and not isinstance(f, type) and not name.startswith("_") \
                        and name not in SKIPPED:
                    patch.setattr(strict, name, counting(f))
            counts["n"] = 0
            m.fprop(x)
            forward = counts["n"]
            m.bprop(g)
            return forward, counts["n"] - forward


@pytest.mark.parametrize("name, make, pinned", [
    ("attention", lambda h: nnx.MultiHeadAttention(12, h), (20, 27)),
    ("causal attention", lambda h: nnx.MultiHeadAttention(12, h, causal=True), (21, 27)),
    ("block", lambda h: nnx.TransformerBlock(12, h, 24), (54, 70)),
    ("layer norm", lambda h: nnx.LayerNorm(12), (10, 11))])
def test_operations_do_not_grow_with_steps_or_heads(monkeypatch, name, make, pinned):
    counts = {(T, h): count_ops(monkeypatch, lambda: make(h), (2, T, 12))
              for T in (1, 3, 11) for h in (1, 2, 6)}
    assert len(set(counts.values())) == 1, counts
    if pinned is not None:
        assert counts[(3, 2)] == pinned, counts[(3, 2)]
    print(name, "fprop, bprop operations:", counts[(3, 2)])


def test_the_benchmark_reference_computes_the_same_transformer(torch):
    """nnx-bench's torch model of models.transformer gives the same scores and gradients."""
    from nnx.benchmark import transformer_cases
    net = transformer_cases.build_net(F64, "cpu")
    theirs = transformer_cases.torch_model(net)
    x = host((3, 784), 1)
    result = run(net, x)
    yt, dxt, grads = torch_run(torch, theirs, list(theirs.parameters()), x, result[3])
    np.testing.assert_allclose(result[0], yt, **TIGHT)
    np.testing.assert_allclose(result[1], dxt, rtol=1e-12, atol=1e-12)
    assert len(grads) == len(result[2])
    # torch lists the positional table (its own parameter) before its submodules'
    np.testing.assert_allclose(result[2][2], grads[0], rtol=1e-10, atol=1e-12)      # P
    np.testing.assert_allclose(result[2][0], grads[1].T, rtol=1e-10, atol=1e-12)    # first W
    np.testing.assert_allclose(result[2][-2], grads[-2].T, rtol=1e-10, atol=1e-12)  # head W


# -- nnx train --model transformer -------------------------------------------------------------
from test_trust_files import cli, one_line, tiny_data  # noqa: E402,F401  (the fixture)


def transformer_args(data, *more):
    return ["train", "--model", "transformer", "--epochs", "1", "--batch-size", "20",
            "--hidden", "8", "--layers", "1", "--data", data, "--no-malloc-tuning", *more]


def test_nnx_train_transformer_with_adam_by_default_saves_and_evaluates(capsys, tiny_data,
                                                                         tmp_path):
    save = tmp_path / "t.npz"
    code, out, err = cli(capsys, *transformer_args(tiny_data, "--save", save))
    assert code == 0, err
    assert "TransformerBlock" in out and "adam lr 0.001" in out and "schedule cosine" in out
    code, out, err = cli(capsys, "evaluate", save, "--data", tiny_data)
    assert code == 0, err


@pytest.mark.parametrize("more, message", [
    (["--activation", "relu"], "--activation shapes the MLPs; the transformer's feed-forward"),
    (["--hidden", "10"], "--hidden 10 is the transformer's d_model, split over 4 heads"),
    (["--momentum", "0.9"], "--momentum is SGD's")])
def test_nnx_train_transformer_usage_errors(capsys, tiny_data, more, message):
    code, out, err = cli(capsys, *transformer_args(tiny_data, *more))
    assert code == 2 and one_line(err) and message in err, err


def test_axes_survive_a_checkpoint(tmp_path):
    net = nnx.Sequential(nnx.Linear(4, 4, dtype=F64), nnx.Softmax(axis=1), nnx.LogSoftmax(axis=0))
    g = nnx.Graph("x", [("s", nnx.Split([1, 2], axis=1), "x"),
                        ("c", nnx.Concat(axis=1), ["s:1", "s:0"]), ("n", net, "c")], "n")
    nnx.save(g, tmp_path / "g.npz")
    back = nnx.load(tmp_path / "g.npz")
    assert "Softmax(axis=1)" in repr(back) and "Split([1, 2], axis=1)" in repr(back)
    x = arr(host((2, 3, 4), 1))
    np.testing.assert_array_equal(nnx.to_numpy(back.fprop(x)), nnx.to_numpy(g.fprop(x)))


def test_char_transformer_is_a_causal_language_model():
    """(N, T, vocab) one-hot characters → (N, T, vocab) scores; no score sees a later step."""
    nnx.seed(0)
    lm = nnx.models.char_transformer(7, max_len=6, d_model=8, heads=2, d_ff=16,
                                     blocks=2).to(dtype=F64)
    rng = np.random.default_rng(1)
    chars = rng.integers(0, 7, (3, 5))
    y1 = nnx.to_numpy(lm.fprop(arr(np.eye(7)[chars])))
    chars[:, -1] = (chars[:, -1] + 1) % 7
    y2 = nnx.to_numpy(lm.fprop(arr(np.eye(7)[chars])))
    assert y1.shape == (3, 5, 7)
    np.testing.assert_allclose(y1[:, :-1], y2[:, :-1], rtol=1e-13, atol=1e-13)
    assert not np.allclose(y1[:, -1], y2[:, -1])
    assert nnx.gradcheck(lm, arr(np.eye(7)[chars]), mode="direction", dtype=F64).ok
