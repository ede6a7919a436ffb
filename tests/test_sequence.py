"""Sequence models: RNN, LSTM, GRU, Embedding, TimeStep against PyTorch, their operation
counts per time step, their state, and hostile inputs."""

import numpy as np
import pytest

import nnx
import nnx.models

RECURRENT = ["RNN", "LSTM", "GRU"]
N, T, I, H = 3, 5, 4, 6


def torch_twin(name, m):
    """torch.nn.<name> (batch first, float64) with the weights of nnx's ``m``."""
    torch = pytest.importorskip("torch")
    tm = getattr(torch.nn, name)(m.n_in, m.n_hidden, batch_first=True).double()
    with torch.no_grad():
        for p, q in zip(torch_params(tm), m.params()):
            p.copy_(torch.from_numpy(nnx.to_numpy(q)))
    return tm


def torch_params(tm):
    return [tm.weight_ih_l0, tm.weight_hh_l0, tm.bias_ih_l0, tm.bias_hh_l0]


def close(a, b, tol=1e-12):
    b = b.detach().numpy() if hasattr(b, "detach") else b
    np.testing.assert_allclose(nnx.to_numpy(a), b, rtol=tol, atol=tol)


@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize("name", RECURRENT)
def test_outputs_and_every_gradient_agree_with_torch(name, given_state):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    m = getattr(nnx, name)(I, H, dtype="float64")
    tm = torch_twin(name, m)
    x, g = rng.standard_normal((N, T, I)), rng.standard_normal((N, T, H))
    states = [rng.standard_normal((N, H)) for _ in m.state_names]
    if given_state:
        m.set_state(*[nnx.asarray(s, dtype="float64") for s in states])
    y = m.fprop(nnx.asarray(x, dtype="float64"))
    gx = m.bprop(nnx.asarray(g, dtype="float64"))
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s[None], requires_grad=True) for s in states]
    if given_state:
        yt, last = tm(xt, tuple(st) if name == "LSTM" else st[0])
    else:
        yt, last = tm(xt)
    yt.backward(torch.from_numpy(g))
    close(y, yt)
    close(gx, xt.grad)
    for ours, p in zip(m.grads(), torch_params(tm)):
        close(ours, p.grad)
    last = last if name == "LSTM" else (last,)
    ours_last = m.last_state if name == "LSTM" else (m.last_state,)
    for a, b in zip(ours_last, last):
        close(a, b[0])
    if given_state:
        ours_grad = m.state_grad if name == "LSTM" else (m.state_grad,)
        for a, b in zip(ours_grad, st):
            close(a, b.grad[0])


@pytest.mark.parametrize("name", RECURRENT)
def test_a_carried_state_continues_the_sequence_as_torch_does(name):
    """stateful=True: two halves of a sequence give the outputs of the whole one; bprop of
    the second half stops at the boundary (truncated backprop through time)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    m = getattr(nnx, name)(I, H, stateful=True, dtype="float64")
    tm = torch_twin(name, m)
    x = rng.standard_normal((N, 2 * T, I))
    first = m.fprop(nnx.asarray(x[:, :T], dtype="float64"))
    second = m.fprop(nnx.asarray(x[:, T:], dtype="float64"))
    whole, _ = tm(torch.from_numpy(x))
    close(first, whole[:, :T])
    close(second, whole[:, T:])
    g = rng.standard_normal((N, T, H))
    m.bprop(nnx.asarray(g, dtype="float64"))
    xt = torch.from_numpy(x[:, T:])
    _, carried = tm(torch.from_numpy(x[:, :T]))
    carried = tuple(c.detach() for c in carried) if name == "LSTM" else carried.detach()
    for p in torch_params(tm):
        p.grad = None
    yt, _ = tm(xt, carried)
    yt.backward(torch.from_numpy(g))
    for ours, p in zip(m.grads(), torch_params(tm)):
        close(ours, p.grad)
    m.reset_state()
    close(m.fprop(nnx.asarray(x[:, :T], dtype="float64")), whole[:, :T])


def test_embedding_agrees_with_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    e = nnx.Embedding(11, 4, dtype="float64")
    te = torch.nn.Embedding(11, 4).double()
    with torch.no_grad():
        te.weight.copy_(torch.from_numpy(nnx.to_numpy(e.W)))
    k = rng.integers(0, 11, (5, 7))                  # repeats: rows add up in dW
    g = rng.standard_normal((5, 7, 4))
    y = e.fprop(nnx.asarray(k))
    assert e.bprop(nnx.asarray(g, dtype="float64")) is None     # indices have no gradient
    yt = te(torch.from_numpy(k))
    yt.backward(torch.from_numpy(g))
    close(y, yt)
    close(e.dW, te.weight.grad)


def test_embedding_takes_narrow_and_unsigned_indices(device):
    e = nnx.Embedding(300, 2)
    k = np.array([[0, 255], [7, 9]])
    ref = nnx.to_numpy(e.fprop(nnx.asarray(k)))
    for dtype in ("uint8", "int32", "int16"):
        np.testing.assert_array_equal(nnx.to_numpy(e.fprop(nnx.asarray(k.astype(dtype)))), ref)


@pytest.mark.parametrize("spec", ["cpu", "torch:cpu"])
@pytest.mark.parametrize("steps", [1, 5])
def test_lstm_cpu_fast_path_equals_the_array_api_loop(monkeypatch, steps, spec):
    """On NumPy (and CPU torch) the LSTM's time loop runs in nnx.backends.fast_rnn (in
    place); the layer's own Array API loop is the reference: outputs, state, dx, every
    gradient, the state's gradient, with a given state, and the carried state of a stateful
    layer."""
    if spec != "cpu":
        pytest.importorskip("torch")
    from nnx.backends import fast_rnn
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((N, steps, I)), rng.standard_normal((N, steps, H))
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))

    def run():
        nnx.seed(0)
        m = nnx.LSTM(I, H, stateful=True, dtype="float64", device=spec)
        put = lambda a: nnx.asarray(a, dtype="float64", device=spec)  # noqa: E731
        m.set_state(put(h0), put(c0))
        out = [m.fprop(put(x)), m.bprop(put(g)), *m.grads(), *m.last_state,
               *m.state_grad]
        out.append(m.fprop(put(x)))                     # from the carried state
        loops.append(isinstance(m.u, list))             # the Array API loop keeps lists
        return [nnx.to_numpy(a) for a in out]
    loops = []
    fast = run()
    assert loops == [False]
    calls = []
    for name in ("lstm_forward", "lstm_backward"):
        monkeypatch.setattr(fast_rnn, name, lambda *a: calls.append(a) and None)
    loop = run()
    # both fprops offered, declined: the loops ran (a bprop after the loop is not offered)
    assert loops == [False, True] and len(calls) == 2
    for a, b in zip(fast, loop):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", ["cpu", "torch:cpu"])
@pytest.mark.parametrize("steps", [1, 5])
def test_gru_cpu_fast_path_equals_the_array_api_loop(monkeypatch, steps, spec):
    """As for the LSTM: the GRU's in-place loop (nnx.backends.fast_rnn) against its Array
    API loop, the reference: outputs, state, dx, every gradient, the state's gradient, from
    a given state and from the carried state of a stateful layer."""
    if spec != "cpu":
        pytest.importorskip("torch")
    from nnx.backends import fast_rnn
    rng = np.random.default_rng(4)
    x, g = rng.standard_normal((N, steps, I)), rng.standard_normal((N, steps, H))
    h0 = rng.standard_normal((N, H))

    def run():
        nnx.seed(0)
        m = nnx.GRU(I, H, stateful=True, dtype="float64", device=spec)
        put = lambda a: nnx.asarray(a, dtype="float64", device=spec)  # noqa: E731
        m.set_state(put(h0))
        out = [m.fprop(put(x)), m.bprop(put(g)), *m.grads(), m.last_state, m.state_grad]
        fast.append(m.hb is not None)
        out.append(m.fprop(put(x)))                     # from the carried state
        out.append(m.bprop(put(g), need_input_grad=False) is None)
        out += m.grads()
        return [nnx.to_numpy(a) for a in out]
    fast = []
    quick = run()
    monkeypatch.setattr(fast_rnn, "gru_forward", lambda *a: None)
    loop = run()
    assert fast == [True, False]
    for a, b in zip(quick, loop):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, backward", [("LSTM", "lstm_backward"),
                                            ("GRU", "gru_backward")])
def test_a_fast_fprop_never_falls_back_to_the_loop_in_bprop(monkeypatch, name, backward):
    """After a fast fprop the cached arrays are laid out for the fast backward only: if
    it declined, bprop says so instead of running the Array API loop on them."""
    from nnx.backends import fast_rnn
    m = getattr(nnx, name)(I, H)
    y = m.fprop(nnx.asarray(np.ones((N, T, I))))
    monkeypatch.setattr(fast_rnn, backward, lambda *a: None)
    with pytest.raises(nnx.StateError, match=rf"{name}\({I}, {H}.*\)\.bprop: grad_output "
                                             r"\(ndarray\) does not fit the arrays"):
        m.bprop(nnx.asarray(np.ones(tuple(y.shape))))


# -- operations per time step ------------------------------------------------------------

def count_ops(name, steps, fast=False):
    """(forward, backward) counts of torch kernels (views not counted) for T = ``steps``: of
    the layer's Array API loop (what a GPU runs), or with ``fast`` of the CPU fast path."""
    torch = pytest.importorskip("torch")
    from nnx.backends import fast_rnn
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += not func.is_view
            return func(*args, **(kwargs or {}))

    with nnx.device("torch:cpu"), pytest.MonkeyPatch.context() as mp:
        if not fast:
            mp.setattr(fast_rnn, "usable", lambda *a: False)
            for f in ("lstm_forward", "lstm_backward"):
                mp.setattr(fast_rnn, f, lambda *a: None)
        m = getattr(nnx, name)(3, 4)
        x, g = nnx.asarray(np.ones((2, steps, 3))), nnx.asarray(np.ones((2, steps, 4)))
        with Count() as forward:
            m.fprop(x)
        with Count() as backward:
            m.bprop(g)
    assert isinstance(x, torch.Tensor)
    return forward.n, backward.n


@pytest.mark.parametrize("name, per_step, per_call", [
    ("RNN", (3, 3), (9, 10)), ("LSTM", (10, 14), (12, 12)), ("GRU", (12, 9), (15, 25))])
def test_array_operations_per_time_step(name, per_step, per_call):
    """Each time step costs a fixed number of kernels (forward, backward), and each call a
    fixed number more (the input projection, stacking, the weight gradients)."""
    f2, b2 = count_ops(name, 2)     # from T = 2: at T = 1 the time-major copy of x is a view
    f7, b7 = count_ops(name, 7)
    assert ((f7 - f2) / 5, (b7 - b2) / 5) == per_step
    assert (f2 - 2 * per_step[0], b2 - 2 * per_step[1]) == per_call


@pytest.mark.parametrize("name, per_step, per_call", [("LSTM", (8, 5), (13, 22)),
                                                      ("GRU", (11, 8), (13, 19))])
def test_the_cpu_fast_paths_cost_a_fixed_number_of_kernels_per_time_step(name, per_step,
                                                                         per_call):
    """The same formulas with out= (torch on the CPU), in place.  LSTM: 8 kernels a step
    forward (matmul, tanh, σ = (u + 1)·½, f·c, + i·g as addcmul, tanh c, o·tanh c) and 5
    backward (dc_t as addcmul, two products into da_t, addmm for dh, dc·f), what does not
    depend on the carried gradients formed once a call.  GRU: 11 forward (matmul, r and z:
    add, tanh, ·½, +½; n: product, add, tanh; h: 3) and 8 backward (dh_t, da_n, the three
    blocks of dh̃, matmul, + dh_t·z: 2).  A fixed number per step, and per call (the
    per-call buffers come from NumPy's allocator, torch.from_numpy, so they are not kernels)."""
    f2, b2 = count_ops(name, 2, fast=True)
    f7, b7 = count_ops(name, 7, fast=True)
    assert ((f7 - f2) / 5, (b7 - b2) / 5) == per_step
    assert (f2 - 2 * per_step[0], b2 - 2 * per_step[1]) == per_call


# -- state ---------------------------------------------------------------------------------

def test_state_api():
    lstm = nnx.LSTM(2, 3, stateful=True)
    x = nnx.asarray(np.ones((4, 5, 2)))
    lstm.fprop(x)
    h, c = lstm.last_state
    assert tuple(h.shape) == tuple(c.shape) == (4, 3)
    with pytest.raises(nnx.ShapeError, match=r"LSTM\(2, 3, stateful=True\)\.fprop: the carried "
                                             r"state has batch size 4 but the input \(2, 5, 2\) "
                                             r"has 2; call reset_state\(\)"):
        lstm.fprop(nnx.asarray(np.ones((2, 5, 2))))
    lstm.reset_state()
    assert tuple(lstm.fprop(nnx.asarray(np.ones((2, 5, 2)))).shape) == (2, 5, 3)
    with pytest.raises(nnx.ArgumentTypeError, match=r"set_state: takes 2 arrays \(h, c\), got 1"):
        lstm.set_state(h)
    with pytest.raises(nnx.ShapeError, match=r"set_state: h has shape \(4, 2\), expected "
                                             r"\(batch, 3\)"):
        lstm.set_state(nnx.asarray(np.ones((4, 2))), nnx.asarray(np.ones((4, 2))))
    with pytest.raises(nnx.DTypeError, match="set_state: h dtype float64 differs"):
        nnx.GRU(2, 3).set_state(nnx.asarray(np.ones((4, 3)), dtype="float64"))
    gru = nnx.GRU(2, 3)
    gru.set_state(nnx.asarray(np.ones((4, 3))))
    with pytest.raises(nnx.ShapeError, match="the given state has batch size 4"):
        gru.fprop(nnx.asarray(np.ones((2, 5, 2))))
    with pytest.raises(nnx.ArgumentTypeError, match="stateful must be True or False, got 1"):
        nnx.RNN(2, 3, stateful=1)


def test_stateless_layers_start_every_batch_from_zeros():
    rnn = nnx.RNN(2, 3)
    x = nnx.asarray(np.random.default_rng(3).standard_normal((2, 4, 2)))
    np.testing.assert_array_equal(nnx.to_numpy(rnn.fprop(x)), nnx.to_numpy(rnn.fprop(x)))


# -- hostile inputs ------------------------------------------------------------------------

@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_inputs_are_checked(name, device):
    m = getattr(nnx, name)(4, 3)
    with pytest.raises(nnx.ShapeError, match=rf"{name}\(4, 3, stateful=False\)\.fprop: input "
                                             r"of shape \(2, 0, 4\) has no time steps"):
        m.fprop(nnx.asarray(np.ones((2, 0, 4))))
    with pytest.raises(nnx.ShapeError, match=r"input has shape \(2, 5, 3\), expected "
                                             r"\(batch, time, 4\) \(batch first\)"):
        m.fprop(nnx.asarray(np.ones((2, 5, 3))))
    with pytest.raises(nnx.ShapeError, match=r"input has shape \(2, 4\), expected"):
        m.fprop(nnx.asarray(np.ones((2, 4))))
    with pytest.raises(nnx.DTypeError, match="input dtype int(64|32) differs from the parameters'"):
        m.fprop(nnx.asarray(np.ones((2, 5, 4), dtype="int64")))
    with pytest.raises(nnx.StateError, match="bprop called before fprop"):
        getattr(nnx, name)(4, 3).bprop(nnx.asarray(np.ones((2, 5, 3))))
    y = m.fprop(nnx.asarray(np.ones((2, 1, 4))))                 # T = 1 just works
    assert tuple(y.shape) == (2, 1, 3)
    assert tuple(m.bprop(nnx.asarray(np.ones((2, 1, 3)))).shape) == (2, 1, 4)
    with pytest.raises(nnx.ShapeError, match=r"grad_output has shape \(2, 2, 3\), but fprop "
                                             r"returned \(2, 1, 3\)"):
        m.bprop(nnx.asarray(np.ones((2, 2, 3))))


@pytest.mark.parametrize("name", RECURRENT)
def test_nan_inputs_are_never_hidden(name):
    """A NaN at step 2 of sequence 0 makes that sequence's states NaN from step 2 on (and
    fit refuses such data up front); the other sequences are untouched."""
    m = getattr(nnx, name)(2, 3)
    x = np.ones((2, 4, 2), dtype="float32")
    x[0, 2, 1] = np.nan
    y = nnx.to_numpy(m.fprop(nnx.asarray(x)))
    assert np.isnan(y[0, 2:]).all() and np.isfinite(y[0, :2]).all() and np.isfinite(y[1]).all()
    net = nnx.Sequential(nnx.Reshape((4, 2)), m, nnx.TimeStep(), nnx.Linear(3, 2))
    with pytest.raises(nnx.ArgumentError, match="training inputs contain NaN"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1),
                nnx.asarray(x.reshape(2, 8)), nnx.asarray(np.array([0, 1])), verbose=0)


def test_embedding_indices_are_checked(device):
    e = nnx.Embedding(5, 2)
    with pytest.raises(nnx.DTypeError, match=r"Embedding\(5, 2\)\.fprop: indices must be "
                                             r"integers, got float32; .*float indices are "
                                             r"refused"):
        e.fprop(nnx.asarray(np.array([[1.0, 2.0]]), dtype="float32"))
    with pytest.raises(nnx.DTypeError, match="indices must be integers, got bool"):
        e.fprop(nnx.asarray(np.array([[True, False]])))
    for bad, low, high in (([[0, 5]], 0, 5), ([[-1, 2]], -1, 2)):
        with pytest.raises(nnx.LabelError, match=rf"indices must lie in \[0, 5\), got values "
                                                 rf"from {low} to {high}"):
            e.fprop(nnx.asarray(np.array(bad)))
    with pytest.raises(nnx.ArgumentTypeError, match=r"indices must be an integer array, got "
                                                    r"list; convert with nnx.asarray\(k\)"):
        e.fprop([[1, 2]])
    with pytest.raises(nnx.ShapeError, match=r"indices have shape \(\)"):
        e.fprop(nnx.asarray(np.array(3)))
    assert tuple(e.fprop(nnx.asarray(np.zeros((2, 0), dtype="int64"))).shape) == (2, 0, 2)


def test_embedding_reads_the_range_back_once_per_index_array(monkeypatch):
    e = nnx.Embedding(5, 2)
    calls = []
    monkeypatch.setattr(e, "check", lambda k: calls.append(k))
    k = nnx.asarray(np.array([[1, 2]]))
    e.fprop(k)
    e.fprop(k)
    assert len(calls) == 1
    e.fprop(nnx.asarray(np.array([[1, 2]])))
    assert len(calls) == 2
    e.check_indices = False
    e.fprop(nnx.asarray(np.array([[1, 2]])))
    assert len(calls) == 2


def test_fit_checks_an_embedding_s_indices_once_not_per_step(monkeypatch):
    net = nnx.Sequential(nnx.Embedding(6, 3), nnx.GRU(3, 4), nnx.TimeStep(), nnx.Linear(4, 2))
    table = net[0]
    calls = []
    real = table.check
    monkeypatch.setattr(table, "check", lambda k: (calls.append(k), real(k)))
    rng = np.random.default_rng(4)
    x, t = nnx.asarray(rng.integers(0, 6, (40, 5))), nnx.asarray(rng.integers(0, 2, 40))
    nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.Adam(net, lr=1e-2), x, t, epochs=2,
            batch_size=4, verbose=0)
    assert len(calls) == 2          # the probe's one row, then every index once
    assert table.check_indices      # switched back on after fit
    bad = nnx.asarray(np.where(rng.random((40, 5)) < 0.01, 6, 1))
    with pytest.raises(nnx.LabelError, match=r"indices must lie in \[0, 6\)"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1), bad, t, verbose=0)


def test_time_step(device):
    ts = nnx.TimeStep(1)
    x = nnx.asarray(np.arange(24.0).reshape(2, 3, 4))
    np.testing.assert_array_equal(nnx.to_numpy(ts.fprop(x)), np.arange(24.0).reshape(2, 3, 4)[:, 1])
    dx = nnx.to_numpy(ts.bprop(nnx.asarray(np.ones((2, 4)))))
    assert dx[:, 1].min() == 1 and dx[:, [0, 2]].max() == 0
    with pytest.raises(nnx.ShapeError, match=r"step 3 does not exist in sequences of 3 steps"):
        nnx.TimeStep(3).fprop(x)
    with pytest.raises(nnx.ShapeError, match=r"has no time steps"):
        nnx.TimeStep().fprop(nnx.asarray(np.ones((2, 0, 4))))
    with pytest.raises(nnx.ArgumentTypeError, match=r"TimeStep: index must be an integer"):
        nnx.TimeStep(1.0)
    assert tuple(nnx.TimeStep().fprop(nnx.asarray(np.ones((2, 1, 4)))).shape) == (2, 4)


@pytest.mark.parametrize("cls, args", [(nnx.LSTM, (0, 3)), (nnx.GRU, (3, -1)),
                                       (nnx.Embedding, (0, 3)), (nnx.Embedding, (3, 2.5))])
def test_sizes_are_checked(cls, args):
    with pytest.raises((nnx.ArgumentError, nnx.ArgumentTypeError),
                       match="must be a positive integer"):
        cls(*args)


# -- the rest of nnx works with them -------------------------------------------------------

def test_checkpoint_summary_print_and_check_module(tmp_path):
    net = nnx.Sequential(nnx.Embedding(9, 3), nnx.LSTM(3, 4, stateful=True), nnx.GRU(4, 4),
                         nnx.RNN(4, 2), nnx.TimeStep(-2), nnx.Linear(2, 3))
    k = nnx.asarray(np.random.default_rng(5).integers(0, 9, (2, 6)))
    y = nnx.to_numpy(net.fprop(k))
    nnx.save(net, tmp_path / "seq.npz")
    back = nnx.load(tmp_path / "seq.npz")
    assert repr(back) == repr(net) and back[1].stateful
    np.testing.assert_array_equal(nnx.to_numpy(back.fprop(k)), y)
    assert "LSTM(3, 4, stateful=True)  (2, 6, 4)" in nnx.summary(net, (2, 6))
    assert "(4): TimeStep(index=-2)" in str(net)
    from nnx.testing import check_module
    for factory, shape in ((lambda: nnx.LSTM(3, 2), (2, 3, 3)), (lambda: nnx.GRU(3, 2), (2, 3, 3)),
                           (lambda: nnx.RNN(3, 2), (2, 3, 3)), (nnx.TimeStep, (2, 3, 2))):
        assert check_module(factory, shape, devices=["cpu", "strict"]).ok


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_the_benchmark_reference_computes_the_same_recurrent_model(kind):
    """nnx-bench's torch twin of models.lstm / models.gru (the fused nn.LSTM / nn.GRU with
    the same weights) gives the same scores and weight gradients as nnx, in float64."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from nnx.benchmark import lstm_cases
    net = lstm_cases.build_net("float64", "cpu", kind)
    theirs = lstm_cases.torch_model(net, kind)
    rng = np.random.default_rng(0)
    x, t = rng.random((3, 784)), rng.integers(0, 10, 3)
    loss = nnx.SoftmaxCrossEntropy()
    z = net.fprop(nnx.asarray(x, dtype="float64"))
    loss.fprop(z, nnx.asarray(t))
    net.bprop(loss.bprop(), need_input_grad=False)
    zt = theirs(torch.from_numpy(x))
    torch.nn.functional.cross_entropy(zt, torch.from_numpy(t)).backward()
    np.testing.assert_allclose(nnx.to_numpy(z), zt.detach().numpy(), rtol=1e-12, atol=1e-12)
    for ours, p in zip(net[1].grads(), theirs.rnn.parameters()):
        np.testing.assert_allclose(nnx.to_numpy(ours), p.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_sequential_mnist_models(model):
    net = getattr(nnx.models, model)(10, 16)
    assert [type(m).__name__ for m in net] == ["Reshape", model.upper(), "TimeStep", "Linear"]
    assert tuple(net.fprop(nnx.asarray(np.zeros((3, 784)))).shape) == (3, 10)


def test_the_guides_sequence_snippet_runs():
    import re
    from conftest import REPO
    page = "docs/guide/sequence.md"
    blocks = re.findall(r"```python\n(.*?)```", (REPO / page).read_text(), re.S)
    code = next(b for b in blocks if "nnx.LSTM(" in b)
    scope = {}
    exec(compile(code, page, "exec"), scope)
    assert tuple(scope["scores"].shape) == (8, 2) and tuple(scope["h"].shape) == (2, 4)


@pytest.mark.parametrize("argv, message", [
    (["--model", "lstm", "--layers", "2"], "--layers shapes the MLPs; the lstm has one "
                                           "recurrent layer of --hidden units"),
    (["--model", "gru", "--activation", "relu"], "--activation shapes the MLPs"),
    (["--model", "lstm", "--momentum", "0.9"], "--momentum is SGD's"),
])
def test_train_lstm_usage_errors(capsys, argv, message):
    from nnx.cli import main
    code = main(["train", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


def test_train_lstm_defaults(monkeypatch):
    """--model lstm/gru default to Adam lr 0.002, 10 epochs, cosine, hidden 128 (stops
    before the data)."""
    from nnx import cli
    seen = {}

    def stop(args):
        seen.update(vars(args))
        raise SystemExit(0)
    monkeypatch.setattr(cli, "_check_outputs", stop)
    for model in ("lstm", "gru"):
        assert cli.main(["train", "--model", model]) == 0
        assert (seen["optimizer"], seen["lr"], seen["epochs"], seen["schedule"],
                seen["hidden"]) == ("adam", 0.002, 10, "cosine", 128)
    assert cli.main(["train", "--model", "mlp"]) == 0
    assert seen["optimizer"] == "sgd" and seen["hidden"] == 200
    assert cli.main(["train", "--model", "mlp", "--optimizer", "adam"]) == 0
    assert seen["lr"] == 0.001
    assert cli.main(["train", "--model", "cnn", "--optimizer", "adam"]) == 0
    assert seen["lr"] == 0.001                      # the cnn's lr 0.05 is for its SGD
    assert cli.main(["train", "--model", "lstm", "--optimizer", "sgd"]) == 0
    assert (seen["lr"], seen["momentum"]) == (0.1, 0.0)
