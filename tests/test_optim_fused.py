"""The flat (fused) optimiser update against the per-array one it replaces (the oracle),
AdamW and gradient clipping against torch, on every backend."""

import numpy as np
import pytest

import nnx
from nnx.errors import ArgumentError


def _oracle(cls):
    """The optimiser class with the per-array update (the form the flat one replaces)."""
    return type("PerArray" + cls.__name__, (cls,), {"_fuse": False})


def _net(dtype, seed=0):
    nnx.seed(seed)
    # BatchNorm after the Tanh: right after a Linear it would cancel the bias's gradient
    # (to roundoff, which Adam then amplifies differently in each summation order)
    return nnx.Sequential(nnx.Linear(5, 7, dtype=dtype), nnx.Tanh(),
                          nnx.BatchNorm(7, dtype=dtype), nnx.Linear(7, 3, dtype=dtype))


def _train(net, opt, dtype, steps=4):
    rng = np.random.default_rng(1)
    loss = nnx.SoftmaxCrossEntropy()
    for _ in range(steps):
        x = nnx.asarray(rng.standard_normal((6, 5)), dtype=dtype)
        t = nnx.asarray(rng.integers(0, 3, 6))
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
    return [nnx.to_numpy(p).astype(np.float64) for p in net.params()]


CASES = {
    "sgd": lambda n, c: c(n, lr=0.1),
    "momentum-decay": lambda n, c: c(n, lr=0.1, momentum=0.9, weight_decay=0.01),
    "adam": lambda n, c: c(n, lr=0.01, weight_decay=0.01),
    "adamw": lambda n, c: c(n, lr=0.01, weight_decay=0.1),
    "adam-clip": lambda n, c: c(n, lr=0.01, clip_norm=0.05),
    "sgd-clip": lambda n, c: c(n, lr=0.1, momentum=0.5, clip_norm=0.1),
}
CLASSES = {"sgd": nnx.SGD, "momentum-decay": nnx.SGD, "adam": nnx.Adam, "adamw": nnx.AdamW,
           "adam-clip": nnx.Adam, "sgd-clip": nnx.SGD}


def _flat(device):
    """Whether the optimisers keep flat buffers on ``device``."""
    return device.backend.mutable and device.backend.flat_updates


def test_numpy_updates_per_array_and_the_others_flat():
    from nnx import backends
    assert not backends.BACKENDS["numpy"].flat_updates
    assert all(b.flat_updates for name, b in backends.BACKENDS.items() if name != "numpy")


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("case", list(CASES))
def test_flat_update_equals_the_per_array_one(device, case, dtype):
    if dtype == "float16" and "adam" not in case and case != "sgd":
        pytest.skip("float16 is checked with Adam (its float32 state) and plain SGD")
    if dtype == "float16" and not hasattr(nnx.get_device().xp, "float16"):
        pytest.skip(f"{nnx.get_device()} has no float16")
    cls = CLASSES[case]
    fused_net, oracle_net = _net(dtype), _net(dtype)
    fused, oracle = CASES[case](fused_net, cls), CASES[case](oracle_net, _oracle(cls))
    if _flat(nnx.get_device()):
        assert len(fused._groups) == 1 and all(v is not None for v in fused._views)
    assert oracle._groups is None
    ours, expected = _train(fused_net, fused, dtype), _train(oracle_net, oracle, dtype)
    tol = {"float64": 1e-13, "float32": 1e-6, "float16": 1e-3}[dtype]
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    for s, r in zip(fused.state, oracle.state):
        assert (s is None) == (r is None)
        if s is None:
            continue
        for a, b in zip(s if isinstance(s, tuple) else (s,), r if isinstance(r, tuple) else (r,)):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(nnx.to_numpy(a), nnx.to_numpy(b), rtol=tol, atol=tol)


def test_the_flat_step_is_a_handful_of_operations(device):
    """Parameters are views of one buffer: the step touches it, not each array."""
    if not _flat(nnx.get_device()):
        pytest.skip(f"{nnx.get_device()} updates one array at a time (JAX: immutable "
                    f"arrays, fused by jax.jit; NumPy: faster per array on the host)")
    net = _net("float32")
    opt = nnx.SGD(net, lr=0.1, momentum=0.9)
    _train(net, opt, "float32", steps=2)
    group, = opt._groups
    flat = nnx.to_numpy(group.flat)
    assert flat.size == sum(nnx.to_numpy(p).size for p in net.params())
    np.testing.assert_array_equal(flat, np.concatenate([nnx.to_numpy(p).ravel()
                                                         for p in net.params()]))
    assert all(p is v for p, v in zip(net.params(), opt._views))


@pytest.mark.parametrize("how", ["set_params", "to", "load"])
def test_rebound_parameters_are_flattened_again_and_the_state_follows(device, how, tmp_path):
    net, ref = _net("float64"), _net("float64")
    opt, oracle = nnx.Adam(net, lr=0.01), _oracle(nnx.Adam)(ref, lr=0.01)
    _train(net, opt, "float64", 2), _train(ref, oracle, "float64", 2)
    if how == "set_params":
        net.set_params(net.params()), ref.set_params(ref.params())
    elif how == "to":
        net.to(dtype="float32"), ref.to(dtype="float32")
    else:
        nnx.save(net, tmp_path / "a.nnx")
        net.set_params(nnx.load(tmp_path / "a.nnx").params())
    dtype = "float32" if how == "to" else "float64"
    ours, expected = _train(net, opt, dtype, 2), _train(ref, oracle, dtype, 2)
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    if _flat(nnx.get_device()):
        assert all(p is v for p, v in zip(net.params(), opt._views))
    m, v = opt.state[0]
    assert str(m.dtype).endswith(dtype) and nnx.device_of(m) == nnx.device_of(net.params()[0])


def _torch_pair(dtype="float64"):
    torch = pytest.importorskip("torch")
    nnx.seed(3)
    net = nnx.Sequential(nnx.Linear(4, 6, dtype=dtype), nnx.Tanh(), nnx.Linear(6, 3, dtype=dtype))
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    with torch.no_grad():
        for lin, tl in ((net.children()[0], tnet[0]), (net.children()[2], tnet[2])):
            tl.weight.copy_(torch.from_numpy(nnx.to_numpy(lin.W).T.copy()))
            tl.bias.copy_(torch.from_numpy(nnx.to_numpy(lin.b).copy()))
    return torch, net, tnet


def _torch_steps(torch, net, tnet, opt, topt, steps=4, clip=None):
    rng = np.random.default_rng(4)
    loss = nnx.SoftmaxCrossEntropy()
    norms = []
    for _ in range(steps):
        x, t = rng.standard_normal((8, 4)) * 3, rng.integers(0, 3, 8)
        loss.fprop(net.fprop(nnx.asarray(x, dtype="float64")), nnx.asarray(t))
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tnet(torch.from_numpy(x)), torch.from_numpy(t)).backward()
        if clip is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(tnet.parameters(), clip)))
        topt.step()
    lin, tl = net.children()[0], tnet[0]
    np.testing.assert_allclose(nnx.to_numpy(lin.W), tl.weight.detach().numpy().T, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(nnx.to_numpy(net.children()[2].b), tnet[2].bias.detach().numpy(),
                               rtol=1e-9, atol=1e-12)
    return norms


def test_adamw_agrees_with_torch(device):
    torch, net, tnet = _torch_pair()
    # eps tiny: torch adds eps to √v/√(1-β2^t), nnx to √v (the same update as eps → 0)
    opt = nnx.AdamW(net, lr=0.05, weight_decay=0.3, eps=1e-14)
    topt = torch.optim.AdamW(tnet.parameters(), lr=0.05, weight_decay=0.3, eps=1e-14)
    _torch_steps(torch, net, tnet, opt, topt)


@pytest.mark.parametrize("cls", ["SGD", "AdamW"])
def test_clip_norm_agrees_with_torch_clip_grad_norm(device, cls):
    torch, net, tnet = _torch_pair()
    if cls == "SGD":
        opt = nnx.SGD(net, lr=0.1, momentum=0.9, clip_norm=0.05)
        topt = torch.optim.SGD(tnet.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = nnx.AdamW(net, lr=0.05, eps=1e-14, clip_norm=0.05)
        topt = torch.optim.AdamW(tnet.parameters(), lr=0.05, eps=1e-14)
    norms = _torch_steps(torch, net, tnet, opt, topt, clip=0.05)
    assert norms[-1] > 0.05                     # the clipping was active
    np.testing.assert_allclose(float(opt.grad_norm), norms[-1], rtol=1e-10)


def test_clip_grad_norm_function(device):
    net = _net("float64")
    loss = nnx.SoftmaxCrossEntropy()
    x = nnx.asarray(np.random.default_rng(0).standard_normal((6, 5)) * 10, dtype="float64")
    loss.fprop(net.fprop(x), nnx.asarray(np.arange(6) % 3))
    net.bprop(loss.bprop(), need_input_grad=False)
    before = np.sqrt(sum((nnx.to_numpy(g) ** 2).sum() for g in net.grads()))
    norm = nnx.clip_grad_norm(net, before / 4)
    after = np.sqrt(sum((nnx.to_numpy(g) ** 2).sum() for g in net.grads()))
    np.testing.assert_allclose(float(norm), before, rtol=1e-12)
    np.testing.assert_allclose(after, before / 4, rtol=1e-5)
    nnx.clip_grad_norm(net, before * 10)        # below the limit: unchanged
    np.testing.assert_allclose(np.sqrt(sum((nnx.to_numpy(g) ** 2).sum()
                                           for g in net.grads())), after, rtol=1e-12)


def test_float16_clipping_does_not_overflow(device):
    if not hasattr(nnx.get_device().xp, "float16"):
        pytest.skip(f"{nnx.get_device()} has no float16")
    net = nnx.Linear(4, 3, dtype="float16")
    opt = nnx.Adam(net, lr=1e-3, clip_norm=1.0)
    x = nnx.asarray(np.full((8, 4), 10.0), dtype="float16")
    net.fprop(x)
    net.bprop(nnx.asarray(np.full((8, 3), 10.0), dtype="float16"))  # g = 800: g² > 65504
    opt.step()
    assert np.isfinite(float(opt.grad_norm)) and float(opt.grad_norm) > 2000
    assert all(np.isfinite(nnx.to_numpy(p)).all() for p in net.params())


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1"])
def test_bad_clip_norm_is_refused(bad):
    with pytest.raises((ArgumentError, TypeError), match="clip_norm"):
        nnx.SGD(nnx.Linear(2, 2), clip_norm=bad)
    with pytest.raises((ArgumentError, TypeError), match="max_norm"):
        nnx.clip_grad_norm(nnx.Linear(2, 2), bad)


def test_adamw_refuses_a_negative_decay():
    with pytest.raises(ArgumentError, match="AdamW: weight_decay"):
        nnx.AdamW(nnx.Linear(2, 2), weight_decay=-0.1)


@pytest.mark.parametrize("momentum, weight_decay, want", [(0.0, 0.0, 1), (0.9, 0.0, 3),
                                                           (0.9, 0.01, 4)])
def test_sgd_on_torch_is_a_few_multi_tensor_kernels(momentum, weight_decay, want):
    """On torch tensors SGD updates every parameter with torch's _foreach kernels (what
    torch.optim does): a fixed handful of launches for the whole list, no concatenation of
    the gradients, and the same values as the per-array update (the test above)."""
    pytest.importorskip("torch", reason="torch is not installed")
    from nnx.testing import count_ops
    with nnx.device("torch:cpu"):
        net = _net("float32")
        opt = nnx.SGD(net, lr=0.1, momentum=momentum, weight_decay=weight_decay)
        _train(net, opt, "float32", steps=2)
        c = count_ops(opt.step, on="torch")
    assert c.ops == want and c.readbacks == 0, c
    assert all(name.startswith("aten::_foreach_") for name in c.by_name), c
