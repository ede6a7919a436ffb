"""nnx.compile_step on torch's CPU: the step traced by torch.fx into one graph and compiled
by Inductor.  The tests marked ``inductor`` compile it as users get it (4 to 20 s per
program); the rest, like every other test on torch (tests/conftest.py), run the traced
graph without a compiler."""

import warnings

import numpy as np
import pytest

import nnx
from nnx import backends
from nnx.errors import ArgumentError

torch = pytest.importorskip("torch")


def _small(dtype, conv=False, spec="torch:cpu"):
    nnx.seed(0)
    if conv:
        layers = [nnx.Conv2D(1, 2, 3, dtype=dtype), nnx.BatchNorm(2, dtype=dtype),
                  nnx.MaxPool2D(2), nnx.ReLU(), nnx.Flatten(), nnx.Linear(18, 3, dtype=dtype)]
    else:
        layers = [nnx.Linear(6, 9, dtype=dtype), nnx.Tanh(), nnx.BatchNorm(9, dtype=dtype),
                  nnx.Linear(9, 3, dtype=dtype)]
    return nnx.Sequential(*layers).to(spec)


def _batches(sizes, conv=False, dtype="float64", spec="torch:cpu"):
    rng = np.random.default_rng(3)
    for n in sizes:
        shape = (n, 1, 8, 8) if conv else (n, 6)
        yield (nnx.asarray(rng.standard_normal(shape), device=spec, dtype=dtype),
               nnx.asarray(rng.integers(0, 3, n), device=spec))


def _eager(net, loss, opt, x, t):
    value = loss.fprop(net.fprop(x), t)
    net.bprop(loss.bprop(), need_input_grad=False)
    opt.step()
    return value


def _same(a, b, tol):
    for p, q in zip(a.params() + a.grads() + a.buffers(), b.params() + b.grads() + b.buffers()):
        np.testing.assert_allclose(nnx.to_numpy(p), nnx.to_numpy(q), rtol=tol, atol=tol)


OPTS = {"sgd-momentum": lambda n: nnx.SGD(n, lr=0.1, momentum=0.9, weight_decay=0.01),
        "adam": lambda n: nnx.Adam(n, lr=0.01)}


@pytest.mark.inductor
@pytest.mark.parametrize("spec", ["torch:cpu", "torch:cuda:0"])
@pytest.mark.parametrize("opt, dtype, sizes, conv", [
    ("sgd-momentum", "float64", (8, 8, 5, 8), False),
    ("adam", "float32", (8, 8, 8), False),
    ("sgd-momentum", "float32", (4, 4, 3), True)])
def test_the_inductor_step_equals_the_eager_step(spec, opt, dtype, sizes, conv):
    """Parameters, gradients, buffers and losses equal the eager step's over several steps
    (1e-12 in float64, 1e-5 in float32), one compile per batch shape; torch's learning rate
    goes in as a float64 0-d tensor, as exact as the Python float of the eager step.  On
    CUDA (mode="jit" asks for it there) this is what a GPU run checks (bench/gpu.sh)."""
    if spec != "torch:cpu" and not torch.cuda.is_available():
        pytest.skip(f"{spec}: torch sees no GPU here")
    compiled, eager = _small(dtype, conv, spec), _small(dtype, conv, spec)
    runs = [(n, nnx.SoftmaxCrossEntropy(), OPTS[opt](n)) for n in (compiled, eager)]
    step = nnx.compile_step(*runs[0], mode="auto" if spec == "torch:cpu" else "jit")
    assert step.mode == "compiled" and "Inductor" in step.reason
    tol = 1e-12 if dtype == "float64" else 1e-5
    for x, t in _batches(sizes, conv, dtype, spec):
        np.testing.assert_allclose(float(step(x, t)), float(_eager(*runs[1], x, t)), rtol=tol)
        _same(compiled, eager, tol)
    assert step.traces == len(set(sizes)) == len(step.compile_seconds)
    assert all(s > 0 for s in step.compile_seconds.values())
    before = [nnx.to_numpy(p) for p in compiled.params()]
    bad = nnx.asarray(np.arange(len(t)) + 1, device=spec)       # 3 and up: out of range
    with pytest.raises(nnx.LabelError, match=r"labels must lie in \[0, 3\) for 3 classes"):
        step(x, bad)                        # Inductor's gather refuses them: said as eagerly
    for p, q in zip(compiled.params(), before):
        np.testing.assert_array_equal(nnx.to_numpy(p), q)
    if conv:                                # inference as one program too
        compiled.eval(), eager.eval()
        f = nnx.compile_fprop(compiled, mode="auto" if spec == "torch:cpu" else "jit")
        x = next(_batches((5,), conv, dtype, spec))[0]
        assert f.mode == "compiled"
        np.testing.assert_allclose(nnx.to_numpy(f(x)), nnx.to_numpy(eager.fprop(x)),
                                   rtol=tol, atol=tol)


def test_the_traced_graph_writes_into_no_array_kept_between_calls():
    """Eagerly, on torch's CPU, Conv2D and MaxPool2D gather into arrays they keep between
    calls (out=); a program that did so would hold them as constants and write into them
    every call.  While tracing, those fast paths stand aside."""
    net = _small("float32", conv=True)
    loss, opt = nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1)
    (x, t), = _batches((4,), conv=True, dtype="float32")
    _eager(net, loss, opt, x, t)                    # the kept arrays exist
    assert any(vars(m).get("_scratch") is not None and m._scratch._arrays for m in net)
    step = nnx.compile_step(net, loss, opt)
    step(x, t)
    (graph, _, _), = step._program.graphs.values()
    code = graph.code
    assert "aten.index_select.default" in code and ".out(" not in code


def test_the_step_program_never_writes_into_the_arrays_it_is_given():
    """The step's program updates its own copies of the parameters, state and buffers and
    hands back new arrays: one taken before the step keeps its values (so a program that
    stops half-way, on a label torch's gather refuses, has updated nothing), while an
    inference program leaves the parameters alone."""
    net = _small("float64")
    opt = nnx.SGD(net, lr=0.1, momentum=0.9)
    step = nnx.compile_step(net, nnx.SoftmaxCrossEntropy(), opt)
    batches = list(_batches((8, 8)))
    step(*batches[0])
    held = net.params() + net.buffers() + list(opt.state)
    values = [nnx.to_numpy(a).copy() for a in held]
    step(*batches[1])
    for a, v in zip(held, values):
        np.testing.assert_array_equal(nnx.to_numpy(a), v)
    assert all(a is not b for a, b in zip(held, net.params() + net.buffers() + opt.state))


@pytest.mark.parametrize("check", [True, "deferred", False])
def test_bad_labels_or_indices_in_the_first_batch_of_a_shape_are_said_as_eagerly(check):
    """The first call of a batch shape traces on the batch itself, where torch's gather
    refuses a label or an Embedding index out of range: the step says so with the eager
    step's LabelError (not torch's raw IndexError), and works on with good batches."""
    net = _small("float64")
    loss = nnx.SoftmaxCrossEntropy()
    loss.check_labels = check
    step = nnx.compile_step(net, loss, nnx.SGD(net, lr=0.1))
    (x, t), = _batches((8,))
    bad = nnx.asarray(np.arange(8) + 1, device="torch:cpu")        # up to 8, of 3 classes
    with pytest.raises(nnx.LabelError, match=r"labels must lie in \[0, 3\) for 3 classes, "
                       r"got values from 1 to 8"):
        step(x, bad)
    assert np.isfinite(float(step(x, t))) and step.traces == 2
    nnx.check_deferred()                            # nothing left over from the bad batch
    nnx.seed(0)
    table = nnx.Sequential(nnx.Embedding(10, 4, dtype="float64"), nnx.MeanOverTime(),
                           nnx.Linear(4, 3, dtype="float64")).to("torch:cpu")
    table[0].check_indices = check
    step = nnx.compile_step(table, nnx.SoftmaxCrossEntropy(), nnx.SGD(table, lr=0.1))
    k = nnx.asarray(np.full((8, 5), 12), device="torch:cpu")
    if check:
        with pytest.raises(nnx.LabelError, match=r"indices must lie in \[0, 10\), got "
                           r"values from 12 to 12"):
            step(k, t)
            nnx.check_deferred()
    else:                                           # unchecked, as eagerly: torch's words
        with pytest.raises(nnx.ArgumentError, match="index out of range"):
            step(k, t)
    nnx.check_deferred()                            # said once, not again
    assert np.isfinite(float(step(nnx.asarray(np.ones((8, 5), dtype=np.int64),
                                              device="torch:cpu"), t)))


def _failing_compiler(graph, example_inputs):
    raise RuntimeError("no C++ compiler here\nsecond line")


def test_a_failure_of_the_compiled_program_is_not_called_a_compiler_failure(monkeypatch):
    """Inductor compiles before the program runs, so a failure of the program's first run
    (here a made-up one) is the step's error, not a reason to fall back to eager for good."""
    import torch._inductor

    def compiled_but_failing(graph, example_inputs):
        def run(*args):
            raise RuntimeError("the program broke\nsecond line")
        return run
    monkeypatch.setattr(backends.BACKENDS["torch"], "compiler", "inductor")
    monkeypatch.setattr(torch._inductor, "compile", compiled_but_failing)
    net = _small("float64")
    step = nnx.compile_step(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no "it runs eagerly" warning
        with pytest.raises(ArgumentError, match=r"^compile_step: the compiled step failed: "
                                                r"the program broke$"):
            step(*next(iter(_batches((8, 8)))))
    assert step.mode == "compiled"


@pytest.mark.parametrize("compiler", ["inductor", "another"])
def test_a_compiler_failure_falls_back_to_eager_and_says_why(monkeypatch, compiler):
    """Inductor (called directly) or another compiler (through torch.compile) failing."""
    if compiler == "inductor":
        import torch._inductor
        monkeypatch.setattr(backends.BACKENDS["torch"], "compiler", "inductor")
        monkeypatch.setattr(torch._inductor, "compile", _failing_compiler)
    else:
        monkeypatch.setattr(backends.BACKENDS["torch"], "compiler", _failing_compiler)
    compiled, eager = _small("float64"), _small("float64")
    runs = [(n, nnx.SoftmaxCrossEntropy(), nnx.SGD(n, lr=0.1)) for n in (compiled, eager)]
    step = nnx.compile_step(*runs[0])
    assert step.mode == "compiled"
    batches = list(_batches((8, 8)))
    with pytest.warns(RuntimeWarning, match=r"compile_step: torch.compile \(.*\) failed: "
                      r".*no C\+\+ compiler here; it runs eagerly$"):
        value = step(*batches[0])
    assert step.mode == "eager" and "no C++ compiler here" in step.reason
    np.testing.assert_allclose(float(value), float(_eager(*runs[1], *batches[0])), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # said once, not every step
        step(*batches[1])
    _eager(*runs[1], *batches[1])
    _same(compiled, eager, 1e-12)
    forced = nnx.compile_step(*runs[0], mode="jit")
    with pytest.raises(ArgumentError, match=r"^compile_step: torch.compile .* failed: .*; use "
                       r"mode='eager' \(or mode='auto', which falls back to it\)$"):
        forced(*batches[0])
    f = nnx.compile_fprop(compiled)
    with pytest.warns(RuntimeWarning, match="compile_fprop: torch.compile"):
        y = f(batches[0][0])
    assert f.mode == "eager" and tuple(y.shape) == (8, 3)


def test_cuda_compiles_only_when_asked(monkeypatch):
    """On CUDA the compiled step is not yet checked by nnx's tests on a GPU: "auto" stays
    eager there and says how to ask for it (the reason, checked without a GPU)."""
    from nnx.compile import _why_not_jit_params

    class Cuda:
        type = "cuda"
    cuda = backends.Device("torch:cuda:0", backends.BACKENDS["torch"], Cuda())
    monkeypatch.setattr(backends, "device_of", lambda p: cuda)
    assert "unless mode='jit' asks for torch.compile" in _why_not_jit_params([object()])
    assert _why_not_jit_params([object()], asked="jit") is None


def test_an_input_of_another_memory_layout_gets_its_own_program():
    """A batch of a traced shape but another layout (a transposed or permuted view) ran the
    program traced for the contiguous one, whose reshapes torch.fx had recorded as views:
    'the compiled step failed: view size is not compatible with input tensor's size and
    stride', where the eager step takes it.  The layout is part of the program's key now."""
    rng = np.random.default_rng(4)

    def make():
        nnx.seed(0)
        return nnx.Sequential(nnx.Flatten(), nnx.Linear(12, 3, dtype="float64")).to("torch:cpu")
    runs = [(n, nnx.SoftmaxCrossEntropy(), nnx.SGD(n, lr=0.1)) for n in (make(), make())]
    step, f = nnx.compile_step(*runs[0]), nnx.compile_fprop(runs[0][0])
    t = nnx.asarray(rng.integers(0, 3, 8), device="torch:cpu")
    x = nnx.asarray(rng.standard_normal((8, 3, 4)), device="torch:cpu", dtype="float64")
    permuted = nnx.asarray(rng.standard_normal((8, 4, 3)), device="torch:cpu",
                           dtype="float64").permute(0, 2, 1)
    for batch in (x, permuted):
        np.testing.assert_allclose(float(step(batch, t)), float(_eager(*runs[1], batch, t)),
                                   rtol=1e-12)
        _same(runs[0][0], runs[1][0], 1e-12)
        np.testing.assert_allclose(nnx.to_numpy(f(batch)), nnx.to_numpy(runs[1][0].fprop(batch)),
                                   rtol=1e-12, atol=1e-12)
    assert step.mode == f.mode == "compiled" and step.traces == 2


def test_eager_and_compiled_steps_mixed_trace_once_per_batch_shape():
    """The program's key holds the arrays' layouts: torch's eager SGD kept its first
    velocities in the layout of the gradients (a convolution's is transposed), its later
    ones contiguous, so mixing eager and compiled steps traced (and with Inductor compiled)
    a batch shape twice.  The velocities start contiguous now."""
    net = _small("float64", conv=True)
    loss, opt = nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1, momentum=0.9)
    step = nnx.compile_step(net, loss, opt)
    for i, (x, t) in enumerate(_batches((4, 4, 4, 4, 4), conv=True)):
        if i % 2:
            step(x, t)
        else:
            _eager(net, loss, opt, x, t)
    assert step.traces == 1


def test_the_programs_key_lists_the_leaves_in_torchs_pytree_order():
    """A compiled program is called with its arguments' leaves in the order nnx lists them
    for its key, without torch's pytree code on every call: that order must be torch's
    (None a leaf, dicts in their keys' order), or arguments would be swapped; and a strided
    view differs from a contiguous tensor of the same shape in the key."""
    import torch
    from torch.utils import _pytree
    from nnx.backends._torch import _shape_of
    a, b = torch.ones(2, 3), torch.ones(3, 2).T
    tree = [a, [b, None], {3: torch.ones(3), 1: torch.zeros(1)}, (torch.ones(5),), 0.5, []]
    leaves = []
    key = _shape_of(tree, leaves, torch.Tensor)
    theirs = _pytree.tree_flatten(tree)[0]
    assert len(leaves) == len(theirs) == 7 and all(x is y for x, y in zip(leaves, theirs))
    hash(key)
    assert _shape_of([a], [], torch.Tensor) != _shape_of([b], [], torch.Tensor)
    assert _shape_of([a], [], torch.Tensor) == _shape_of([torch.zeros(2, 3)], [], torch.Tensor)
    assert _shape_of({1: a, 2: a}, [], torch.Tensor) != _shape_of({2: a, 1: a}, [], torch.Tensor)


def test_the_programs_outputs_are_nested_as_torchs_pytree_nests_them():
    """The program's flat outputs are nested again by a builder made once from the traced
    graph's output spec: the same structure and leaves as torch's own unflattening."""
    import torch
    from torch.utils import _pytree
    from nnx.backends._torch import _builder
    tree = (torch.ones(1), None, [torch.ones(2), [], (torch.ones(3),)], {"b": 1.5, "a": None},
            [[torch.ones(4)]])
    leaves, spec = _pytree.tree_flatten(tree)
    built = _builder(spec)(iter(leaves))
    again, spec_again = _pytree.tree_flatten(built)
    assert spec_again == spec and all(x is y for x, y in zip(again, leaves))
    assert list(built[3]) == ["b", "a"] and type(built) is tuple and built[1] is None
