"""A hostile user against the compiled surface (compile_step, compile_fprop, evaluate(fprop=),
fit(compile=True)): what changes between calls is followed as the eager step follows it, or
refused in one line that says what to do.  Each test compares with the eager step (1e-12 in
float64) on every backend; on JAX the compiled ones are jitted programs."""

import numpy as np
import pytest

import nnx
from nnx.errors import LabelError, StateError

TOL = 1e-12


def _net(seed=0, dtype="float64", act=None, bn=True):
    nnx.seed(seed)
    return nnx.Sequential(nnx.Linear(6, 9, dtype=dtype), act or nnx.Tanh(),
                          *([nnx.BatchNorm(9, dtype=dtype)] if bn else []),
                          nnx.Linear(9, 4, dtype=dtype))


def _batch(rng, n=8, dtype="float64", classes=4):
    return (nnx.asarray(rng.standard_normal((n, 6)), dtype=dtype),
            nnx.asarray(rng.integers(0, classes, n)))


def _eager_step(net, loss, opt, x, t):
    value = loss.fprop(net.fprop(x), t)
    net.bprop(loss.bprop(), need_input_grad=False)
    opt.step()
    return value


def _assert_same(a, b, tol=TOL):
    arrays = [[nnx.to_numpy(v) for v in n.params() + n.grads() + n.buffers()] for n in (a, b)]
    for u, v in zip(*arrays):
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


def _twins(make_loss, make_opt, **net_options):
    """Two identical (net, loss, opt) runs, and a compiled step over the first (the second
    is stepped eagerly beside it)."""
    runs = []
    for _ in range(2):
        net = _net(**net_options)
        runs.append((net, make_loss(), make_opt(net)))
    return runs, nnx.compile_step(*runs[0])

def _steps_as_the_optimiser_changes(runs, step, rng, name, values):
    """For each value: both optimisers' ``name`` set to it, then a compiled and an eager
    step on the same batch, which must agree (loss, parameters, gradients, buffers)."""
    for value in values:
        for _, _, opt in runs:
            setattr(opt, name, value)
        x, t = _batch(rng)
        np.testing.assert_allclose(float(step(x, t)), float(_eager_step(*runs[1], x, t)),
                                   rtol=TOL)
        _assert_same(runs[0][0], runs[1][0])



def test_hyper_parameters_changed_between_calls_are_followed(device):
    """BatchNorm's momentum and eps, a LeakyReLU's slope, the loss's margin and SGD's
    momentum switched on after the first call were baked into the first program (silently
    kept) or made it fail; each change now retraces, and an update replaced on the
    instance makes the step eager, as the optimiser itself does."""
    rng = np.random.default_rng(0)
    runs, step = _twins(lambda: nnx.Hinge(margin=1.0), lambda net: nnx.SGD(net, lr=0.1))
    changes = [lambda n, l, o: None,             # (eps, a LeakyReLU's slope: the same key)
               lambda n, l, o: setattr(n[2], "momentum", 0.5),
               lambda n, l, o: setattr(l, "margin", 3.0),
               lambda n, l, o: setattr(o, "momentum", 0.9),
               lambda n, l, o: setattr(o, "update", lambda i, p, g: p - 0.5 * g)]
    for change in changes:
        x, t = _batch(rng)
        for run in runs:
            change(*run)
        np.testing.assert_allclose(float(step(x, t)), float(_eager_step(*runs[1], x, t)),
                                   rtol=TOL)
        _assert_same(runs[0][0], runs[1][0])
    if device.startswith("jax"):
        assert step.mode == "eager" and "update was replaced" in step.reason


def test_a_cast_or_move_between_jitted_calls_takes_the_state_along(device):
    """net.to(dtype=...) between calls: the momenta follow the parameters, as in the eager
    step (the jitted step tried to move the old state inside the trace and failed)."""
    rng = np.random.default_rng(1)
    runs, step = _twins(nnx.SoftmaxCrossEntropy,
                        lambda net: nnx.SGD(net, lr=0.1, momentum=0.9), bn=False)
    x, t = _batch(rng)
    step(x, t)
    _eager_step(*runs[1], x, t)
    for net, _, _ in runs:
        net.to(dtype="float32")
    x, t = _batch(rng, dtype="float32")
    np.testing.assert_allclose(float(step(x, t)), float(_eager_step(*runs[1], x, t)),
                               rtol=1e-5)
    _assert_same(runs[0][0], runs[1][0], 1e-5)
    assert {nnx.to_numpy(s).dtype.name for s in runs[0][2].state} == {"float32"}


def test_set_buffers_keeps_copies_so_a_donating_step_never_deletes_the_callers(device):
    """set_buffers bound the caller's arrays (set_params copies): a jitted step donates its
    buffers, so the net they came from then held deleted arrays (a raw JAX error at its
    next use)."""
    rng = np.random.default_rng(2)
    source, net = _net(1), _net(0)
    x, t = _batch(rng)
    source.fprop(x)                                 # running statistics of its own
    net.set_buffers(source.buffers())
    assert all(a is not b for a, b in zip(net.buffers(), source.buffers()))
    step = nnx.compile_step(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1))
    step(x, t)
    step(x, t)
    assert nnx.evaluate(source, x, t) >= 0          # its buffers are still there


def test_a_structural_change_is_followed_or_refused_with_the_fix(device):
    """A layer replaced after compile_fprop / compile_step: the old program went on running
    the old layers (silently). compile_fprop now follows the new structure; compile_step
    follows a replaced layer without parameters, and refuses one with parameters, which
    its optimiser does not hold."""
    rng = np.random.default_rng(3)
    x, t = _batch(rng)
    net = _net()
    net.eval()
    f = nnx.compile_fprop(net)
    f(x)
    net.modules[0] = nnx.Linear(6, 9, dtype="float64")
    net.modules.append(nnx.Linear(4, 3, dtype="float64"))
    np.testing.assert_allclose(nnx.to_numpy(f(x)), nnx.to_numpy(net.fprop(x)), rtol=TOL,
                               atol=TOL)
    assert nnx.evaluate(net, x, t % 3, fprop=f) == nnx.evaluate(net, x, t % 3)
    runs, step = _twins(nnx.SoftmaxCrossEntropy, lambda net: nnx.Adam(net, lr=0.01),
                        bn=False)
    step(x, t)
    _eager_step(*runs[1], x, t)
    for net, _, _ in runs:
        net.modules[1] = nnx.ReLU()
    np.testing.assert_allclose(float(step(x, t)), float(_eager_step(*runs[1], x, t)),
                               rtol=TOL)
    _assert_same(runs[0][0], runs[1][0])
    runs[0][0].modules[0] = nnx.Linear(6, 9, dtype="float64")
    with pytest.raises(StateError, match=r"^compile_step: the network's modules changed since "
                                         r"this step was made, and Adam still holds the old "
                                         r"parameters; make a new optimiser and step"):
        step(x, t)


def test_a_recurrent_state_carried_between_calls_is_not_baked_in(device):
    """stateful=True and set_state: the state a call starts from was baked into the program
    as a constant (the carried state lost, a given state ignored); those calls now run
    eagerly, equal to net.fprop and to the eager step."""
    rng = np.random.default_rng(4)

    def make():
        nnx.seed(0)
        return nnx.Sequential(nnx.RNN(3, 4, stateful=True, dtype="float64"), nnx.TimeStep(-1),
                              nnx.Linear(4, 2, dtype="float64"))
    runs = [(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1)) for net in (make(), make())]
    step = nnx.compile_step(*runs[0])
    for _ in range(3):
        x = nnx.asarray(rng.standard_normal((2, 5, 3)), dtype="float64")
        t = nnx.asarray(rng.integers(0, 2, 2))
        np.testing.assert_allclose(float(step(x, t)), float(_eager_step(*runs[1], x, t)),
                                   rtol=TOL)
        _assert_same(runs[0][0], runs[1][0])
    net, other = make(), make()
    net[0].stateful = other[0].stateful = False
    f = nnx.compile_fprop(net)
    x = nnx.asarray(rng.standard_normal((2, 5, 3)), dtype="float64")
    f(x)
    for state in (np.ones((2, 4)), None):
        for n in (net, other):
            n[0].set_state(nnx.asarray(state, dtype="float64")) if state is not None else \
                n[0].reset_state()
        np.testing.assert_allclose(nnx.to_numpy(f(x)), nnx.to_numpy(other.fprop(x)),
                                   rtol=TOL, atol=TOL)


def test_labels_out_of_range_in_a_jitted_step():
    """A sequence model's (N, T) labels out of range were not guarded as (N,) labels are:
    the jitted step wrote NaN into every parameter; now no update and a NaN loss.  With
    check_labels = "deferred" the verdict never came; now check_deferred() (evaluate,
    save, fit) raises the LabelError, as after the eager step."""
    pytest.importorskip("jax")
    with nnx.device("jax:cpu"):
        nnx.seed(0)
        net = nnx.Sequential(nnx.Linear(3, 5))
        step = nnx.compile_step(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1))
        x = nnx.asarray(np.ones((2, 4, 3)), dtype="float32")
        before = [nnx.to_numpy(p) for p in net.params()]
        assert np.isnan(float(step(x, nnx.asarray(np.array([[0, 1, 2, 9], [0, 1, 2, 3]])))))
        for a, b in zip(net.params(), before):
            np.testing.assert_array_equal(nnx.to_numpy(a), b)
        net = _net(dtype="float32")
        loss = nnx.SoftmaxCrossEntropy()
        loss.check_labels = "deferred"
        step = nnx.compile_step(net, loss, nnx.SGD(net, lr=0.1))
        rng = np.random.default_rng(5)
        x, t = _batch(rng, dtype="float32")
        step(x, t)
        nnx.check_deferred()                        # good labels: nothing to say
        step(x, nnx.asarray(np.array([0, 1, 2, 7, 0, 1, 2, 3])))
        with pytest.raises(LabelError, match=r"^SoftmaxCrossEntropy\(\).fprop: labels must "
                                             r"lie in \[0, 4\) for 4 classes, got values "
                                             r"from 0 to 7 -- found by a deferred check in "
                                             r"call 2"):
            nnx.check_deferred()


@pytest.mark.parametrize("check", [True, "deferred"])
def test_an_embeddings_index_check_runs_before_the_program(device, check):
    """An Embedding reading the input checks its indices by default: inside a trace that
    check failed as 'Attempted boolean conversion of traced array' (no fix given), so a
    network with an Embedding could not be compiled as it comes; now it runs before the
    program, at once or deferred, as in the eager fprop, and the results are the eager's."""
    rng = np.random.default_rng(6)

    def make():
        nnx.seed(0)
        net = nnx.Sequential(nnx.Embedding(10, 4, dtype="float64"), nnx.MeanOverTime(),
                             nnx.Linear(4, 3, dtype="float64"))
        net[0].check_indices = check
        return net
    runs = [(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1)) for net in (make(), make())]
    step, f = nnx.compile_step(*runs[0]), nnx.compile_fprop(runs[0][0])
    k, t = nnx.asarray(rng.integers(0, 10, (5, 7))), nnx.asarray(rng.integers(0, 3, 5))
    np.testing.assert_allclose(float(step(k, t)), float(_eager_step(*runs[1], k, t)), rtol=TOL)
    _assert_same(runs[0][0], runs[1][0])
    np.testing.assert_allclose(nnx.to_numpy(f(k)), nnx.to_numpy(runs[1][0].fprop(k)),
                               rtol=TOL, atol=TOL)
    bad = nnx.asarray(np.full((5, 7), 12))
    message = r"Embedding\(10, 4\): indices must lie in \[0, 10\), got values from 12 to 12"
    with pytest.raises(LabelError, match=message):
        f(bad)
        nnx.check_deferred()
    with pytest.raises(LabelError, match=message.replace("12", "11")):
        step(nnx.asarray(np.full((5, 7), 11)), t)     # a new array (one is checked once)
        nnx.check_deferred()


@pytest.mark.parametrize("spec", ["jax:cpu", "torch:cpu"])
def test_a_module_that_reads_a_value_back_gets_the_fix_in_one_line(spec):
    pytest.importorskip(spec.split(":")[0])

    class Peek(nnx.Module):
        """float() of an array inside fprop: fine eagerly, impossible in a trace."""

        def fprop(self, x):
            self.big = float(x.max()) > 1e9
            self.out_shape = tuple(x.shape)
            return x

        def bprop(self, grad_output, *, need_input_grad=True):
            return grad_output

    with nnx.device(spec):
        net = nnx.Sequential(nnx.Linear(3, 2), Peek())
        step = nnx.compile_step(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1))
        with pytest.raises(nnx.ArgumentError, match=r"^compile_step: the compiled step failed: "
                           r".*; a module reads a value back during the call \(a value check, "
                           r"bool\(\) or float\(\) of an array\), which a compiled program "
                           r"cannot: turn that off or use mode='eager'$"):
            step(nnx.asarray(np.ones((4, 3))), nnx.asarray(np.zeros(4, dtype="int64")))


def test_what_a_jitted_call_leaves_for_the_user_to_read_is_that_calls(device):
    """A recurrent layer's last_state and state_grad and an attention map after a jitted call were the
    older eager call's (silently stale, or None): now the state is the call's own, and
    the attention map, which a program does not hand back, refuses with a StateError."""
    rng = np.random.default_rng(7)

    def make():
        nnx.seed(0)
        return nnx.Sequential(nnx.RNN(3, 4, dtype="float64"), nnx.TimeStep(-1),
                              nnx.Linear(4, 2, dtype="float64"))
    runs = [(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1)) for net in (make(), make())]
    step, f = nnx.compile_step(*runs[0]), nnx.compile_fprop(runs[0][0])
    x0 = nnx.asarray(rng.standard_normal((2, 5, 3)), dtype="float64")
    runs[0][0].fprop(x0)                            # an older eager call's state
    x = nnx.asarray(rng.standard_normal((2, 5, 3)), dtype="float64")
    t = nnx.asarray(rng.integers(0, 2, 2))
    step(x, t)
    _eager_step(*runs[1], x, t)
    a, b = runs[0][0][0], runs[1][0][0]
    for u, v in zip((a.last_state, a.state_grad), (b.last_state, b.state_grad)):
        np.testing.assert_allclose(nnx.to_numpy(u), nnx.to_numpy(v), rtol=TOL, atol=TOL)
    f(x0)
    b.reset_state()
    runs[1][0].fprop(x0)
    np.testing.assert_allclose(nnx.to_numpy(a.last_state), nnx.to_numpy(b.last_state),
                               rtol=TOL, atol=TOL)
    nnx.seed(0)
    mha = nnx.MultiHeadAttention(4, 2, dtype="float64")
    g = nnx.compile_fprop(mha)
    xs = nnx.asarray(rng.standard_normal((2, 3, 4)), dtype="float64")
    mha.fprop(xs)
    g(xs * 2.0)
    if g.mode == "jit":
        with pytest.raises(StateError, match="attention: no attention computed yet"):
            mha.attention


def test_an_optimiser_bound_to_another_module_is_named_as_such():
    net = _net(bn=False)
    with pytest.raises(TypeError, match=r"^compile_step: opt must be an nnx optimiser bound "
                                        r"to net \(e.g. nnx.SGD\(net, lr=0.1\)\), got SGD "
                                        r"bound to another module \(Linear\)$"):
        nnx.compile_step(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net[0], lr=0.1))


def test_a_network_with_two_outputs_is_refused_by_compile_step_in_its_own_words(device):
    """The loss's own error was 'expected an array, got tuple; convert it with
    nnx.asarray(x)', as if the input were wrong."""
    nnx.seed(0)
    g = nnx.Graph(inputs="x")
    g.add("a", nnx.Linear(6, 4), "x").add("b", nnx.Linear(6, 4), "x").outputs("a", "b")
    step = nnx.compile_step(g, nnx.SoftmaxCrossEntropy(), nnx.SGD(g, lr=0.1))
    x, t = _batch(np.random.default_rng(8), dtype="float32")
    with pytest.raises(nnx.ShapeError, match=r"^compile_step: the network returns 2 outputs, "
                                             r"but the loss takes one array; give "
                                             r"compile_step a network \(or a Graph\) with a "
                                             r"single output"):
        step(x, t)


@pytest.mark.parametrize("check", [True, "deferred"])
@pytest.mark.parametrize("case", ["CrossEntropy of scores", "Hinge of soft targets"])
def test_a_losss_value_checks_hold_in_the_compiled_step(device, case, check):
    """The eager step refuses CrossEntropy's inputs outside [0, 1] and Hinge's targets that
    are not one-hot (check_labels); the compiled step switched the loss's checks off inside
    the program and kept only the label range: Tanh scores gave a loss of 14 and soft
    targets one of 0, trained on silently.  Now it says what the eager step says (at once,
    or at check_deferred() when deferred), with nothing updated and NaN gradients."""
    rng = np.random.default_rng(9)
    hinge = case.startswith("Hinge")

    def make():
        nnx.seed(0)
        return nnx.Sequential(nnx.Linear(6, 3, dtype="float64"),
                              *([] if hinge else [nnx.Sigmoid()]))
    runs = []
    for net in (make(), make()):
        loss = nnx.Hinge() if hinge else nnx.CrossEntropy()
        loss.check_labels = check
        runs.append((net, loss, nnx.SGD(net, lr=0.1, momentum=0.9)))
    step = nnx.compile_step(*runs[0])
    x = nnx.asarray(rng.standard_normal((8, 6)), dtype="float64")
    t = nnx.asarray(np.eye(3)[rng.integers(0, 3, 8)], dtype="float64")
    np.testing.assert_allclose(float(step(x, t)), float(_eager_step(*runs[1], x, t)), rtol=TOL)
    if hinge:
        bad, error = nnx.asarray(np.full((8, 3), 1 / 3), dtype="float64"), (
            LabelError, r"^Hinge\(\).fprop: targets must be one-hot \(one 1 per row, zeros "
                        r"elsewhere\) or integer labels; for soft targets use "
                        r"SoftmaxCrossEntropy")
    else:
        bad, error = t, (nnx.ArgumentError, r"^CrossEntropy\(\).fprop: inputs must be "
                                            r"probabilities in \[0, 1\], got values from -0")
        runs[0][0].modules[1] = nnx.Tanh()          # scores in (-1, 1): not probabilities
    before = [np.array(nnx.to_numpy(p)) for p in runs[0][0].params()]   # (a copy)
    with pytest.raises(error[0], match=error[1]):
        step(x, bad)
        nnx.check_deferred()
    if step.mode == "eager" and check == "deferred":
        return                                      # the eager deferred step has updated
    for p, q in zip(runs[0][0].params(), before):
        np.testing.assert_array_equal(nnx.to_numpy(p), q)
    if step.mode != "eager":                        # the refused batch's gradients: NaN,
        for g in runs[0][0].grads():                # not numbers that look like gradients
            assert np.isnan(nnx.to_numpy(g)).all()
    if not hinge:
        runs[0][0].modules[1] = nnx.Sigmoid()
    np.testing.assert_allclose(float(step(x, t)), float(_eager_step(*runs[1], x, t)), rtol=TOL)
    _assert_same(runs[0][0], runs[1][0])


def test_momentum_switched_off_and_on_again_continues_as_the_eager_step(device):
    """SGD's momentum set to 0 for a while and then back on: torch's eager step (its
    multi-tensor update) dropped the velocities at μ = 0 while the compiled step, and the
    eager step elsewhere, kept them, so the two trained apart from then on.  Each keeps them
    now (as torch.optim.SGD does)."""
    rng = np.random.default_rng(10)
    runs, step = _twins(nnx.SoftmaxCrossEntropy,
                        lambda net: nnx.SGD(net, lr=0.1, momentum=0.9), bn=False)
    _steps_as_the_optimiser_changes(runs, step, rng, "momentum", (0.9, 0.0, 0.5, 0.5))


def test_clip_norm_switched_on_later_keeps_the_momentum(device):
    """clip_norm set after some steps of SGD with momentum: torch's eager step moved from
    its multi-tensor update to the flat one (which clips in one reduction) and started that
    from v = g, losing the velocities the first had kept, while the compiled step went on
    from them.  The flat update now starts from the optimiser's state as it is."""
    rng = np.random.default_rng(11)
    runs, step = _twins(nnx.SoftmaxCrossEntropy,
                        lambda net: nnx.SGD(net, lr=0.1, momentum=0.9), bn=False)
    _steps_as_the_optimiser_changes(runs, step, rng, "clip_norm", (None, 0.5, 0.5, None, 0.2))
