"""Convolutional networks: PyTorch agreement, the NumPy fast path, shapes, errors, buffers,
checkpoints and learning.  (Gradchecks and cross-backend agreement: cases.py.)"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import nnx
from nnx.backends import fast as backends_fast
from nnx.backends import fast_conv
from nnx.backends import gather as backends_gather
from nnx.layers import _im2col

import im2col_reference

F64 = "float64"


def host(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- against torch.nn.functional, float64 ---------------------------------------------------
CONV = [((3, 2, 7, 6), 4, (3, 2), (2, 1), (1, 2)), ((2, 3, 5, 5), 2, 1, 1, 0),
        ((2, 2, 4, 3), 3, (4, 3), 1, 0), ((2, 1, 9, 8), 3, 3, 3, 1)]


@pytest.mark.parametrize("x_shape, c_out, k, s, p", CONV)
def test_conv2d_matches_torch(x_shape, c_out, k, s, p):
    torch = pytest.importorskip("torch", reason="torch is not installed: no PyTorch reference")
    F = torch.nn.functional
    with nnx.device("torch:cpu"):
        conv = nnx.Conv2D(x_shape[1], c_out, k, stride=s, padding=p, dtype=F64)
        conv.set_params([conv.W, nnx.asarray(host(c_out, 1), dtype=F64)])
        x = nnx.asarray(host(x_shape), dtype=F64)
        y = conv.fprop(x)
        g = nnx.asarray(host(tuple(y.shape), 2), dtype=F64)
        dx = conv.bprop(g)
    xt, Wt, bt = (torch.tensor(nnx.to_numpy(a), requires_grad=True) for a in (x, conv.W, conv.b))
    yt = F.conv2d(xt, Wt, bt, stride=s, padding=p)
    yt.backward(torch.tensor(nnx.to_numpy(g)))
    for ours, theirs in [(y, yt), (dx, xt.grad), (conv.dW, Wt.grad), (conv.db, bt.grad)]:
        np.testing.assert_allclose(nnx.to_numpy(ours), theirs.detach().numpy(), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("name", ["max", "avg"])
@pytest.mark.parametrize("k, s", [(2, None), ((3, 2), (1, 2)), ((4, 5), None)])
def test_pools_match_torch(name, k, s):
    torch = pytest.importorskip("torch", reason="torch is not installed: no PyTorch reference")
    F = torch.nn.functional
    pool = (nnx.MaxPool2D if name == "max" else nnx.AvgPool2D)(k, s)
    x_host = host((2, 3, 5, 5))
    with nnx.device("torch:cpu"):
        y = pool.fprop(nnx.asarray(x_host, dtype=F64))
        g = host(tuple(y.shape), 3)
        dx = pool.bprop(nnx.asarray(g, dtype=F64))
    xt = torch.tensor(x_host, requires_grad=True)
    yt = getattr(F, f"{name}_pool2d")(xt, k, s)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(nnx.to_numpy(y), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nnx.to_numpy(dx), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["max", "avg"])
@pytest.mark.parametrize("k, s, p, ceil, shape", [
    (3, 2, 1, True, (2, 3, 6, 5)), (3, 2, 1, False, (2, 3, 7, 7)), (2, 2, 0, True, (2, 2, 5, 5)),
    ((3, 2), (2, 3), (1, 1), True, (1, 2, 8, 7)), (4, 3, 2, True, (2, 1, 9, 10)),
    (3, 3, 0, True, (1, 1, 7, 7))])
def test_padded_and_ceil_mode_pools_match_torch(name, k, s, p, ceil, shape):
    """MaxPool2D pads with -inf; AvgPool2D counts the padding in the divisor
    (count_include_pad=True) but not the places a ceil_mode window runs past it."""
    torch = pytest.importorskip("torch", reason="torch is not installed: no PyTorch reference")
    F = torch.nn.functional
    x_host = host(shape)
    for spec in ("cpu", "torch:cpu"):
        pool = (nnx.MaxPool2D if name == "max" else nnx.AvgPool2D)(k, s, padding=p,
                                                                    ceil_mode=ceil)
        y = pool.fprop(nnx.asarray(x_host, dtype=F64, device=spec))
        g = host(tuple(y.shape), 3)
        dx = pool.bprop(nnx.asarray(g, dtype=F64, device=spec))
        xt = torch.tensor(x_host, requires_grad=True)
        yt = getattr(F, f"{name}_pool2d")(xt, k, s, p, ceil_mode=ceil)
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(nnx.to_numpy(y), yt.detach().numpy(), rtol=1e-12,
                                   atol=1e-12, err_msg=spec)
        np.testing.assert_allclose(nnx.to_numpy(dx), xt.grad.numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=spec)


@pytest.mark.parametrize("bad, match", [
    (dict(padding=2), r"padding must be at most half the kernel size"),
    (dict(ceil_mode=1), r"ceil_mode must be True or False, got int"),
    (dict(padding=-1), r"padding must be >= 0")])
def test_pool_arguments_are_checked(bad, match):
    for make in (nnx.MaxPool2D, nnx.AvgPool2D):
        with pytest.raises((nnx.ArgumentError, nnx.ArgumentTypeError), match=match):
            make(3, **bad)


@settings(max_examples=40, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4),
       kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2))
def test_gather_im2col_and_col2im_equal_the_reference(c, h, w, kh, kw, sh, sw, ph, pw):
    """The portable gathers (run here on array-api-strict) against the original kh·kw
    slicing im2col and its spreading col2im, on any geometry."""
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    if h + 2 * ph < kh or w + 2 * pw < kw:
        return
    shape, k, s, p = (2, c, h, w), (kh, kw), (sh, sw), (ph, pw)
    out = _im2col.output_size("test", shape, k, s, p)
    x = strict.asarray(host(shape))
    np.testing.assert_array_equal(np.asarray(_im2col.im2col(x, k, s, p, out)),
                                  np.asarray(im2col_reference.im2col_reference(x, k, s, p, out)))
    cols = strict.asarray(host((2, c * kh * kw, out[0] * out[1]), 1))
    np.testing.assert_allclose(np.asarray(_im2col.col2im(cols, shape, k, s, p, out)),
                               np.asarray(im2col_reference.col2im_reference(cols, shape, k, s,
                                                                            p, out)),
                               rtol=1e-13, atol=1e-13)
    # the pooling layout, each window's values last: the same numbers transposed
    kk, ll = kh * kw, out[0] * out[1]
    last = np.asarray(_im2col.im2col(x, k, s, p, out, windows_last=True))
    ref = np.asarray(im2col_reference.im2col_reference(x, k, s, p, out))
    np.testing.assert_array_equal(last, ref.reshape(2, c, kk, ll).transpose(0, 1, 3, 2))
    cols_last = strict.asarray(np.ascontiguousarray(
        np.asarray(cols).reshape(2, c, kk, ll).transpose(0, 1, 3, 2)))
    np.testing.assert_allclose(np.asarray(_im2col.col2im(cols_last, shape, k, s, p, out,
                                                         windows_last=True)),
                               np.asarray(im2col_reference.col2im_reference(cols, shape, k, s,
                                                                            p, out)),
                               rtol=1e-13, atol=1e-13)


def _backend_arrays(spec):
    if spec == "strict":
        strict = pytest.importorskip("array_api_strict",
                                     reason="array-api-strict is not installed")
        return strict.asarray
    torch = pytest.importorskip("torch", reason="torch is not installed")
    return lambda a: torch.from_numpy(np.ascontiguousarray(a))


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4),
       kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2), ceil=st.booleans(),
       spec=st.sampled_from(["strict", "torch"]))
def test_batch_last_im2col_and_col2im_equal_the_batch_first_gathers(c, h, w, kh, kw, sh, sw,
                                                                     ph, pw, ceil, spec):
    """The batch-last gathers Conv2D and MaxPool2D run off NumPy, against the batch-first
    gathers (themselves proven against the slicing reference above), in both layouts, with
    a -inf pad value and ceil_mode windows; on torch through the reused Scratch arrays,
    called twice so the second call writes into the first call's array."""
    if h + 2 * ph < kh or w + 2 * pw < kw or (ceil and (2 * ph > kh or 2 * pw > kw)):
        return
    put = _backend_arrays(spec)
    shape, k, s, p = (3, c, h, w), (kh, kw), (sh, sw), (ph, pw)
    out = _im2col.output_size("test", shape, k, s, p, ceil_mode=ceil)
    scratch = backends_gather.Scratch()
    for last in (False, True):
        for seed in (0, 1):
            x = put(host(shape, seed))
            first = np.asarray(_im2col.im2col(x, k, s, p, out, -np.inf, windows_last=last))
            got = np.asarray(_im2col.im2col_batch_last(x, k, s, p, out, -np.inf,
                                                       windows_last=last, scratch=scratch))
            np.testing.assert_array_equal(got, first.reshape(3, -1).T)
            cols = host(first.shape, seed + 2)
            want = np.asarray(_im2col.col2im(put(cols), shape, k, s, p, out,
                                              windows_last=last))
            dx = _im2col.col2im_batch_last(put(cols.reshape(3, -1).T), shape, k, s, p, out,
                                           windows_last=last, scratch=scratch)
            assert tuple(dx.shape) == shape
            np.testing.assert_allclose(np.asarray(dx), want, rtol=1e-13, atol=1e-13)


def test_scratch_reuses_one_array_per_name_and_declines_elsewhere():
    """One array per name, reused while shape, dtype and device hold and replaced (not
    added) when they change; None for other libraries and autograd tensors; copies empty."""
    import copy
    torch = pytest.importorskip("torch", reason="torch is not installed")
    scratch = backends_gather.Scratch()
    index = torch.tensor([2, 0, 1])
    a = scratch.take("cols", torch.arange(6.0).reshape(3, 2), index, 0)
    b = scratch.take("cols", torch.arange(6.0, 12.0).reshape(3, 2), index, 0)
    assert a.data_ptr() == b.data_ptr() and b.tolist() == [[10, 11], [6, 7], [8, 9]]
    c = scratch.take("cols", torch.arange(6, dtype=torch.float32).reshape(3, 2), index, 0)
    assert c.dtype == torch.float32 and len(scratch._arrays) == 1
    scratch.take("cols", torch.arange(8.0).reshape(4, 2), index, 0)
    assert len(scratch._arrays) == 1 and tuple(scratch._arrays["cols"].shape) == (3, 2)
    assert copy.deepcopy(scratch)._arrays == {}
    assert scratch.take("cols", np.arange(6.0).reshape(3, 2), np.array([0]), 0) is None
    leaf = torch.ones(3, 2, requires_grad=True)
    assert scratch.take("cols", leaf, index, 0) is None
    assert scratch.matmul("m", leaf, torch.ones(2, 2)) is None


def test_moving_a_network_lets_its_reused_arrays_go():
    """net.to(...) drops every module's reused arrays (they belong to the old device and
    dtype); the next step makes new ones and gives the same result as before the move."""
    net = nnx.Sequential(nnx.Conv2D(1, 2, 3), nnx.MaxPool2D(2)).to("cpu", F64)
    x = nnx.asarray(host((2, 1, 6, 6), 0), dtype=F64)
    before = nnx.to_numpy(net.fprop(x))
    assert "_scratch" in vars(net[0])
    net.to("cpu", "float32")
    assert all("_scratch" not in vars(m) for m in net.children())
    net.to("cpu", F64)
    np.testing.assert_allclose(nnx.to_numpy(net.fprop(x)), before, rtol=1e-14)


def test_two_identical_convolutions_in_one_net_keep_their_own_columns():
    """Three Conv2D (and two MaxPool2D) of identical shapes in one net on NumPy and torch
    CPU, where each gathers or copies into its own reused arrays: outputs and gradients
    equal array-api-strict's (no reused arrays there) step after step, and what a step
    returned is not overwritten by the next one."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")

    def net(device):
        nnx.seed(3)
        return nnx.Sequential(
            nnx.Conv2D(2, 2, 3, padding=1), nnx.MaxPool2D(3, stride=1, padding=1),
            nnx.Conv2D(2, 2, 3, padding=1), nnx.MaxPool2D(3, stride=1, padding=1),
            nnx.Conv2D(2, 2, 3, padding=1)).to(device, F64)
    ref, nets = net("strict"), {spec: net(spec) for spec in ("cpu", "torch:cpu")}
    kept = []
    for step in range(3):
        x, g = host((4, 2, 6, 6), step), host((4, 2, 6, 6), step + 10)
        y_ref = nnx.to_numpy(ref.fprop(nnx.asarray(x, device="strict", dtype=F64)))
        dx_ref = nnx.to_numpy(ref.bprop(nnx.asarray(g, device="strict", dtype=F64)))
        for spec, ours in nets.items():
            y = ours.fprop(nnx.asarray(x, device=spec, dtype=F64))
            dx = ours.bprop(nnx.asarray(g, device=spec, dtype=F64))
            np.testing.assert_allclose(nnx.to_numpy(y), y_ref, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(nnx.to_numpy(dx), dx_ref, rtol=1e-12, atol=1e-12)
            for a, b in zip(ours.grads(), ref.grads()):
                np.testing.assert_allclose(nnx.to_numpy(a), nnx.to_numpy(b), rtol=1e-12,
                                           atol=1e-12)
            kept.append([(a, nnx.to_numpy(a).copy()) for a in [y, dx, *ours.grads()]])
    for arrays in kept:                         # later steps left earlier results alone
        for a, copy in arrays:
            np.testing.assert_array_equal(nnx.to_numpy(a), copy)
    for ours in nets.values():
        first, second = ours[0]._scratch._arrays["cols"], ours[2]._scratch._arrays["cols"]
        assert first is not second and not np.shares_memory(nnx.to_numpy(first),
                                                             nnx.to_numpy(second))
    ours = nets["torch:cpu"].to(dtype="float32")    # a new dtype: new arrays, right answers
    x = host((4, 2, 6, 6), 7)
    np.testing.assert_allclose(ours.fprop(torch.from_numpy(x).float()).numpy(),
                               nnx.to_numpy(ref.fprop(nnx.asarray(x, device="strict", dtype=F64))),
                               rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 5)])
def test_batch_norm_matches_torch_in_training_and_eval(shape):
    torch = pytest.importorskip("torch", reason="torch is not installed: no PyTorch reference")
    theirs = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        3, momentum=0.3, dtype=torch.float64)
    ours = nnx.BatchNorm(3, momentum=0.3, dtype=F64, device="torch:cpu")
    gamma, beta = host(3, 4), host(3, 5)
    ours.set_params([nnx.asarray(gamma, dtype=F64, device="torch:cpu"),
                     nnx.asarray(beta, dtype=F64, device="torch:cpu")])
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(gamma)), theirs.bias.copy_(torch.tensor(beta))
    for step, mode in enumerate(["train", "train", "eval"]):
        ours.train(mode == "train"), theirs.train(mode == "train")
        x_host, g = 2 + 3 * host(shape, 10 + step), host(shape, 20 + step)
        y = ours.fprop(nnx.asarray(x_host, dtype=F64, device="torch:cpu"))
        dx = ours.bprop(nnx.asarray(g, dtype=F64, device="torch:cpu"))
        xt = torch.tensor(x_host, requires_grad=True)
        theirs.zero_grad()
        yt = theirs(xt)
        yt.backward(torch.tensor(g))
        pairs = [(y, yt), (dx, xt.grad), (ours.dgamma, theirs.weight.grad),
                 (ours.dbeta, theirs.bias.grad), (ours.running_mean, theirs.running_mean),
                 (ours.running_var, theirs.running_var)]
        for a, b in pairs:
            np.testing.assert_allclose(nnx.to_numpy(a), b.detach().numpy(), rtol=1e-12,
                                       atol=1e-12, err_msg=mode)



@pytest.mark.parametrize("device", ["torch:cpu", "numpy"])
def test_batch_norm_running_statistics_over_many_steps_match_torch(device):
    """The running statistics fold in every 16th training step (or when read): 37 steps
    with batch sizes and a momentum that change on the way, read only at the end, agree
    with torch's step-by-step updates; a read in the middle changes nothing."""
    torch = pytest.importorskip("torch", reason="torch is not installed: no PyTorch reference")
    theirs = torch.nn.BatchNorm2d(3, momentum=0.3, dtype=torch.float64)
    ours = nnx.BatchNorm(3, momentum=0.3, dtype=F64, device=device)
    for step in range(37):
        if step == 20:
            ours.momentum = theirs.momentum = 0.05
        x = 2 + 3 * host((2 + step % 3, 3, 2, 3), 100 + step)
        ours.fprop(nnx.asarray(x, dtype=F64, device=device))
        theirs(torch.tensor(x))
        if step == 25:
            nnx.to_numpy(ours.running_var)
    for a, b in [(ours.running_mean, theirs.running_mean), (ours.running_var, theirs.running_var)]:
        np.testing.assert_allclose(nnx.to_numpy(a), b.numpy(), rtol=1e-12, atol=1e-14)
    ours.running_mean = nnx.asarray(np.zeros(3), dtype=F64, device=device)   # assigning one
    ours.fprop(nnx.asarray(host((4, 3, 2, 2), 7), dtype=F64, device=device))  # keeps the other
    theirs(torch.tensor(host((4, 3, 2, 2), 7)))
    np.testing.assert_allclose(nnx.to_numpy(ours.running_var), theirs.running_var.numpy(),
                               rtol=1e-12)

# -- the NumPy fast path against the Array API reference ----------------------------------
GEOMETRIES = [((2, 3, 7, 6), (3, 2), (2, 1), (1, 2)), ((2, 2, 5, 5), (1, 1), (2, 2), (0, 0)),
              ((1, 1, 4, 3), (4, 3), (1, 1), (0, 0)), ((3, 2, 8, 8), (2, 2), (2, 2), (0, 0)),
              ((2, 1, 5, 5), (1, 1), (1, 1), (1, 1))]



@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 2)])
def test_fast_batch_norm_statistics_and_sums_equal_the_formulas(shape):
    """backends.fast's BatchNorm helpers (NumPy; torch CPU for the statistics) against
    np.mean, np.var and plain sums, on data of a large mean (no cancellation)."""
    from nnx.backends import fast
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    x, g = 1e4 + host(shape, 1), host(shape, 2)
    inputs = [x]
    try:
        import torch
        inputs.append(torch.tensor(x))
    except ImportError:
        pass
    for a in inputs:
        mean, var, xc = (np.asarray(v) for v in fast.batch_norm_statistics(a, axes))
        np.testing.assert_allclose(mean, x.mean(axis=axes, keepdims=True), rtol=1e-15)
        np.testing.assert_allclose(var, x.var(axis=axes, keepdims=True), rtol=1e-10)
        np.testing.assert_allclose(xc, x - x.mean(axis=axes, keepdims=True), rtol=1e-9)
    s0, s1 = fast.batch_norm_sums(g, xc, axes)
    np.testing.assert_allclose(s0, g.sum(axis=axes), rtol=1e-13)
    np.testing.assert_allclose(s1, (g * xc).sum(axis=axes), rtol=1e-12)
    assert fast.batch_norm_sums(g, xc.astype(np.float32), axes) is None

@pytest.mark.parametrize("shape, k, s, p", GEOMETRIES)
def test_fast_im2col_and_col2im_equal_the_reference(shape, k, s, p):
    out = _im2col.output_size("test", shape, k, s, p)
    x = host(shape)
    fast = fast_conv.im2col(x, k, s, p, out)
    assert fast is not None
    np.testing.assert_array_equal(fast, im2col_reference.im2col_reference(x, k, s, p, out))
    cols = host(fast.shape, 1)
    np.testing.assert_allclose(fast_conv.col2im(cols, shape, k, s, p, out),
                               im2col_reference.col2im_reference(cols, shape, k, s, p, out),
                               rtol=1e-14, atol=1e-14)


def _layouts(shape, seed, dtype=F64):
    """The same values as NCHW, as a batch-last view (what Conv2D hands out on NumPy) and
    as a strided slice of a larger array."""
    x = host(shape, seed).astype(dtype)
    n, c, h, w = shape
    last = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    wide = np.zeros((n, c + 1, h, 2 * w), dtype=dtype)
    wide[:, 1:, :, ::2] = x
    return {"nchw": x, "batch-last": last, "strided": wide[:, 1:, :, ::2]}


@pytest.mark.parametrize("n", [0, 1, 65, 200])
def test_batch_last_copies_equal_the_padded_transpose(n):
    """fast_conv.batch_last: x (N, C, H, W) as (C, H + 2·ph, W + 2·pw, N) with zero borders,
    from every layout (batch-first sources above 64 examples go 32 at a time), into a
    reused array whose old values never leak; x's own memory when already batch-last."""
    scratch = backends_gather.Scratch()
    for shape in [(n, 3, 4, 5), (n, 1, 28, 28)]:
        for name, x in _layouts(shape, 0).items():
            for pad in [(0, 0), (1, 2)]:
                want = np.pad(x, ((0, 0), (0, 0), (pad[0],) * 2, (pad[1],) * 2))
                for _ in range(2):
                    got = fast_conv.batch_last(x, pad, scratch)
                    np.testing.assert_array_equal(got, want.transpose(1, 2, 3, 0), name)
                    if not np.shares_memory(got, x):    # a copy: the next call must
                        got[...] = np.nan                   # overwrite all of it
            if name == "batch-last" and n:
                assert np.shares_memory(fast_conv.batch_last(x), x)


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-13), ("float32", 1e-5)])
@pytest.mark.parametrize("shape, k, s, p", GEOMETRIES + [((0, 2, 5, 5), (3, 3), (1, 1), (1, 1)),
                                                        ((1, 3, 6, 7), (5, 5), (1, 1), (0, 0))])
def test_fast_batch_last_im2col_col2im_and_input_grad_equal_the_gathers(shape, k, s, p,
                                                                         dtype, tol,
                                                                         monkeypatch):
    """NumPy's batch-last forms against the portable gathers they replace (run on NumPy
    arrays): the columns equal exactly whatever x's layout, twice into the same reused
    array; col2im and W₂ᵀ·g then col2im agree to rounding, and dx is batch-last."""
    out = _im2col.output_size("test", shape, k, s, p)
    scratch = backends_gather.Scratch()
    want = _im2col.im2col_batch_last(host(shape).astype(dtype), k, s, p, out)
    for name, x in _layouts(shape, 0, dtype).items():
        for _ in range(2):
            got = fast_conv.im2col_batch_last(x, k, s, p, out, scratch)
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, np.asarray(want).reshape(got.shape), name)
    n, c = shape[:2]
    kk, m = c * k[0] * k[1], out[0] * out[1] * n
    dcols = host((kk, m), 1).astype(dtype)
    want = _im2col.col2im_batch_last(dcols.reshape(kk * out[0] * out[1], n), shape, k, s, p,
                                     out)
    dx = fast_conv.col2im_batch_last(dcols, shape, k, s, p, out)
    assert dx.shape == shape and dx.dtype == dtype
    assert backends_fast.channel_rows(dx) is not None or p != (0, 0)
    np.testing.assert_allclose(dx, want, rtol=tol, atol=tol)
    c_out = 3
    w2t, g = host((kk, c_out), 2).astype(dtype), host((c_out, m), 3).astype(dtype)
    want = _im2col.col2im_batch_last((w2t @ g).reshape(kk * out[0] * out[1], n), shape, k, s,
                                     p, out)
    for window_values in (0, 10**9):            # window by window, and one product
        monkeypatch.setattr(fast_conv, "_WINDOW_VALUES", window_values)
        for reuse in (None, scratch, scratch):
            dx = fast_conv.conv2d_input_grad(g, w2t, shape, k, s, p, out, reuse)
            assert dx.shape == shape and dx.dtype == dtype
            np.testing.assert_allclose(dx, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("shape", [(4, 3, 5, 2), (1, 2, 3, 3), (7, 1, 1, 2), (3, 2, 40, 45)])
def test_numpy_layers_keep_the_batch_last_layout_and_equal_the_portable_path(shape, dtype,
                                                                             tol, monkeypatch):
    """BatchNorm (training and eval), MaxPool2D and ReLU on NumPy, for NCHW, batch-last
    (Conv2D's output there: BatchNorm's one-sweep helpers) and strided inputs, against the
    same layers on array-api-strict: outputs, input and parameter gradients and the running
    statistics; batch-last in gives batch-last out (no transposing copy for the next layer),
    and what a step returned survives the next step.  The helpers' column blocks are made
    small here (1024 columns), so the largest shape runs several."""
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    monkeypatch.setattr(backends_fast, "_CHUNK_BYTES", 1)

    def run(make, x, g, device):
        layer = make().to(device, dtype)
        put = (lambda a: strict.asarray(np.ascontiguousarray(a))) if device == "strict" \
            else (lambda a: a)
        if layer.params():
            layer.set_params([nnx.asarray(1.0 + host(p.shape, 5 + i), dtype=dtype,
                                          device=device) for i, p in enumerate(layer.params())])
        y = layer.fprop(put(x))
        dx = layer.bprop(put(g))
        out = [y, dx, *layer.grads()]
        if isinstance(layer, nnx.BatchNorm):
            out += [layer.running_mean, layer.running_var]
            layer.eval()
            out += [layer.fprop(put(x)), layer.bprop(put(g))]
        return [nnx.to_numpy(a) for a in out], y, dx

    pool_ok = shape[2] >= 2 and shape[3] >= 2
    makes = [lambda: nnx.BatchNorm(shape[1], momentum=0.3), nnx.ReLU] + \
        ([lambda: nnx.MaxPool2D(2)] if pool_ok else [])
    for make in makes:
        for name, x in _layouts(shape, 1, dtype).items():
            x = 2.0 + 3.0 * x
            out_shape = tuple(make().fprop(nnx.asarray(np.ascontiguousarray(x))).shape)
            g = _layouts(out_shape, 2, dtype)[name]
            want, _, _ = run(make, x, g, "strict")
            got, y, dx = run(make, x, g, "cpu")
            kept = [a.copy() for a in got]
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"{make()} {name}")
            if name == "batch-last":
                assert backends_fast.channel_rows(y) is not None, make()
                assert backends_fast.channel_rows(dx) is not None, make()
            run(make, x + 1.0, g, "cpu")
            for a, b in zip(got, kept):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("shape, k, s, p", GEOMETRIES + [((0, 2, 5, 5), (3, 3), (1, 1), (1, 1)),
                                                        ((24, 1, 12, 11), (5, 5), (1, 1), (0, 0))])
@pytest.mark.parametrize("window_values", [0, 10**9])
def test_numpy_conv2d_equals_the_portable_path_in_every_input_layout(shape, k, s, p, dtype,
                                                                      tol, window_values,
                                                                      monkeypatch):
    """Conv2D on NumPy (batch-last strided copies, block matmuls, strided adds) against
    Conv2D on array-api-strict (the gathers): y, dx, dW and db for NCHW, batch-last and
    strided inputs, with blocks made small (1024 columns) so the products run several, dx
    window by window and in one product; y and dx come out batch-last, and the next step
    leaves them alone."""
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    monkeypatch.setattr(fast_conv, "_BLOCK_BYTES", 1)
    monkeypatch.setattr(fast_conv, "_WINDOW_VALUES", window_values)
    c_out = 3

    def run(x, g, device):
        nnx.seed(4)
        conv = nnx.Conv2D(shape[1], c_out, k, stride=s, padding=p).to(device, dtype)
        conv.set_params([conv.W, nnx.asarray(host(c_out, 6), dtype=dtype, device=device)])
        put = (lambda a: strict.asarray(np.ascontiguousarray(a))) if device == "strict" \
            else (lambda a: a)
        y = conv.fprop(put(x))
        dx = conv.bprop(put(g))
        return [nnx.to_numpy(a) for a in (y, dx, conv.dW, conv.db)], y, dx

    out = _im2col.output_size("test", shape, k, s, p)
    for name, x in _layouts(shape, 1, dtype).items():
        g = _layouts((shape[0], c_out) + out, 2, dtype)[name]
        want, _, _ = run(x, g, "strict")
        got, y, dx = run(x, g, "cpu")
        kept = [a.copy() for a in got]
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=name)
        assert backends_fast.channel_rows(y) is not None
        assert backends_fast.channel_rows(dx) is not None or p != (0, 0)
        run(x + 1.0, g, "cpu")
        for a, b in zip(got, kept):
            np.testing.assert_array_equal(a, b)


def test_fast_block_matmuls_equal_the_plain_products(monkeypatch):
    """fast_conv's block products against a @ b + c and a @ bᵀ: short operands (k ≤ 64) in
    several blocks, tall ones in one, no columns at all; None off NumPy."""
    monkeypatch.setattr(fast_conv, "_BLOCK_BYTES", 1)
    for k, m in [(3, 5000), (25, 2049), (65, 3000), (4, 0)]:
        for dtype, tol in [(F64, 1e-13), ("float32", 1e-5)]:
            a, b, c = host((2, k), 1), host((k, m), 2), host((2, 1), 3)
            a, b, c = (v.astype(dtype) for v in (a, b, c))
            got = fast_conv.matmul_add(a, b, c)
            assert got.dtype == dtype
            np.testing.assert_allclose(got, a @ b + c, rtol=tol, atol=tol)
            g = host((2, m), 4).astype(dtype)
            np.testing.assert_allclose(fast_conv.matmul_transposed(b, g), b @ g.T,
                                       rtol=tol, atol=tol * max(1, m) ** 0.5)
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    a = strict.asarray(host((2, 2)))
    assert fast_conv.matmul_add(a, a, a) is None and fast_conv.matmul_transposed(a, a) is None


@pytest.mark.parametrize("shape, k, s, p", GEOMETRIES + [((0, 2, 5, 5), (3, 3), (1, 1), (1, 1))])
def test_unmade_columns_multiply_as_the_made_ones(shape, k, s, p, monkeypatch):
    """Above ``_WINDOW_VALUES`` im2col_batch_last hands back a ``Windows`` (columns read one
    window at a time): W₂·cols + b and cols·gᵀ through it equal the products of the made
    columns, in float64 and float32, for every input layout."""
    out = _im2col.output_size("test", shape, k, s, p)
    for dtype, tol in [(F64, 1e-13), ("float32", 1e-5)]:
        for name, x in _layouts(shape, 0, dtype).items():
            made = fast_conv.im2col_batch_last(x, k, s, p, out)
            monkeypatch.setattr(fast_conv, "_WINDOW_VALUES", 0)
            unmade = fast_conv.im2col_batch_last(x, k, s, p, out,
                                                 backends_gather.Scratch())
            monkeypatch.undo()
            assert type(unmade) is fast_conv.Windows and unmade.shape == made.shape
            w2, b = host((3, made.shape[0]), 1).astype(dtype), host((3, 1), 2).astype(dtype)
            g = host((3, made.shape[1]), 3).astype(dtype)
            got = fast_conv.matmul_add(w2, unmade, b)
            assert got.dtype == dtype
            np.testing.assert_allclose(got, w2 @ made + b, rtol=tol, atol=tol, err_msg=name)
            np.testing.assert_allclose(fast_conv.matmul_transposed(unmade, g), made @ g.T,
                                       rtol=tol, atol=tol * 10, err_msg=name)


def test_fast_batch_norm_helpers_take_only_batch_last_float_numpy():
    """The one-sweep BatchNorm helpers decline what they do not cover (the layer then runs
    its formulas): NCHW and strided layouts, (N, C) rows, float16 (the layer's statistics
    are float32 there), other libraries."""
    layouts = _layouts((4, 3, 2, 2), 0)
    gamma, beta = np.ones(3), np.zeros(3)
    assert backends_fast.batch_norm_train(layouts["batch-last"], gamma, beta, 1e-5) is not None
    for x in (layouts["nchw"], layouts["strided"], host((4, 3)),
              layouts["batch-last"].astype(np.float16)):
        assert backends_fast.batch_norm_train(x, gamma, beta, 1e-5) is None
    half = layouts["batch-last"].astype(np.float16)         # with float16 γ, β as the layer's
    assert backends_fast.batch_norm_train(half, gamma.astype(np.float16),
                                          beta.astype(np.float16), 1e-5) is None
    scale, s = np.ones((1, 3, 1, 1)), np.ones(3)
    assert backends_fast.batch_norm_input_grad(half, half, scale.astype(np.float16), s, s,
                                               16) is None
    last = layouts["batch-last"]
    assert backends_fast.batch_norm_input_grad(last, last, scale, s, s, 16) is not None
    assert backends_fast.batch_norm_input_grad(layouts["nchw"], last, scale, s, s, 16) is None
    try:
        import torch
    except ImportError:
        return
    t = torch.from_numpy(np.ascontiguousarray(last))
    assert backends_fast.batch_norm_train(t, gamma, beta, 1e-5) is None
    assert backends_fast.batch_norm_input_grad(t, t, scale, s, s, 16) is None


def test_float16_batch_norm_after_a_numpy_conv_sums_in_float32_as_on_any_layout():
    """A float16 Conv2D hands BatchNorm a batch-last view; the statistics must still be
    summed in float32 (Σ(x - μ)² passes 65504 here): the same output, running variance and
    input gradient as for a C-ordered copy of the same input, all finite."""
    nnx.seed(0)
    conv = nnx.Conv2D(1, 8, 3, padding=1, dtype="float16")
    x = (30 * host((100, 1, 28, 28), 4)).astype(np.float16)
    h = conv.fprop(x)
    assert not h.flags.c_contiguous                 # batch-last: the fast path's input
    g = host(h.shape, 5).astype(np.float16)
    out = []
    for given in (h, np.ascontiguousarray(h)):
        bn = nnx.BatchNorm(8, dtype="float16")
        y = bn.fprop(given)
        dx = bn.bprop(g if given is h else np.ascontiguousarray(g))
        out.append((np.asarray(y, np.float64), bn.running_var.astype(np.float64),
                    np.asarray(dx, np.float64)))
    for fast_one, plain in zip(*out):
        assert np.isfinite(fast_one).all()
        np.testing.assert_allclose(fast_one, plain, rtol=2e-3, atol=2e-3)
    assert abs(out[0][0].std() - 1.0) < 0.05


@pytest.mark.parametrize("k, s", [((2, 2), (2, 2)), ((3, 2), (1, 2)), ((2, 2), (1, 1))])
def test_fast_max_pool_sends_the_gradient_to_the_first_maximum_as_the_reference(k, s):
    """Ties included (integers in a small range): NumPy's fast path and the Array API code
    (on array-api-strict) give the same output and the same input gradient."""
    pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, (2, 3, 7, 6)).astype(np.float64)
    results = []
    specs = ("cpu", "strict") + (("torch:cpu",) if _has_torch() else ())
    for spec in specs:                  # torch CPU: fused.max_first_mask, a float mask
        pool = nnx.MaxPool2D(k, stride=s)
        y = pool.fprop(nnx.asarray(x, device=spec, dtype=F64))
        g = nnx.asarray(host(tuple(y.shape), 5), device=spec, dtype=F64)
        results.append((nnx.to_numpy(y), nnx.to_numpy(pool.bprop(g))))
    y0, dx0 = results[0]
    for y1, dx1 in results[1:]:
        np.testing.assert_array_equal(y0, y1)
        np.testing.assert_allclose(dx0, dx1, rtol=1e-15, atol=1e-15)


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_max_first_mask_equals_max_and_argmax_on_ties_and_minus_infinity():
    """fused.max_first_mask (torch CPU) against the max / argmax formula it replaces: the
    same maximum, and 1.0 exactly at argmax's first place, on ties and -inf padding."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from nnx.backends import fused
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (5, 4, 7)).astype(np.float32)
    x[0, :2] = -np.inf
    x[1] = 2.0
    scratch = backends_gather.Scratch()
    for axis in (0, 1, 2):
        top, mask = fused.max_first_mask(torch.from_numpy(x), axis, scratch)
        np.testing.assert_array_equal(top.numpy(), x.max(axis=axis, keepdims=True))
        first = np.expand_dims(x.argmax(axis=axis), axis)
        want = (np.arange(x.shape[axis]).reshape([-1 if a == axis else 1 for a in range(3)])
                == first).astype(np.float32)
        assert mask.dtype == torch.float32
        np.testing.assert_array_equal(mask.numpy(), want)
    assert fused.max_first_mask(x, 1, scratch) is None


def test_fast_path_declines_other_libraries():
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    x = strict.asarray(host((1, 1, 3, 3)))
    assert fast_conv.im2col(x, (2, 2), (1, 1), (0, 0), (2, 2)) is None
    assert fast_conv.col2im(strict.asarray(host((1, 4, 4))), (1, 1, 3, 3), (2, 2), (1, 1),
                            (0, 0), (2, 2)) is None
    assert fast_conv.conv2d_input_grad(strict.asarray(host((1, 4))), strict.asarray(
        host((4, 1))), (1, 1, 3, 3), (2, 2), (1, 1), (0, 0), (2, 2)) is None
    assert fast_conv.im2col_batch_last(x, (2, 2), (1, 1), (0, 0), (2, 2)) is None
    assert fast_conv.max_pool(x, (2, 2), (1, 1), (2, 2)) is None


# -- properties ---------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 2), h=st.integers(1, 6), w=st.integers(1, 6),
       kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_col2im_is_the_adjoint_of_im2col(n, c, h, w, kh, kw, sh, sw, ph, pw, seed):
    """<im2col(x), u> = <x, col2im(u)> for every geometry, fast path and reference; the
    convolution's output has the size formula's shape."""
    k, s, p = (kh, kw), (sh, sw), (ph, pw)
    if h + 2 * ph < kh or w + 2 * pw < kw:
        with pytest.raises(nnx.ShapeError, match="smaller than the kernel"):
            nnx.Conv2D(c, 1, k, stride=s, padding=p).fprop(nnx.asarray(np.ones((n, c, h, w))))
        return
    out = _im2col.output_size("test", (n, c, h, w), k, s, p)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    u = rng.standard_normal((n, c * kh * kw, out[0] * out[1]))
    for im2col, col2im in [(fast_conv.im2col, fast_conv.col2im),
                           (im2col_reference.im2col_reference, im2col_reference.col2im_reference)]:
        left = float(np.sum(im2col(x, k, s, p, out) * u))
        right = float(np.sum(x * col2im(u, x.shape, k, s, p, out)))
        assert left == pytest.approx(right, rel=1e-10, abs=1e-10)
    conv = nnx.Conv2D(c, 2, k, stride=s, padding=p, dtype=F64)
    y = conv.fprop(nnx.asarray(x, dtype=F64))
    assert tuple(y.shape) == (n, 2, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    assert tuple(conv.bprop(y).shape) == (n, c, h, w)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 4), c=st.integers(1, 3), hw=st.integers(1, 4), seed=st.integers(0, 99))
def test_batch_norm_output_is_normalised(n, c, hw, seed):
    x = 5 + 3 * np.random.default_rng(seed).standard_normal((n, c, hw, hw))
    y = nnx.to_numpy(nnx.BatchNorm(c, dtype=F64).fprop(nnx.asarray(x, dtype=F64)))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-10)
    var = y.var(axis=(0, 2, 3))
    assert np.all((var > 0.9) & (var < 1 + 1e-9))        # < 1 only by eps


# -- bad input ----------------------------------------------------------------------------
def ones(shape):
    return nnx.asarray(np.ones(shape))


def test_wrong_channel_count(device):
    with pytest.raises(nnx.ShapeError, match=r"Conv2D\(3, 8, \(5, 5\).*fprop: input has shape "
                                             r"\(2, 1, 28, 28\) with 1 channels, expected 3"):
        nnx.Conv2D(3, 8, 5).fprop(ones((2, 1, 28, 28)))


@pytest.mark.parametrize("module", [nnx.Conv2D(1, 2, 5), nnx.MaxPool2D(5), nnx.AvgPool2D((2, 5))])
def test_input_smaller_than_the_kernel(device, module):
    with pytest.raises(nnx.ShapeError, match=r"fprop: input of shape \(2, 1, 4, 4\) .* is "
                                             r"smaller than the kernel \(\d, 5\)"):
        module.to() if module.params() else None
        module.fprop(ones((2, 1, 4, 4)))


@pytest.mark.parametrize("module", [nnx.Conv2D(1, 2, 3), nnx.MaxPool2D(2), nnx.AvgPool2D(2)])
def test_non_4d_input(module):
    with pytest.raises(nnx.ShapeError, match=r"fprop: input has shape \(2, 784\), expected "
                                             r"4-D .*nnx.Reshape\(\(1, 28, 28\)\)"):
        module.fprop(ones((2, 784)))


def test_batch_norm_batch_of_one_in_training(device):
    bn = nnx.BatchNorm(4)
    with pytest.raises(nnx.ShapeError, match=r"BatchNorm\(4.*input of shape \(1, 4\) has one "
                                             r"value per feature \(batch size 1\).*eval"):
        bn.fprop(ones((1, 4)))
    assert tuple(bn.eval().fprop(ones((1, 4))).shape) == (1, 4)


def test_batch_norm_wrong_features():
    with pytest.raises(nnx.ShapeError, match=r"input has shape \(2, 3, 4, 4\), expected "
                                             r"\(batch, 4\) or \(batch, 4, height, width\)"):
        nnx.BatchNorm(4).fprop(ones((2, 3, 4, 4)))


def test_reshape_that_does_not_fit():
    with pytest.raises(nnx.ShapeError, match=r"Reshape\(\(1, 28, 28\)\).fprop: input has shape "
                                             r"\(2, 785\)"):
        nnx.Reshape((1, 28, 28)).fprop(ones((2, 785)))


def test_conv_dtype_mismatch():
    with pytest.raises(nnx.DTypeError, match="input dtype float64 differs"):
        nnx.Conv2D(1, 1, 1).fprop(nnx.asarray(np.ones((1, 1, 2, 2)), dtype=F64))


@pytest.mark.parametrize("make, message", [
    (lambda: nnx.Conv2D(1, 2, 0), "kernel_size must be >= 1"),
    (lambda: nnx.Conv2D(1, 2, 3, padding=-1), "padding must be >= 0"),
    (lambda: nnx.MaxPool2D((2, 2, 2)), "kernel_size must be an int or a pair"),
    (lambda: nnx.BatchNorm(0), "n_features must be a positive integer"),
    (lambda: nnx.Reshape(()), "shape is a tuple of positive ints")])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# -- buffers, devices, checkpoints, summary ------------------------------------------------
def small_cnn(bn=True):
    return nnx.Sequential(nnx.Reshape((1, 8, 8)), nnx.Conv2D(1, 3, 3, padding=1), nnx.ReLU(),
                          nnx.MaxPool2D(2), *([nnx.BatchNorm(3)] if bn else []), nnx.Flatten(),
                          nnx.Linear(48, 4))


def test_buffers_are_listed_moved_and_not_trained():
    net = small_cnn()
    assert [n for n, _ in net.named_buffers()] == ["4.running_mean", "4.running_var"]
    assert len(net.params()) == 6 and len(net.buffers()) == 2
    net.to("strict:device1", dtype=F64)
    assert {str(nnx.device_of(b)) for b in net.buffers()} == {"strict:device1"}
    assert all("float64" in str(b.dtype) for b in net.buffers())


def test_checkpoint_keeps_running_statistics(device, tmp_path):
    net = small_cnn()
    x = nnx.asarray(host((6, 64)))
    for _ in range(3):
        net.fprop(x)                       # training: the running statistics move
    nnx.save(net, tmp_path / "cnn.npz")
    back = nnx.load(tmp_path / "cnn.npz")
    assert repr(back) == repr(net)
    for (n, a), (m, b) in zip(net.named_buffers(), back.named_buffers()):
        assert n == m
        np.testing.assert_array_equal(nnx.to_numpy(a), nnx.to_numpy(b))
    assert not np.allclose(nnx.to_numpy(back[4].running_var), 1)
    net.eval(), back.eval()
    np.testing.assert_array_equal(nnx.to_numpy(back(x)), nnx.to_numpy(net(x)))


def test_summary_shows_output_shapes():
    table = nnx.summary(small_cnn(), (2, 64))
    for shape in ["(2, 1, 8, 8)", "(2, 3, 8, 8)", "(2, 3, 4, 4)", "(2, 48)", "(2, 4)"]:
        assert shape in table


# -- learning -----------------------------------------------------------------------------
def bars(n, seed):
    """8x8 images of a horizontal or vertical bar (with noise); the label is which."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    x = rng.normal(0, 0.3, (n, 8, 8))
    where = rng.integers(1, 7, n)
    for i in range(n):
        if t[i]:
            x[i, :, where[i]] += 1.5
        else:
            x[i, where[i], :] += 1.5
    return x.reshape(n, 64).astype(np.float32), t


def test_a_tiny_cnn_learns(device):
    nnx.seed(0)
    net = nnx.Sequential(nnx.Reshape((1, 8, 8)), nnx.Conv2D(1, 4, 3), nnx.ReLU(),
                         nnx.MaxPool2D(2), nnx.BatchNorm(4), nnx.Flatten(), nnx.Linear(36, 2))
    (x, t), (xt, tt) = bars(300, 1), bars(200, 2)
    x, t = nnx.train.to_device(x, t)
    xt, tt = nnx.train.to_device(xt, tt)
    history = nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1, momentum=0.9),
                      x, t, epochs=4, batch_size=25, x_test=xt, t_test=tt)
    assert history[-1].train_loss < 0.5 * history[0].train_loss
    assert history[-1].test_errors <= 0.05 * 200


@pytest.mark.mnist
def test_cnn_learns_a_little_mnist(mnist_dir):
    from nnx import datasets, models
    data = datasets.load_mnist(mnist_dir)
    nnx.seed(0)
    net = models.cnn()
    x, t = nnx.train.to_device(data.x_train[:1000], data.y_train[:1000])
    xt, tt = nnx.train.to_device(data.x_test[:500], data.y_test[:500])
    history = nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.05, momentum=0.9),
                      x, t, epochs=2, batch_size=50, x_test=xt, t_test=tt)
    assert history[-1].test_errors < 0.25 * 500          # chance: 450; about 90 here


def test_without_input_grad_layers_before_the_first_parameters_are_skipped(device):
    """Sequential(Reshape, Conv2D, ...).bprop(g, need_input_grad=False) neither runs the
    Reshape's bprop nor the Conv2D's input gradient, and the parameter gradients are those
    of the full backward pass."""
    dtype = F64
    net = nnx.Sequential(nnx.Reshape((1, 5, 5)), nnx.Conv2D(1, 2, 3, dtype=dtype),
                         nnx.ReLU(), nnx.Flatten(), nnx.Linear(18, 3, dtype=dtype))
    x = nnx.asarray(host((4, 25)), dtype=dtype)
    g = nnx.asarray(host((4, 3), 1), dtype=dtype)
    net.fprop(x)
    full = net.bprop(g)
    want = [nnx.to_numpy(d) for d in net.grads()]
    calls = []
    reshape_bprop = net.modules[0].bprop
    net.modules[0].bprop = lambda *a, **k: calls.append(1) or reshape_bprop(*a, **k)
    net.fprop(x)
    assert net.bprop(g, need_input_grad=False) is None and not calls
    assert tuple(full.shape) == (4, 25)
    for a, b in zip(want, net.grads()):
        np.testing.assert_allclose(nnx.to_numpy(b), a, rtol=1e-12, atol=1e-12)


def test_fit_probe_neither_fails_on_batch_norm_nor_touches_its_statistics():
    """fit reads the class count off one example: in eval mode, so a (N, C) BatchNorm does
    not refuse a batch of one and its running statistics never see that lone example."""
    lin, bn = nnx.Linear(4, 3), nnx.BatchNorm(3)
    net = nnx.Sequential(lin, bn, nnx.ReLU(), nnx.Linear(3, 2))
    x = nnx.asarray(host((8, 4)))
    t = nnx.asarray(np.array([0, 1] * 4))
    h = nnx.to_numpy(lin.fprop(x))                  # the BatchNorm's input at the one step
    nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.01), x, t, epochs=1,
            batch_size=8, verbose=False)
    assert bn.training                              # fit leaves the modes as they were
    np.testing.assert_allclose(nnx.to_numpy(bn.running_mean), 0.1 * h.mean(axis=0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, error, message", [
    (lambda: nnx.BatchNorm(0), nnx.ArgumentError, "BatchNorm: n_features must be a positive"),
    (lambda: nnx.BatchNorm(3, momentum="0.1"), nnx.ArgumentTypeError,
     "BatchNorm: momentum must be a number, got '0.1'"),
    (lambda: nnx.BatchNorm(3, momentum=1.5), nnx.ArgumentError, r"momentum must lie in \[0, 1\]"),
    (lambda: nnx.BatchNorm(3, eps=float("nan")), nnx.ArgumentError,
     "eps must be a positive finite number"),
    (lambda: nnx.Reshape((0, 3)), nnx.ArgumentError, "shape is a tuple of positive ints")])
def test_bad_arguments_are_nnx_errors(make, error, message):
    """The cnn layers refuse arguments the way every other nnx constructor does."""
    with pytest.raises(error, match=message):
        make()


def test_take_sum_equals_take_then_sum():
    """fused.take_sum (torch's embedding_bag) against the gather and sum it replaces in the
    portable col2im: int32 and int64 tables, repeated and zero-row indices, float64."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from nnx.backends import fused
    x = host((7, 5))
    index = np.array([0, 6, 6, 3, 1, 1, 2, 5, 4, 6, 0, 0])
    want = x[index].reshape(4, 3, 5).sum(axis=1)
    for dtype in (torch.int32, torch.int64):
        got = fused.take_sum(torch.from_numpy(x), torch.from_numpy(index).to(dtype),
                             torch.arange(0, 12, 3, dtype=torch.int64))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-15, atol=1e-15)
    assert fused.take_sum(x, index, np.arange(0, 12, 3)) is None


def test_an_empty_batch_passes_through_convolutions_and_pools(device):
    """N = 0 through the batch-last gathers (and torch's one-kernel col2im, which would
    fail on no columns): empty outputs and input gradients of the right shapes."""
    nnx.seed(0)
    net = nnx.Sequential(nnx.Conv2D(1, 2, 3), nnx.MaxPool2D(2), nnx.Conv2D(2, 2, 3, padding=1),
                         nnx.MaxPool2D(3, stride=1, padding=1)).to(device, "float32")
    y = net.fprop(nnx.asarray(np.zeros((0, 1, 8, 8)), device=device, dtype="float32"))
    assert tuple(y.shape) == (0, 2, 3, 3)
    dx = net.bprop(nnx.asarray(np.zeros((0, 2, 3, 3)), device=device, dtype="float32"))
    assert tuple(dx.shape) == (0, 1, 8, 8)
