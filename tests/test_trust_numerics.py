"""Issue 10, "silent wrong results": hostile cases that must fail loudly or come out right.

gradcheck never says ok when it is wrong or checked nothing; one module instance sits in one
place; an exploding loss stops training; float16 is correct or refused; Sigmoid, Softplus,
BCEWithLogits and L2Normalize keep their accuracy at extreme inputs.
"""

import math

import numpy as np
import pytest

import nnx
from nnx import models, train
from cases import BATCH, CLASSES, LOSSES, WIDTH, away_from_zero


def host(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- 1. gradcheck never says "ok" when it is wrong or checked nothing --------------------------

class NaNBprop(nnx.Tanh):
    def bprop(self, grad_output, *, need_input_grad=True):
        return super().bprop(grad_output) * math.nan


class NaNWeightGrad(nnx.Linear):
    def bprop(self, grad_output, *, need_input_grad=True):
        dx = super().bprop(grad_output, need_input_grad=need_input_grad)
        self.dW = self.dW * math.nan
        return dx


@pytest.mark.parametrize("mode", ["entries", "direction"])
def test_gradcheck_fails_on_a_nan_input_gradient(mode):
    x = nnx.asarray(host((3, 4)))
    with pytest.raises(nnx.GradcheckError, match=r"NaNBprop\(\).*FAILED.*bprop nan"):
        nnx.gradcheck(NaNBprop(), x, mode=mode)


def test_gradcheck_fails_on_a_nan_weight_gradient_naming_it():
    x = nnx.asarray(host((3, 4)))
    with pytest.raises(nnx.GradcheckError, match=r"FAILED.*d y\[0, 0\] / d W\[0, 0\]: bprop nan"):
        nnx.gradcheck(NaNWeightGrad(4, 2), x)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_gradcheck_refuses_a_non_finite_input_naming_the_entry(bad):
    a = host((3, 4))
    a[1, 2] = bad
    with pytest.raises(nnx.GradcheckError, match=rf"x\[1, 2\] is {bad!r}.*finite"):
        nnx.gradcheck(nnx.Tanh(), nnx.asarray(a))


def test_gradcheck_refuses_non_finite_parameters_naming_them():
    lin = nnx.Linear(4, 2)
    w = nnx.to_numpy(lin.W).copy()
    w[0, 1] = math.nan
    lin.set_params([nnx.asarray(w), lin.b])
    with pytest.raises(nnx.GradcheckError, match=r"W\[0, 1\] is nan"):
        nnx.gradcheck(lin, nnx.asarray(host((3, 4))))


@pytest.mark.parametrize("samples", [0, -5, 2.5, True])
def test_gradcheck_refuses_a_sample_count_that_checks_nothing(samples):
    with pytest.raises(nnx.NNXError, match=r"gradcheck: samples must be a whole number >= 1"):
        nnx.gradcheck(nnx.Tanh(), nnx.asarray(host((3, 4))), samples=samples)


def test_gradcheck_refuses_an_empty_check():
    with pytest.raises(nnx.NNXError, match=r"gradcheck: nothing to check.*0 entries"):
        nnx.gradcheck(nnx.Tanh(), nnx.asarray(np.zeros((0, 4))))


# -- 2. the default gradcheck catches one wrong entry anywhere ---------------------------------

class OneWrongWeight(nnx.Linear):
    def bprop(self, grad_output, *, need_input_grad=True):
        dx = super().bprop(grad_output, need_input_grad=need_input_grad)
        w = nnx.to_numpy(self.dW).copy()
        w[5, 5] += 1.0
        self.dW = nnx.asarray(w, device=self.device, dtype=self.dtype)
        return dx


class OneWrongColumn(nnx.Tanh):
    def bprop(self, grad_output, *, need_input_grad=True):
        d = nnx.to_numpy(super().bprop(grad_output)).copy()
        d[:, 37] *= 1.5
        return nnx.asarray(d, dtype=grad_output.dtype)


def test_default_gradcheck_catches_one_wrong_weight_entry():
    x = nnx.asarray(host((2, 50)))
    with pytest.raises(nnx.GradcheckError, match=r"FAILED"):
        nnx.gradcheck(OneWrongWeight(50, 50), x)


def test_default_gradcheck_catches_one_wrong_input_column():
    x = nnx.asarray(host((3, 50)))
    with pytest.raises(nnx.GradcheckError, match=r"FAILED.*x\[\d, 37\]"):
        nnx.gradcheck(OneWrongColumn(), x)


def test_result_says_what_was_covered():
    small = nnx.gradcheck(nnx.Linear(4, 3), nnx.asarray(host((2, 4))))
    assert "every entry" in str(small), small
    big = nnx.gradcheck(nnx.Linear(300, 100), nnx.asarray(host((2, 300))))
    assert "random direction" in str(big) and "W" in str(big), big


def test_a_failure_at_a_kink_says_so():
    x = nnx.asarray(np.array([[0.0, 1.0, -1.0]]))
    with pytest.raises(nnx.GradcheckError, match=r"kink"):
        nnx.gradcheck(nnx.ReLU(), x)


def test_a_plain_failure_does_not_blame_a_kink():
    class Wrong(nnx.Tanh):
        def bprop(self, grad_output, *, need_input_grad=True):
            return super().bprop(grad_output) * 2.0
    with pytest.raises(nnx.GradcheckError) as info:
        nnx.gradcheck(Wrong(), nnx.asarray(host((2, 3))))
    assert "kink" not in str(info.value)


# -- 3. one module instance, one place ---------------------------------------------------------

def test_graph_refuses_a_module_also_inside_another_node():
    lin = nnx.Linear(3, 3)
    g = nnx.Graph("x").add("a", lin, "x")
    with pytest.raises(nnx.NNXError, match=r"Linear\(3, 3\) appears twice \(at node 'a' and "
                                           r"node 'b'\.0\)"):
        g.add("b", nnx.Sequential(lin), "a")


def test_graph_refuses_a_residual_beside_its_body():
    lin = nnx.Linear(3, 3)
    with pytest.raises(nnx.NNXError, match=r"appears twice \(at node 'a' and node 'r'\.body\)"):
        nnx.Graph("x", [("a", lin, "x"), ("r", nnx.Residual(lin), "a")], "r")


def test_sequential_refuses_a_residual_beside_its_body():
    lin = nnx.Linear(3, 3)
    with pytest.raises(nnx.NNXError, match=r"appears twice \(at 0\.body and 1\)"):
        nnx.Sequential(nnx.Residual(lin), lin)


def test_a_graph_inside_its_own_node_is_refused():
    g = nnx.Graph("x").add("a", nnx.Tanh(), "x")
    with pytest.raises(nnx.NNXError, match=r"contain itself"):
        g.add("b", nnx.Sequential(g), "a")


def shared_after_construction():
    lin = nnx.Linear(3, 3)
    net = nnx.Sequential(lin, nnx.Tanh())
    net.modules.append(lin)             # smuggled in past the constructor's check
    return net


def test_optimiser_refuses_a_module_in_two_places():
    for make in (nnx.SGD, nnx.Adam):
        with pytest.raises(nnx.NNXError, match=r"appears twice \(at 0 and 2\)"):
            make(shared_after_construction(), lr=0.1)


def test_gradcheck_refuses_a_module_in_two_places():
    with pytest.raises(nnx.NNXError, match=r"appears twice \(at 0 and 2\)"):
        nnx.gradcheck(shared_after_construction(), nnx.asarray(host((2, 3))))


# -- 4. explosions are not successes -----------------------------------------------------------

def blobs(n, seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 4, n)
    return rng.standard_normal((n, 12)) + 3.0 * np.eye(4, 12)[t], t


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_an_exploding_but_finite_loss_stops_training_and_keeps_the_checkpoint(tmp_path):
    nnx.seed(0)
    x, t = train.to_device(*blobs(600, 1))
    net = models.mlp(12, 4, [16], "relu")
    saved = []
    path = tmp_path / "m.npz"

    def save(stats):
        saved.append(stats.epoch)
        nnx.save(net, path, epoch=stats.epoch)

    nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1), x, t, epochs=1,
            batch_size=50, on_epoch=save)
    good = [nnx.to_numpy(p).copy() for p in net.params()]
    with pytest.raises(nnx.TrainingDiverged, match=r"the loss became .* at epoch 1, step \d+ "
                                                   r"of 12.*first step.*lower the learning rate"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=1e6), x, t, epochs=3,
                batch_size=50, on_epoch=save)
    assert saved == [1]
    for p, g in zip(nnx.load(path).params(), good):
        np.testing.assert_array_equal(nnx.to_numpy(p), g)


@pytest.mark.parametrize("where", ["train", "test"])
def test_nan_in_the_data_is_reported_as_bad_data(where):
    x, t = blobs(100, 1)
    x[7, 3] = math.nan
    x, t = train.to_device(x, t)
    good = train.to_device(*blobs(50, 2))
    net = models.mlp(12, 4, [], "tanh")
    pair = dict(x=x, t=t, x_test=good[0], t_test=good[1]) if where == "train" else \
        dict(x=good[0], t=good[1], x_test=x, t_test=t)
    with pytest.raises(nnx.NNXError, match=rf"fit: the {where}\w* inputs contain NaN or "
                                           rf"infinite values \(first at row 7\)"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net), epochs=1, **pair)


# -- 5. float16 is correct or refused ----------------------------------------------------------

def try_float16(device):
    """An array in float16 on the current device, or the test asserts a clear refusal."""
    try:
        return nnx.asarray(np.ones(1), dtype="float16")
    except nnx.DTypeError as e:
        assert "float16" in str(e) and device.split(":")[0] in str(e)
        pytest.skip(f"{device} refuses float16 with a DTypeError: {e}")


FLOAT16_MODULES = ["Linear", "Tanh", "Sigmoid", "ReLU", "Softplus", "Softmax", "LogSoftmax",
                   "L2Normalize", "MLP-tanh"]


@pytest.mark.parametrize("name", FLOAT16_MODULES)
def test_float16_fprop_and_bprop_match_float64(device, name):
    try_float16(device)
    from cases import MODULES
    rng = np.random.default_rng(5)
    xh = away_from_zero((BATCH, WIDTH), rng)
    out = {}
    for dtype in ("float16", "float64" if device not in ("strict:no_float64",) else "float32"):
        nnx.seed(0)
        m = MODULES[name]()
        m.to(dtype=dtype) if m.params() else None
        x = nnx.asarray(xh, dtype=dtype)
        y = m.fprop(x)
        g = nnx.asarray(np.ones(tuple(y.shape)), dtype=dtype)
        out[dtype] = (nnx.to_numpy(y).astype(np.float64), nnx.to_numpy(m.bprop(g)).astype(np.float64))
    (y16, d16), (y64, d64) = out.values()
    np.testing.assert_allclose(y16, y64, rtol=1e-2, atol=1e-2 * max(1.0, np.abs(y64).max()))
    np.testing.assert_allclose(d16, d64, rtol=1e-2, atol=1e-2 * max(1.0, np.abs(d64).max()))


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("batch", [BATCH, 5000])
def test_float16_losses_match_float64_even_for_large_batches(device, name, batch):
    try_float16(device)
    make_loss, scores, targets = LOSSES[name]
    rng = np.random.default_rng(6)
    zh = np.concatenate([scores(rng) for _ in range(-(-batch // BATCH))])[:batch] * 8.0
    th = np.concatenate([targets(rng) for _ in range(-(-batch // BATCH))])[:batch]
    if name == "CrossEntropy":
        zh = zh / 8.0
    out = {}
    for dtype in ("float16", "float64"):
        z = nnx.asarray(zh, dtype=dtype)
        t = nnx.asarray(th, dtype=dtype if th.dtype.kind == "f" else None)
        loss = make_loss()
        value = float(loss.fprop(z, t))
        out[dtype] = value, nnx.to_numpy(loss.bprop()).astype(np.float64)
    (l16, g16), (l64, g64) = out.values()
    assert math.isfinite(l16) and abs(l16 - l64) <= 1e-2 * max(1.0, abs(l64)), (l16, l64)
    assert np.isfinite(g16).all()
    np.testing.assert_allclose(g16, g64, rtol=2e-2, atol=2e-2 * np.abs(g64).max())


def test_fast_softmax_cross_entropy_does_not_overflow_in_float16():
    from nnx.backends import fast
    rng = np.random.default_rng(7)
    z = rng.standard_normal((10000, 10)).astype(np.float16)
    t = rng.integers(0, 10, 10000)
    loss, grad = fast.softmax_cross_entropy_labels(z, t)
    ref_loss, ref_grad = fast.softmax_cross_entropy_labels(z.astype(np.float64), t)
    assert grad.dtype == np.float16 and np.isfinite(grad).all()
    assert abs(float(loss) - ref_loss) < 1e-2 * ref_loss
    np.testing.assert_allclose(grad.astype(np.float64), ref_grad, rtol=1e-2, atol=1e-7)


def test_adam_in_float16_keeps_weights_finite(device):
    try_float16(device)
    net = nnx.Sequential(nnx.Linear(4, 3, dtype="float16"))
    x = nnx.asarray(host((8, 4)), dtype="float16")
    opt = nnx.Adam(net, lr=1e-3)
    loss = nnx.MSE()
    for _ in range(3):
        y = net.fprop(x)
        loss.fprop(y, y * 0.0)
        net.bprop(loss.bprop())
        g = nnx.to_numpy(net[0].db).copy()
        net[0].db = nnx.asarray(g * 0.0, dtype="float16")     # a parameter that gets no gradient
        opt.step()
    for p in net.params():
        assert np.isfinite(nnx.to_numpy(p)).all()
        assert nnx.to_numpy(p).dtype == np.float16


# -- 6. numerics -------------------------------------------------------------------------------

def sigmoid64(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


EXTREME = np.array([[-700.0, -100.0, -50.0, -38.0, -20.0, 0.0, 20.0, 50.0, 700.0]])


def test_sigmoid_keeps_relative_accuracy_far_below_zero(device):
    dtype = "float64" if device != "strict:no_float64" else "float32"
    x = nnx.asarray(EXTREME, dtype=dtype)
    s = nnx.Sigmoid()
    y = nnx.to_numpy(s.fprop(x))
    d = nnx.to_numpy(s.bprop(nnx.asarray(np.ones(EXTREME.shape), dtype=dtype)))
    want = sigmoid64(EXTREME)
    np.testing.assert_allclose(y, want, rtol=1e-12)
    np.testing.assert_allclose(d, want * sigmoid64(-EXTREME), rtol=1e-12)


def test_softplus_gradient_and_bce_keep_relative_accuracy(device):
    x = nnx.asarray(EXTREME, dtype="float64")
    sp = nnx.Softplus()
    y = nnx.to_numpy(sp.fprop(x))
    np.testing.assert_allclose(y[0, :3], np.exp(EXTREME[0, :3]), rtol=1e-12)
    d = nnx.to_numpy(sp.bprop(nnx.asarray(np.ones(EXTREME.shape), dtype="float64")))
    np.testing.assert_allclose(d, sigmoid64(EXTREME), rtol=1e-12)
    bce = nnx.BCEWithLogits()
    bce.fprop(x, nnx.asarray(np.zeros(EXTREME.shape), dtype="float64"))
    np.testing.assert_allclose(nnx.to_numpy(bce.bprop()), sigmoid64(EXTREME), rtol=1e-12)


@pytest.mark.parametrize("dtype, row, eps", [
    ("float32", [3e19, 4e19], 1e-12), ("float64", [3e200, 4e200], 1e-12),
    ("float32", [3e-25, 4e-25], 1e-30), ("float64", [3e-170, 4e-170], 1e-300),
])
def test_l2normalize_huge_and_tiny_rows(dtype, row, eps):
    m = nnx.L2Normalize(eps=eps)
    y = nnx.to_numpy(m.fprop(nnx.asarray(np.array([row, [0.0, 0.0]]), dtype=dtype)))
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    d = nnx.to_numpy(m.bprop(nnx.asarray(np.array([[1.0, 0.0], [1.0, 1.0]]), dtype=dtype)))
    assert np.isfinite(d).all()
    n = np.hypot(*np.array(row, dtype=np.float64))
    np.testing.assert_allclose(d[0], np.array([0.64, -0.48]) / n, rtol=1e-5)


@pytest.mark.parametrize("name", ["Sigmoid", "Softplus", "L2Normalize"])
def test_rewritten_layers_pass_gradcheck(device, name):
    from cases import MODULES
    x = nnx.asarray(away_from_zero((BATCH, WIDTH), np.random.default_rng(8)) * 30.0)
    assert nnx.gradcheck(MODULES[name](), x).ok


def test_relu_keeps_nan_in_its_output(device):
    """ReLU must not hide a NaN (a NaN running_var in a damaged checkpoint came out as 0)."""
    y = nnx.to_numpy(nnx.ReLU().fprop(nnx.asarray([[float("nan"), -1.0, 2.0, 0.0]])))
    assert np.isnan(y[0, 0]) and y[0, 1:].tolist() == [0.0, 2.0, 0.0]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_an_empty_batch_has_a_nan_loss_and_an_empty_gradient_without_warnings(device, name):
    """The mean over no examples is NaN (as torch's), in the scores' dtype, and bprop gives
    a gradient of the scores' (empty) shape; NumPy's divide warnings do not leak out."""
    import warnings
    make, scores, targets = LOSSES[name]
    rng = np.random.default_rng(0)
    z, t = scores(rng)[:0], targets(rng)[:0]
    z = nnx.asarray(z, dtype="float32")
    t = nnx.asarray(t, dtype=None if np.asarray(t).dtype.kind in "iu" else "float32")
    loss = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = loss.fprop(z, t)
        grad = loss.bprop()
    assert math.isnan(float(value)) and nnx.to_numpy(value).dtype == np.float32
    assert tuple(grad.shape) == tuple(z.shape)
