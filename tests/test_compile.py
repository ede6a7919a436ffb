"""nnx.compile_step: the compiled whole step equals the eager one, on every backend."""

import numpy as np
import pytest

import nnx
from cases import compiled_mode
from nnx.errors import ArgumentError


def _setup(dtype, make_opt, dropout=False, seed=0):
    nnx.seed(seed)
    layers = [nnx.Linear(6, 9, dtype=dtype), nnx.Tanh(), nnx.BatchNorm(9, dtype=dtype)]
    layers += [nnx.Dropout(0.5)] if dropout else []
    net = nnx.Sequential(*layers, nnx.Linear(9, 4, dtype=dtype))
    return net, nnx.SoftmaxCrossEntropy(), make_opt(net)


OPTS = {"sgd-momentum": lambda n: nnx.SGD(n, lr=0.1, momentum=0.9, weight_decay=0.01),
        "adam": lambda n: nnx.Adam(n, lr=0.01),
        "adamw-clip": lambda n: nnx.AdamW(n, lr=0.01, clip_norm=0.5)}


def _batches(dtype, sizes=(8, 8, 5, 8)):
    rng = np.random.default_rng(2)
    for n in sizes:
        yield (nnx.asarray(rng.standard_normal((n, 6)), dtype=dtype),
               nnx.asarray(rng.integers(0, 4, n)))


def _eager_step(net, loss, opt, x, t):
    value = loss.fprop(net.fprop(x), t)
    net.bprop(loss.bprop(), need_input_grad=False)
    opt.step()
    return value


def _arrays(net):
    return [nnx.to_numpy(a) for a in net.params() + net.grads() + net.buffers()]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", list(OPTS))
def test_compiled_step_equals_the_eager_step(device, dtype, opt):
    compiled, eager = _setup(dtype, OPTS[opt]), _setup(dtype, OPTS[opt])
    step = nnx.compile_step(*compiled)
    assert step.mode == compiled_mode(device) and step.reason
    tol = 1e-12 if dtype == "float64" else 1e-5
    for x, t in _batches(dtype):
        value = step(x, t)
        expected = _eager_step(*eager, x, t)
        assert tuple(value.shape) == () and nnx.device_of(value) == nnx.get_device()
        np.testing.assert_allclose(float(value), float(expected), rtol=tol)
        for a, b in zip(_arrays(compiled[0]), _arrays(eager[0])):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert len(step.compile_seconds) == (2 if step.mode != "eager" else 0)   # one per shape


def test_compiled_steps_mix_with_eager_steps_save_and_evaluate(device, tmp_path):
    dtype = "float64"
    compiled, eager = _setup(dtype, OPTS["adam"]), _setup(dtype, OPTS["adam"])
    step = nnx.compile_step(*compiled)
    for i, (x, t) in enumerate(_batches(dtype, (8,) * 6)):
        if i % 2:
            _eager_step(*compiled, x, t)
        else:
            step(x, t)
        _eager_step(*eager, x, t)
        assert nnx.evaluate(compiled[0], x, t) == nnx.evaluate(eager[0], x, t)
    assert compiled[2].t == eager[2].t == 6
    nnx.save(compiled[0], tmp_path / "c.nnx")
    loaded, net = nnx.load(tmp_path / "c.nnx"), eager[0]
    for a, b in zip(loaded.params() + loaded.buffers(), net.params() + net.buffers()):
        np.testing.assert_allclose(nnx.to_numpy(a), nnx.to_numpy(b), rtol=1e-12, atol=1e-12)


def test_no_tracer_is_left_on_the_modules():
    jax = pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        net, loss, opt = _setup("float32", OPTS["adam"])
        step = nnx.compile_step(net, loss, opt)
        x, t = next(_batches("float32"))
        step(x, t)

        def tracers(value):
            if isinstance(value, (list, tuple)):
                return any(tracers(v) for v in value)
            if isinstance(value, dict):
                return any(tracers(v) for v in value.values())
            return isinstance(value, jax.core.Tracer)
        owners = [net, loss, opt] + [m for m in net.children()]
        leaked = [(type(o).__name__, k) for o in owners for k, v in vars(o).items() if tracers(v)]
        assert leaked == []
        assert not tracers(opt.state) and opt.t == 1


def test_a_bprop_right_after_a_jitted_step_refuses_instead_of_using_older_caches():
    pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        net, loss, opt = _setup("float64", OPTS["sgd-momentum"])
        step = nnx.compile_step(net, loss, opt)
        batches = _batches("float64", sizes=(8, 8, 8))
        x, t = next(batches)
        _eager_step(net, loss, opt, x, t)           # leaves this batch's caches
        step(*next(batches))                         # traces (restores them), then runs
        step(*next(batches))
        assert step.mode == "jit"
        with pytest.raises(nnx.StateError, match="SoftmaxCrossEntropy.bprop called before "
                                                 "fprop"):
            loss.bprop()
        with pytest.raises(nnx.StateError, match=r"Linear\(9, 4\).bprop called before "
                                                 r"fprop"):
            net.bprop(nnx.asarray(np.ones((8, 4))))
        _eager_step(net, loss, opt, x, t)           # an eager step works as before


def test_a_new_batch_shape_compiles_once():
    pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        net, loss, opt = _setup("float32", OPTS["sgd-momentum"])
        step = nnx.compile_step(net, loss, opt)
        for _ in range(3):                      # three "epochs" of 8, 8, 5
            for x, t in _batches("float32", (8, 8, 5)):
                step(x, t)
        assert step.traces == 2 and len(step.compile_seconds) == 2
        assert all(s > 0 for s in step.compile_seconds.values())


def _seeded_steps(compiled, eager, dtype, sizes, tol, between=None):
    """The compiled and the eager step over the same batches, each step's Dropout masks
    drawn from the same seed; loss, parameters, gradients and buffers compared each time."""
    step = nnx.compile_step(*compiled)
    for i, (x, t) in enumerate(_batches(dtype, sizes)):
        if between is not None:
            between(i, compiled, eager)
        nnx.seed(100 + i)
        value = step(x, t)
        nnx.seed(100 + i)
        expected = _eager_step(*eager, x, t)
        np.testing.assert_allclose(float(value), float(expected), rtol=tol)
        for a, b in zip(_arrays(compiled[0]), _arrays(eager[0])):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    return step


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dropout_in_the_jitted_step_equals_the_eager_step(device, dtype):
    """Dropout's masks come from the host generator (nnx.seed) in the jitted step too, drawn
    in the eager step's order and passed in: the same masks, so the same training."""
    tol = 1e-12 if dtype == "float64" else 1e-5
    compiled, eager = (_setup(dtype, OPTS["adam"], dropout=True) for _ in range(2))
    step = _seeded_steps(compiled, eager, dtype, (8, 8, 5, 8, 5, 8), tol)
    if device.startswith("jax"):
        assert step.mode == "jit" and "Dropout's masks are drawn on the host" in step.reason
        assert step.traces == 2 and len(step.compile_seconds) == 2  # first step per shape eager
    dropout = compiled[0][3]
    assert isinstance(dropout, nnx.Dropout) and "_given" not in vars(dropout)


def test_dropout_switched_off_or_changed_between_steps_is_honoured(device):
    def between(i, *runs):
        for net, _, _ in runs:
            if i == 2:
                net.eval()                      # no masks (BatchNorm's running statistics)
            elif i == 3:
                net.train()
                net[3].p = 0.2                  # another rate: the same program
            elif i == 5:
                net[3].p = 0.0
    compiled, eager = (_setup("float64", OPTS["sgd-momentum"], dropout=True) for _ in range(2))
    _seeded_steps(compiled, eager, "float64", (8,) * 7, 1e-12, between)


def test_jit_mode_takes_dropout_and_fit_trains_it_as_eager_fit_does():
    pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        net, loss, opt = _setup("float64", OPTS["adam"], dropout=True)
        assert nnx.compile_step(net, loss, opt, mode="jit").mode == "jit"
        rng = np.random.default_rng(5)
        x = nnx.asarray(rng.standard_normal((45, 6)), dtype="float64")
        t = nnx.asarray(rng.integers(0, 4, 45))
        runs = []
        for compile in (True, False):
            net, loss, opt = _setup("float64", OPTS["adam"], dropout=True)
            nnx.seed(9)
            history = nnx.fit(net, loss, opt, x, t, epochs=3, batch_size=10, verbose=False,
                              compile=compile)
            runs.append((history[-1].train_loss, _arrays(net)))
        np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-12)
        for a, b in zip(runs[0][1], runs[1][1]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_a_dropout_run_twice_in_one_step_is_refused_with_the_fix():
    pytest.importorskip("jax")

    class Twice(nnx.Module):
        """Its Dropout twice in a row (a hostile container)."""

        def __init__(self):
            self.d = nnx.Dropout(0.5)

        def children(self):
            return [self.d]

        def fprop(self, x):
            return self.d.fprop(self.d.fprop(x))

        def bprop(self, grad_output, *, need_input_grad=True):
            return self.d.bprop(grad_output)

    with nnx.device("jax:cpu"):
        net = nnx.Sequential(nnx.Linear(6, 4), Twice())
        loss, opt = nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1)
        step = nnx.compile_step(net, loss, opt)
        x, t = next(_batches("float32"))
        step(x, t)                                  # the first step of a shape: eager
        with pytest.raises(ArgumentError, match="Dropout.*ran more than once in one step.*"
                                                "mode='eager'"):
            step(x, t)
        vars(net[1].d).pop("mask", None)
        assert "_given" not in vars(net[1].d)       # nothing of the trace left behind


@pytest.mark.parametrize("spec", ["jax:cpu", "torch:cpu"])
def test_out_of_range_labels_give_nan_and_no_update(spec):
    """On JAX (whose gathers clamp) the program's guard gives a NaN loss and no update;
    torch's gather refuses the label inside the program, and the step says so as the eager
    one does (LabelError), with no update either (the program stops before its in-place
    updates)."""
    pytest.importorskip(spec.split(":")[0])
    with nnx.device(spec):
        net, loss, opt = _setup("float32", OPTS["adam"])
        step = nnx.compile_step(net, loss, opt)
        x, t = next(_batches("float32"))
        step(x, t)
        before = _arrays(net)[:len(net.params()) * 2]
        bad = nnx.asarray(np.array([0, 1, 2, 7, 0, 1, 2, 3]))
        if spec == "jax:cpu":
            assert np.isnan(float(step(x, bad)))      # never a silent wrong answer
        else:
            with pytest.raises(nnx.LabelError, match=r"SoftmaxCrossEntropy\(\).fprop: labels "
                               r"must lie in \[0, 4\) for 4 classes, got values from 0 to 7"):
                step(x, bad)
        kept = net.params() + ([] if spec == "jax:cpu" else net.grads())   # JAX: NaN grads
        for a, b in zip(kept, before):
            np.testing.assert_array_equal(nnx.to_numpy(a), b)
        assert np.isfinite(float(step(x, t)))


def test_eager_fallback_on_the_cpu_and_bad_arguments():
    net, loss, opt = _setup("float32", OPTS["adam"])
    step = nnx.compile_step(net, loss, opt)
    assert step.mode == "eager" and "NumPy" in step.reason and "eager" in repr(step)
    assert nnx.compile_step(net, loss, opt, mode="eager").reason.startswith("asked")
    with pytest.raises(ArgumentError, match="cannot jit this step: NumPy"):
        nnx.compile_step(net, loss, opt, mode="jit")
    with pytest.raises(ArgumentError, match="mode must be one of auto, jit, eager, got 'fast'"):
        nnx.compile_step(net, loss, opt, mode="fast")
    with pytest.raises(TypeError, match="opt must be an nnx optimiser bound to net"):
        nnx.compile_step(net, loss, nnx.SGD(nnx.Linear(2, 2)))
    with pytest.raises(TypeError, match="loss must be an nnx Loss"):
        nnx.compile_step(net, "mse", opt)


def test_wrong_input_shape_is_an_nnx_error_in_jit_mode():
    pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        net, loss, opt = _setup("float32", OPTS["adam"])
        step = nnx.compile_step(net, loss, opt)
        with pytest.raises(nnx.ShapeError, match="expected \\(batch, 6\\)"):
            step(nnx.asarray(np.ones((4, 5))), nnx.asarray(np.zeros(4, dtype=int)))
        x, t = next(_batches("float32"))
        assert np.isfinite(float(step(x, t)))       # the failed trace left nothing behind


def test_fit_compiled_equals_fit_eager(device, monkeypatch):
    """The same history and weights; compile=True also evaluates the test set through one
    compile_fprop, compiled once for all the epochs."""
    from nnx.compile import Fprop
    rng = np.random.default_rng(5)
    x = nnx.asarray(rng.standard_normal((45, 6)), dtype="float64")
    t = nnx.asarray(rng.integers(0, 4, 45))
    seen, call = [], Fprop.__call__
    monkeypatch.setattr(Fprop, "__call__", lambda f, x: seen.append(f) or call(f, x))
    runs = []
    for compile in (True, False):
        net, loss, opt = _setup("float64", OPTS["sgd-momentum"])
        nnx.seed(9)                                 # the same shuffles
        history = nnx.fit(net, loss, opt, x, t, epochs=3, batch_size=10, x_test=x, t_test=t,
                          verbose=False, compile=compile)
        runs.append((history, _arrays(net)))
        if compile:                                 # one evaluation batch per epoch
            assert len(seen) == 3 and len(set(map(id, seen))) == 1 and seen[0].net is net
            assert seen[0].traces == (1 if compiled_mode(device) != "eager" else 0)
    assert len(seen) == 3                           # the eager fit used none
    (h1, a1), (h2, a2) = runs
    for s1, s2 in zip(h1, h2):
        assert s1.test_errors == s2.test_errors and s1.train_accuracy == s2.train_accuracy
        np.testing.assert_allclose(s1.train_loss, s2.train_loss, rtol=1e-12)
    for a, b in zip(a1, a2):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_fit_refuses_compile_with_distributed():
    net, loss, opt = _setup("float32", OPTS["adam"])
    x, t = next(_batches("float32"))
    with pytest.raises(ArgumentError, match="compile=True does not combine with distributed"):
        nnx.fit(net, loss, opt, x, t, epochs=1, verbose=False, compile=True, distributed=True)


@pytest.mark.mnist
def test_cli_train_compile(capsys, mnist_dir):
    pytest.importorskip("jax")
    from nnx.cli import main
    code = main(["train", "--model", "linear", "--epochs", "1", "--device", "jax:cpu",
                 "--compile", "--batch-size", "1000", "--data", str(mnist_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "compiled step: jit" in out and out.strip().splitlines()[-1].startswith("test errors")


def test_jit_mode_checks_what_jax_would_take_silently():
    pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        net, loss, opt = _setup("float32", lambda n: nnx.SGD(n, lr=0.1, clip_norm=0.01))
        step = nnx.compile_step(net, loss, opt)
        x, t = next(_batches("float32"))
        with pytest.raises(nnx.DeviceError, match="compile_step: input is on cpu"):
            step(np.asarray(nnx.to_numpy(x)), t)
        step(x, t)
        assert opt.grad_norm is not None and float(opt.grad_norm) > 0.01   # not a tracer
        net.to("cpu")                                  # off JAX: it says so and goes on
        value = step(nnx.to_numpy(x), nnx.to_numpy(t))
        assert step.mode == "eager" and "moved off JAX" in step.reason
        assert isinstance(value, np.ndarray) or np.isscalar(value)


@pytest.mark.parametrize("opt", ["sgd", "sgd-momentum", "adam"])
def test_a_changed_learning_rate_or_momentum_takes_effect(device, opt):
    """The step keeps the learning rates on the device between calls and its
    hyper-parameters in the program: changing opt.lr (a schedule) or opt.momentum between
    calls is honoured as in the eager step, and plain SGD runs without any state."""
    make = {"sgd": lambda n: nnx.SGD(n, lr=0.1), "sgd-momentum": OPTS["sgd-momentum"],
            "adam": OPTS["adam"]}[opt]
    compiled, eager = _setup("float64", make), _setup("float64", make)
    step = nnx.compile_step(*compiled)
    for i, (x, t) in enumerate(_batches("float64", (8, 8, 8, 8))):
        for o in (compiled[2], eager[2]):
            o.lr = [0.1, 0.05, 0.05, 0.2][i] / (10 if opt == "adam" else 1)
            if i == 3 and opt == "sgd-momentum":
                o.momentum = 0.5
        np.testing.assert_allclose(float(step(x, t)), float(_eager_step(*eager, x, t)),
                                   rtol=1e-12)
        for a, b in zip(_arrays(compiled[0]), _arrays(eager[0])):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    if opt == "sgd":
        assert compiled[2].state == [None] * len(compiled[0].params())


@pytest.mark.parametrize("opt", ["sgd", "adamw-clip"])
def test_keep_grads_false_equals_the_eager_step_and_keeps_no_gradient(device, opt):
    """keep_grads=False: the same parameters, buffers, state and loss as the eager step (the
    program just returns no gradients), and every gradient is None afterwards, on every
    backend, so that a stale gradient is never read as the current one."""
    make = {"sgd": lambda n: nnx.SGD(n, lr=0.1), "adamw-clip": OPTS["adamw-clip"]}[opt]
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-5)):
        compiled, eager = _setup(dtype, make), _setup(dtype, make)
        step = nnx.compile_step(*compiled, keep_grads=False)
        assert step.keep_grads is False
        for x, t in _batches(dtype):
            value = step(x, t)
            expected = _eager_step(*eager, x, t)
            np.testing.assert_allclose(float(value), float(expected), rtol=tol)
            net = compiled[0]
            assert net.grads() == [None] * len(net.params())
            for a, b in zip(net.params() + net.buffers(),
                            eager[0].params() + eager[0].buffers()):
                np.testing.assert_allclose(nnx.to_numpy(a), nnx.to_numpy(b), rtol=tol,
                                           atol=tol)
        if opt == "adamw-clip":
            assert compiled[2].t == eager[2].t == 4
            np.testing.assert_allclose(float(compiled[2].grad_norm),
                                       float(eager[2].grad_norm), rtol=tol)
        assert len(step.compile_seconds) == (2 if step.mode != "eager" else 0)


def test_keep_grads_false_mixes_with_eager_steps_save_to_and_evaluate(device, tmp_path):
    compiled, eager = _setup("float64", OPTS["sgd-momentum"]), _setup("float64",
                                                                     OPTS["sgd-momentum"])
    net, loss, opt = compiled
    step = nnx.compile_step(net, loss, opt, keep_grads=False)
    for i, (x, t) in enumerate(_batches("float64", (8,) * 4)):
        if i % 2:
            _eager_step(net, loss, opt, x, t)      # bprop fills the gradients in again
            assert all(g is not None for g in net.grads())
        else:
            step(x, t)
        _eager_step(*eager, x, t)
        assert nnx.evaluate(net, x, t) == nnx.evaluate(eager[0], x, t)
    step(x, t)
    _eager_step(*eager, x, t)
    nnx.save(net, tmp_path / "c.nnx")               # no gradient is needed to save
    loaded = nnx.load(tmp_path / "c.nnx")
    for a, b in zip(loaded.params() + loaded.buffers(), eager[0].params() + eager[0].buffers()):
        np.testing.assert_allclose(nnx.to_numpy(a), nnx.to_numpy(b), rtol=1e-12, atol=1e-12)
    net.to(dtype="float32")                         # None gradients move along as None
    assert net.grads() == [None] * len(net.params())
    assert {nnx.to_numpy(p).dtype.name for p in net.params()} == {"float32"}


def test_keep_grads_false_then_a_step_without_bprop_says_what_to_do(device):
    net, loss, opt = _setup("float32", OPTS["adam"])
    step = nnx.compile_step(net, loss, opt, keep_grads=False)
    step(*next(_batches("float32")))
    with pytest.raises(nnx.StateError, match="Adam.step: the module holds no gradients .*"
                                             "keep_grads=False.*run net.bprop"):
        opt.step()
    with pytest.raises(nnx.StateError, match="clip_grad_norm: the module holds no gradients"):
        nnx.clip_grad_norm(net, 1.0)
    x, t = next(_batches("float32"))
    assert np.isfinite(float(_eager_step(net, loss, opt, x, t)))   # bprop first: fine


@pytest.mark.parametrize("bad", ["no", 0, 1, None, np.bool_(False)])
def test_keep_grads_must_be_a_bool(bad):
    net, loss, opt = _setup("float32", OPTS["adam"])
    with pytest.raises(TypeError, match="compile_step: keep_grads must be True or False, got"):
        nnx.compile_step(net, loss, opt, keep_grads=bad)


def test_keep_grads_false_refuses_an_optimiser_it_cannot_clear():
    net, loss, opt = _setup("float32", OPTS["adam"])
    opt._slots = None                   # as for a module that lists its parameters itself
    with pytest.raises(ArgumentError, match="keep_grads=False needs an nnx optimiser over "
                                            "the module's own parameters.*keep_grads=True"):
        nnx.compile_step(net, loss, opt, keep_grads=False)


def test_keep_grads_false_program_returns_no_gradient_arrays():
    """What makes keep_grads=False faster: the jitted program's results are the loss, the
    parameters and the buffers only (6 parameters, 2 BatchNorm buffers here), as for a
    jax.jit(jax.grad) step; with gradients kept it also returns the 6 gradients."""
    jax = pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        leaves = {}
        for keep in (True, False):
            net, loss, opt = _setup("float32", lambda n: nnx.SGD(n, lr=0.1))
            step = nnx.compile_step(net, loss, opt, keep_grads=keep)
            x, t = next(_batches("float32"))
            step(x, t)
            program, seen = step._program, []

            def spy(*args):
                seen.append(jax.tree_util.tree_map(
                    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args[:-1]) + args[-1:])
                return program(*args)
            step._program = spy
            step(x, t)
            step._traced = False
            lowered = program.lower(*seen[0])
            if step._traced:
                step._restore()
            leaves[keep] = len(jax.tree_util.tree_leaves(lowered.out_info))
        assert leaves == {True: 1 + 6 + 6 + 2, False: 1 + 6 + 2}


def _compiled_text(step, x, t):
    """The optimised HLO of the program ``step`` runs for (x, t), as XLA compiled it (the
    learning rate stays weakly typed, as in the step: a float64 one under jax_enable_x64
    would turn the float32 update into a float64 one)."""
    jax = pytest.importorskip("jax")
    step(x, t)
    program, seen = step._program, []

    def spy(*args):
        seen.append(jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(
            a.shape, a.dtype, weak_type=a.weak_type), args[:-1]) + args[-1:])
        return program(*args)
    step._program = spy
    step(x, t)
    step._program = program
    step._traced = False
    compiled = program.lower(*seen[0]).compile()
    if step._traced:
        step._restore()
    return compiled.as_text()


@pytest.mark.parametrize("opt", ["sgd"] + list(OPTS))
def test_the_jitted_step_on_the_cpu_updates_in_place(opt):
    """The parameters, the optimiser's state and BatchNorm's buffers are donated and the
    update writes into their buffers: none is copied first (XLA's default copy insertion
    copies each weight that g·Wᵀ reads and every momentum or Adam moment, a full copy of
    each per step; nnx compiles its CPU step with region analysis, which sees that the reads
    come before the update) and every parameter's buffer is an output's."""
    pytest.importorskip("jax")
    from nnx.backends import _jax
    if not _jax._cpu_compiler_options():
        pytest.skip("this jaxlib has no xla_cpu_copy_insertion_use_region_analysis")
    make = OPTS.get(opt, lambda n: nnx.SGD(n, lr=0.1))
    with nnx.device("jax:cpu"):
        nnx.seed(0)
        net = nnx.Sequential(nnx.Linear(6, 16), nnx.Tanh(), nnx.BatchNorm(16),
                             nnx.Linear(16, 16), nnx.Tanh(), nnx.Linear(16, 4))
        loss = nnx.SoftmaxCrossEntropy()
        loss.check_labels = False           # as fit does (labels checked once, up front)
        step = nnx.compile_step(net, loss, make(net), keep_grads=False)
        x, t = next(_batches("float32"))
        text = _compiled_text(step, x, t)
    copies = [line.strip() for line in text.splitlines()
              if any(f" copy(%{name}" in line for name in ("params", "state", "buffers"))]
    assert copies == [], copies
    header = text.splitlines()[0]
    assert all(f": ({i}, {{}}, may-alias)" in header for i in range(8)), header


@pytest.mark.parametrize("targets", ["one-hot", "regression"])
def test_fit_compiled_takes_every_kind_of_target_as_eager_fit_does(device, targets):
    """One-hot targets with as many rows per batch as classes (where comparing argmax(z)
    with the one-hot rows would broadcast silently) count the argmax of each row, as the
    eager fit does; a regression loss (float targets, no accuracy) reports the same test
    loss through the compile_fprop."""
    rng = np.random.default_rng(6)
    x = nnx.asarray(rng.standard_normal((30, 6)), dtype="float32")
    if targets == "one-hot":
        t = nnx.asarray(np.eye(5)[rng.integers(0, 5, 30)], dtype="float32")
    else:
        t = nnx.asarray(rng.standard_normal((30, 5)), dtype="float32")
    runs = []
    for compile in (True, False):
        nnx.seed(2)
        net = nnx.Sequential(nnx.Linear(6, 7), nnx.Tanh(), nnx.Linear(7, 5))
        loss = nnx.SoftmaxCrossEntropy() if targets == "one-hot" else nnx.MSE()
        h = nnx.fit(net, loss, nnx.SGD(net, lr=0.05), x, t, epochs=2, batch_size=5,
                    x_test=x, t_test=t, verbose=False, compile=compile)
        runs.append([(s.train_accuracy, s.test_errors, s.test_loss, s.train_loss) for s in h])
    for a, b in zip(*runs):
        assert a[:2] == b[:2] and (a[0] is None) == (targets == "regression")
        np.testing.assert_allclose([v for v in a[2:] if v is not None],
                                   [v for v in b[2:] if v is not None], rtol=1e-5)
