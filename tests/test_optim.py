"""Optimisers against hand-computed updates, on every backend."""

import numpy as np
import pytest

import nnx


def step_once(net, opt):
    x = nnx.asarray(np.linspace(-1, 1, 6).reshape(2, 3), dtype="float64")
    loss = nnx.MSE()
    loss.fprop(net.fprop(x), nnx.asarray(np.ones((2, 2)), dtype="float64"))
    net.bprop(loss.bprop(), need_input_grad=False)
    grads = [nnx.to_numpy(g).copy() for g in net.grads()]
    opt.step()
    return grads


def fresh():
    return nnx.Linear(3, 2, dtype="float64")


def test_sgd_momentum_weight_decay(device):
    net = fresh()
    p0 = [nnx.to_numpy(p).copy() for p in net.params()]
    opt = nnx.SGD(net, lr=0.1, momentum=0.9, weight_decay=0.01)
    v = [np.zeros_like(p) for p in p0]
    p = [a.copy() for a in p0]
    for _ in range(3):
        grads = step_once(net, opt)
        for i, g in enumerate(grads):
            g = g + 0.01 * p[i]
            v[i] = 0.9 * v[i] + g if _ else g
            p[i] = p[i] - 0.1 * v[i]
    for ours, expected in zip(net.params(), p):
        np.testing.assert_allclose(nnx.to_numpy(ours), expected, rtol=1e-12)


def test_sgd_updates_in_place_or_rebinds_immutable_arrays(device):
    net = fresh()
    opt = nnx.SGD(net, lr=0.1)        # (it may move the parameters into one flat buffer)
    before = net.params()
    step_once(net, opt)
    same = [a is b for a, b in zip(before, net.params())]
    # mutable arrays are updated in place; JAX's are immutable, so the module is rebound
    assert all(same) if nnx.get_device().backend.mutable else not any(same)


def test_adam(device):
    net = fresh()
    p = [nnx.to_numpy(a).copy() for a in net.params()]
    opt = nnx.Adam(net, lr=0.01)
    m = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    for t in range(1, 4):
        for i, g in enumerate(step_once(net, opt)):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            lr_t = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
            p[i] = p[i] - lr_t * m[i] / (np.sqrt(v[i]) + 1e-8)
    for ours, expected in zip(net.params(), p):
        np.testing.assert_allclose(nnx.to_numpy(ours), expected, rtol=1e-10)


def test_optimizer_rebinds_when_update_makes_new_arrays():
    net = fresh()
    opt = nnx.SGD(net, lr=0.5)
    w = net.W
    new_w = w * 1.0
    opt.update = lambda i, p, g: new_w if i == 0 else p
    opt.step()
    assert net.W is new_w and net.W is not w


def test_training_reduces_the_loss(device):
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((64, 4))
    x, t = nnx.asarray(x_host), nnx.asarray((x_host @ rng.standard_normal((4, 3))).argmax(1))
    net = nnx.Sequential(nnx.Linear(4, 16), nnx.Tanh(), nnx.Linear(16, 3))
    loss, opt = nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.5, momentum=0.5)
    first = None
    for _ in range(100):
        value = float(loss.fprop(net.fprop(x), t))
        first = value if first is None else first
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
    assert value < 0.3 * first


@pytest.mark.parametrize("make", [lambda n: nnx.SGD(n, lr=0.1), lambda n: nnx.Adam(n)])
def test_a_learning_rate_set_between_steps_is_checked_as_at_construction(device, make):
    """opt.lr = ... (a schedule) takes numbers, NumPy's included, as Python floats (on
    array-api-strict a NumPy float64 scalar failed inside the update with a raw TypeError),
    and refuses what the constructor refuses, with the same one-line error."""
    net = nnx.Linear(3, 2)
    opt, loss = make(net), nnx.MSE()
    x, t = nnx.asarray(np.ones((4, 3))), nnx.asarray(np.zeros((4, 2)))
    name = type(opt).__name__
    for value in (np.float64(0.05), np.float32(0.25), 2):
        opt.lr = value
        assert type(opt.lr) is float and opt.lr == float(value)
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop())
        opt.step()
        assert all(np.isfinite(nnx.to_numpy(p)).all() for p in net.params())
    for bad, error, what in ((-1.0, nnx.ArgumentError, "be a finite number >= 0"),
                             (float("nan"), nnx.ArgumentError, "be a finite number >= 0"),
                             (float("inf"), nnx.ArgumentError, "be a finite number >= 0"),
                             ("0.1", TypeError, "be a number"), (True, TypeError, "be a number"),
                             (None, TypeError, "be a number")):
        with pytest.raises(error, match=f"^{name}: lr must {what}, got "):
            opt.lr = bad
        assert opt.lr == 2.0                        # unchanged


@pytest.mark.parametrize("make", [lambda n: nnx.SGD(n, lr=0.0, momentum=0.9, weight_decay=0.1),
                                  lambda n: nnx.Adam(n, lr=0), lambda n: nnx.AdamW(n, lr=0)])
def test_a_zero_learning_rate_steps_without_changing_a_parameter(device, make):
    """lr = 0 is allowed (torch.optim allows it; a decay may end there): its steps leave
    every parameter as it was, eager and compiled alike, while the optimiser's state still
    moves (momentum, Adam's moments and step count), as in torch."""
    for compiled in (False, True):
        nnx.seed(0)
        net = nnx.Sequential(nnx.Linear(3, 4, device=device), nnx.Tanh(),
                             nnx.Linear(4, 2, device=device))
        opt, loss = make(net), nnx.SoftmaxCrossEntropy()
        before = [nnx.to_numpy(p).copy() for p in net.params()]
        x = nnx.asarray(np.random.default_rng(1).normal(size=(5, 3)), device=device)
        t = nnx.asarray(np.array([0, 1, 1, 0, 1]), device=device)
        step = nnx.compile_step(net, loss, opt) if compiled else None
        for _ in range(3):
            if compiled:
                step(x, t)
            else:
                loss.fprop(net.fprop(x), t)
                net.bprop(loss.bprop(), need_input_grad=False)
                opt.step()
        for b, p in zip(before, net.params()):
            np.testing.assert_array_equal(nnx.to_numpy(p), b)
        assert any(np.abs(nnx.to_numpy(g)).max() > 0 for g in net.grads())
        assert getattr(opt, "t", 3) == 3


def test_fit_takes_a_schedule_that_decays_to_zero(device):
    """A schedule whose last epoch's lr is 0 (a linear decay to zero) trains to the end; that
    epoch changes no parameter."""
    nnx.seed(0)
    net = nnx.Sequential(nnx.Linear(3, 2, device=device))
    x = nnx.asarray(np.random.default_rng(2).normal(size=(8, 3)), device=device)
    t = nnx.asarray(np.arange(8) % 2, device=device)
    seen = []

    def record(row):
        seen.append([nnx.to_numpy(p).copy() for p in net.params()])
    history = nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1), x, t,
                      epochs=2, batch_size=4, lr_schedule=lambda e: 0.1 * (2 - e),
                      on_epoch=record, verbose=False)
    assert len(history) == 2 and len(seen) == 2
    for a, b in zip(*seen):
        np.testing.assert_array_equal(a, b)
