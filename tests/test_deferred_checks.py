"""check_labels = "deferred": every batch checked without a readback inside the step, the
verdict at the next readback nnx makes (evaluate, save, fit) or at nnx.check_deferred()."""
import re

import numpy as np
import pytest

import nnx
from nnx import _deferred

array_api_strict = pytest.importorskip("array_api_strict", reason="array-api-strict not installed")
from nnx.testing._count import count_strict  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _nothing_pending():
    """No test leaves a verdict behind for the next one (nor inherits one)."""
    nnx.check_deferred()
    yield
    for pending in list(_deferred._PENDING):
        pending.entries = []
    _deferred._PENDING.clear()


def deferred(make, *args):
    loss = make(*args)
    loss.check_labels = "deferred"
    return loss


def scores(device, shape=(4, 3)):
    return nnx.asarray(RNG.standard_normal(shape), device=device)


def labels(device, values):
    return nnx.asarray(np.array(values), device=device)


@pytest.mark.parametrize("bad, low, high", [([0, 1, 3, 1], 0, 3), ([0, -1, 2, 1], -1, 2)],
                         ids=["too-large", "negative"])
def test_a_bad_batch_among_good_ones_is_named_at_check_deferred(device, bad, low, high):
    loss = deferred(nnx.SoftmaxCrossEntropy)
    z = scores(device)
    message = (rf"labels must lie in \[0, 3\) for 3 classes, got values from {low} to "
               rf"{high}")
    with pytest.raises(nnx.LabelError, match=message):
        # NumPy, or a backend whose gather refuses the index, says so at once; the others
        # keep going (CuPy wraps the index around, JAX fills NaN) until the check.
        for t in ([0, 1, 2, 1], bad, [2, 2, 0, 0]):
            loss.fprop(z, labels(device, t))
            loss.bprop()
        nnx.check_deferred()
    nnx.check_deferred()                            # told once: nothing is left pending


def test_the_message_names_the_call_and_what_the_steps_since_did():
    loss = deferred(nnx.SoftmaxCrossEntropy)
    z = scores("strict")
    for t in ([0, 1, 2, 1], [0, -1, 2, 1], [1, 1, 1, 1]):
        loss.fprop(z, labels("strict", t))          # strict wraps -1 around silently
    with pytest.raises(nnx.LabelError, match=r"from -1 to 2 -- found by a deferred check in "
                                             r"call 2 of fprop; the steps since then"):
        nnx.check_deferred()


def test_good_labels_pass_and_leave_nothing_pending(device):
    loss = deferred(nnx.SoftmaxCrossEntropy)
    for _ in range(3):
        loss.fprop(scores(device), labels(device, RNG.integers(0, 3, 4)))
    nnx.check_deferred()
    assert not _deferred._PENDING


def test_no_readback_inside_the_step_and_two_operations_per_batch():
    z = scores("strict", (6, 5))
    off, on = nnx.SoftmaxCrossEntropy(), deferred(nnx.SoftmaxCrossEntropy)
    off.check_labels = False
    counts = []
    for loss in (off, on):
        loss.fprop(z, labels("strict", np.arange(6) % 5))     # the cached eye(5)/6 built
        t = labels("strict", np.arange(6) % 5)      # a new label array every time
        c = count_strict(lambda: (loss.fprop(z, t), loss.bprop()))
        counts.append((c.ops, c.readbacks))
    assert counts[1] == (counts[0][0] + 2, 0)       # its min and max, nothing read back


def test_sequence_labels_are_checked_too():
    loss = deferred(nnx.SoftmaxCrossEntropy)
    z = scores("strict", (2, 3, 4))
    loss.fprop(z, labels("strict", [[0, 1, 2], [3, -4, 0]]))
    with pytest.raises(nnx.LabelError, match=r"\[0, 4\) for 4 classes, got values from -4 to 3"):
        nnx.check_deferred()


def test_a_long_loop_folds_its_checks_into_bounded_memory():
    loss = deferred(nnx.SoftmaxCrossEntropy)
    z = scores("strict")
    steps = 2 * _deferred._FOLD + 7
    for i in range(steps):
        loss.fprop(z, labels("strict", [0, 1, -2 if i == 300 else 2, 1]))
        assert len(_deferred.pending(loss).entries) < _deferred._FOLD
    with pytest.raises(nnx.LabelError, match=r"got values from -2 to 2 -- found by a deferred "
                                             r"check in calls (\d+) to (\d+) of fprop") as e:
        nnx.check_deferred()
    first, last = map(int, re.search(r"calls (\d+) to (\d+)", str(e.value)).groups())
    assert first <= 301 <= last < steps             # the 301st call had the bad label


def test_evaluate_save_and_fit_verify_first(tmp_path):
    """The readbacks nnx makes anyway carry the verdict; save writes nothing then."""
    net = nnx.Sequential(nnx.Linear(5, 3, device="strict"))
    x = nnx.asarray(RNG.standard_normal((4, 5)), device="strict")
    good = labels("strict", [0, 1, 2, 1])
    loss = deferred(nnx.SoftmaxCrossEntropy)
    opt = nnx.SGD(net, lr=0.1)
    for do in (lambda: nnx.evaluate(net, x, good),
               lambda: nnx.save(net, tmp_path / "net.nnx"),
               lambda: nnx.fit(net, loss, opt, x, good, epochs=1, verbose=False)):
        loss.fprop(net.fprop(x), labels("strict", [0, 1, -1, 1]))     # strict wraps it
        with pytest.raises(nnx.LabelError, match=r"\[0, 3\) for 3 classes, got values from -1 "
                                                 r"to 1 -- found by a deferred check"):
            do()
    assert not (tmp_path / "net.nnx").exists()


def test_the_readme_loop_reads_nothing_back_per_step(monkeypatch):
    """The classic loop with a new label array per batch, as the README writes it."""
    from test_fit_syncs import counting_readbacks

    def run(steps):
        nnx.seed(0)
        x = nnx.asarray(RNG.random((4 * steps, 6)), device="strict")
        t = nnx.asarray(RNG.integers(0, 3, 4 * steps), device="strict")
        net = nnx.Sequential(nnx.Linear(6, 5, device="strict"), nnx.Tanh(),
                             nnx.Linear(5, 3, device="strict"))
        loss = deferred(nnx.SoftmaxCrossEntropy)
        opt = nnx.SGD(net, lr=0.1, momentum=0.9)
        xp = nnx.device_of(x).xp
        count = counting_readbacks(monkeypatch)
        order = nnx.permutation(4 * steps, device="strict")
        for i in range(0, 4 * steps, 4):
            idx = order[i:i + 4]
            loss.fprop(net.fprop(xp.take(x, idx, axis=0)), xp.take(t, idx, axis=0))
            net.bprop(loss.bprop(), need_input_grad=False)
            opt.step()
        monkeypatch.undo()
        nnx.check_deferred()
        return count[0]
    assert run(2) == run(7) == 0


def test_cross_entropy_defers_its_probability_check(device):
    loss = deferred(nnx.CrossEntropy)
    t = labels(device, [0, 1])
    loss.fprop(nnx.asarray(np.array([[0.5, 0.5], [0.2, 0.8]]), device=device), t)
    nnx.check_deferred()
    for values, shown in (([[0.5, 0.5], [1.5, -0.5]], "from -0.5 to 1.5"),
                          ([[0.5, 0.5], [np.nan, 0.5]], "nan")):
        with pytest.raises(nnx.ArgumentError, match=rf"probabilities in \[0, 1\], got .*{shown}"):
            loss.fprop(nnx.asarray(np.array(values), device=device), t)
            nnx.check_deferred()


def test_hinge_defers_its_one_hot_check(device):
    loss = deferred(nnx.Hinge)
    z = scores(device, (2, 2))
    loss.fprop(z, nnx.asarray(np.array([[1.0, 0.0], [0.0, 1.0]]), device=device))
    nnx.check_deferred()
    with pytest.raises(nnx.LabelError, match="targets must be one-hot"):
        loss.fprop(z, nnx.asarray(np.array([[0.5, 0.5], [0.0, 1.0]]), device=device))
        nnx.check_deferred()


def test_embedding_defers_its_index_check(device):
    table = nnx.Embedding(5, 3, device=device)
    table.check_indices = "deferred"
    table.fprop(labels(device, [[0, 4]]))
    nnx.check_deferred()
    with pytest.raises(nnx.LabelError, match=r"indices must lie in \[0, 5\), got values from "
                                             r"-1 to 2"):
        table.fprop(labels(device, [[-1, 2]]))
        nnx.check_deferred()


def test_fit_puts_back_a_deferred_index_check():
    net = nnx.Sequential(nnx.Embedding(5, 3, device="strict"), nnx.MeanOverTime(),
                         nnx.Linear(3, 2, device="strict"))
    net.children()[0].check_indices = "deferred"
    x = labels("strict", RNG.integers(0, 5, (8, 4)))
    t = labels("strict", RNG.integers(0, 2, 8))
    nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1), x, t, epochs=1,
            batch_size=4, verbose=False)
    assert net.children()[0].check_indices == "deferred"


@pytest.mark.parametrize("value", ["yes", 1.0, None])
def test_an_unknown_setting_is_refused(value):
    loss = nnx.SoftmaxCrossEntropy()
    loss.check_labels = value
    z, t = scores("strict"), labels("strict", [0, 1, 2, 1])
    with pytest.raises(nnx.ArgumentError, match=r"\.check_labels must be True, False or "
                                                r"'deferred', got"):
        loss.fprop(z, t)
    table = nnx.Embedding(5, 3)
    table.check_indices = value
    with pytest.raises(nnx.ArgumentError, match=r"\.check_indices must be True, False or "
                                                r"'deferred', got"):
        table.fprop(nnx.asarray(np.array([[0, 1]])))


@pytest.mark.filterwarnings("ignore:Mean of empty slice")    # the loss of nothing is NaN
def test_empty_batches_record_nothing():
    loss = deferred(nnx.SoftmaxCrossEntropy)
    loss.fprop(scores("strict", (0, 3)), nnx.asarray(np.zeros(0, dtype=np.int64), device="strict"))
    assert not _deferred.pending(loss).entries


def test_a_compiled_jax_step_leaves_no_tracer_pending():
    pytest.importorskip("jax", reason="jax not installed")
    net = nnx.Sequential(nnx.Embedding(5, 3, device="jax:cpu"), nnx.MeanOverTime(),
                         nnx.Linear(3, 2, device="jax:cpu"))
    net.children()[0].check_indices = "deferred"
    loss = deferred(nnx.SoftmaxCrossEntropy)
    step = nnx.compile_step(net, loss, nnx.SGD(net, lr=0.1))
    x = labels("jax:cpu", RNG.integers(0, 5, (4, 3)))
    for _ in range(2):
        step(x, labels("jax:cpu", [0, 1, 1, 0]))
    nnx.check_deferred()                            # no tracer to read back


def test_fit_checks_the_first_example_at_once_with_deferred_checks():
    """fit's up-front check does not wait: scores given to CrossEntropy stop it before a step."""
    net = nnx.Sequential(nnx.Linear(5, 3, device="strict"))
    net.set_params([nnx.asarray(-np.ones((5, 3)), device="strict"),
                    nnx.asarray(-np.ones(3), device="strict")])
    x = nnx.asarray(RNG.random((8, 5)), device="strict")
    loss = deferred(nnx.CrossEntropy)
    with pytest.raises(nnx.ArgumentError, match="inputs must be probabilities in"):
        nnx.fit(net, loss, nnx.SGD(net, lr=0.01), x, labels("strict", RNG.integers(0, 3, 8)),
                epochs=1, verbose=False)
    assert loss.check_labels == "deferred"          # put back as it was


def test_the_verdict_outlives_the_loss():
    """A loss dropped after a bad batch (a loop inside a function) still has it said."""
    def train_a_little():
        loss = deferred(nnx.SoftmaxCrossEntropy)
        loss.fprop(scores("strict"), labels("strict", [0, -1, 2, 1]))
    train_a_little()
    import gc
    gc.collect()
    with pytest.raises(nnx.LabelError, match="got values from -1 to 2"):
        nnx.check_deferred()
