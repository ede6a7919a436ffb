"""fit reads the device back once per epoch, whatever the loss: no check may sync per step."""
import numpy as np
import pytest

import nnx
from nnx import models

array_api_strict = pytest.importorskip("array_api_strict", reason="array-api-strict not installed")


def readbacks(monkeypatch, loss, steps):
    """How many times fit turns a device array into a Python value for ``steps`` steps."""
    count = counting_readbacks(monkeypatch)
    rng = np.random.default_rng(0)
    x = nnx.asarray(rng.standard_normal((4 * steps, 5)), device="strict")
    t = nnx.asarray(rng.integers(0, 3, 4 * steps), device="strict")
    net = nnx.Sequential(nnx.Linear(5, 3, device="strict"), nnx.Softmax())
    count[0] = 0
    nnx.fit(net, loss, nnx.SGD(net, lr=0.01), x, t, epochs=1, batch_size=4, verbose=False)
    monkeypatch.undo()
    return count[0]


@pytest.mark.parametrize("make", [nnx.CrossEntropy, nnx.Hinge], ids=["CrossEntropy", "Hinge"])
def test_fit_does_not_sync_per_step(monkeypatch, make):
    assert readbacks(monkeypatch, make(), 2) == readbacks(monkeypatch, make(), 6)


def test_fit_refuses_cross_entropy_on_scores_up_front():
    """With the per-step check off in fit, the first example is checked before any step."""
    rng = np.random.default_rng(0)
    x, t = nnx.asarray(rng.random((8, 5))), nnx.asarray(rng.integers(0, 3, 8))
    net = nnx.Sequential(nnx.Linear(5, 3))          # scores, no Softmax: negative ones here,
    net.set_params([nnx.asarray(-np.ones((5, 3))),  # whatever weights earlier tests drew
                    nnx.asarray(-np.ones(3))])
    with pytest.raises(nnx.ArgumentError, match="inputs must be probabilities in"):
        nnx.fit(net, nnx.CrossEntropy(), nnx.SGD(net, lr=0.01), x, t, epochs=1, verbose=False)


@pytest.mark.parametrize("make, z, t", [
    (nnx.CrossEntropy, [[2.0, -1.0]], [[1.0, 0.0]]),
    (nnx.Hinge, [[2.0, -1.0]], [[0.5, 0.5]])], ids=["CrossEntropy", "Hinge"])
def test_check_labels_false_switches_off_every_readback_check(make, z, t):
    """The flag fit uses to keep steps free of syncs covers all of a loss's value checks."""
    loss = make()
    z, t = nnx.asarray(np.array(z)), nnx.asarray(np.array(t))
    with pytest.raises((nnx.ArgumentError, nnx.LabelError)):
        loss.fprop(z, t)
    loss.check_labels = False
    loss.fprop(z, t)                                # no readback, so no check


def counting_readbacks(monkeypatch):
    """A one-item list counting the readbacks (bool/float/int/index of a strict array) from
    now until ``monkeypatch`` is undone."""
    A = array_api_strict._array_object.Array
    count = [0]
    for name in ("__bool__", "__float__", "__int__", "__index__"):
        real = getattr(A, name)
        def counting(self, _real=real):
            count[0] += 1
            return _real(self)
        monkeypatch.setattr(A, name, counting)
    return count


@pytest.mark.parametrize("make", [nnx.SoftmaxCrossEntropy, nnx.Hinge, nnx.MSE],
                         ids=["SoftmaxCrossEntropy", "Hinge", "MSE"])
def test_hand_written_loop_checks_each_label_array_once(monkeypatch, make):
    """A loop over fixed batches with the checks on: the first pass reads each label array's
    flag back once, later passes read nothing (the loss remembers the arrays it checked)."""
    rng = np.random.default_rng(0)
    net = models.cnn(n_out=3, channels=(2, 2)).to("strict", "float64")
    loss = make()
    batches = [(nnx.asarray(rng.random((4, 784)), device="strict", dtype="float64"),
                nnx.asarray(rng.integers(0, 3, 4), device="strict") if make is not nnx.MSE
                else nnx.asarray(rng.random((4, 3)), device="strict", dtype="float64"))
               for _ in range(2)]
    opt = nnx.SGD(net, lr=0.01, momentum=0.9)
    count = counting_readbacks(monkeypatch)
    for epoch in range(3):
        before = count[0]
        for x, t in batches:
            loss.fprop(net.fprop(x), t)
            net.bprop(loss.bprop(), need_input_grad=False)
            opt.step()
        if epoch:
            assert count[0] == before, f"epoch {epoch} read {count[0] - before} values back"
    monkeypatch.undo()


def test_fit_of_a_cnn_does_not_sync_per_step(monkeypatch):
    """The gather-based convolution, pooling and BatchNorm code read nothing back."""
    def run(steps):
        rng = np.random.default_rng(0)
        x = nnx.asarray(rng.random((4 * steps, 784)), device="strict")
        t = nnx.asarray(rng.integers(0, 3, 4 * steps), device="strict")
        nnx.seed(0)
        net = models.cnn(n_out=3, channels=(2, 2)).to("strict")
        count = counting_readbacks(monkeypatch)
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.01), x, t, epochs=1,
                batch_size=4, verbose=False)
        monkeypatch.undo()
        return count[0]
    assert run(2) == run(5)
