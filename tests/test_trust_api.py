"""A hostile user's sweep of the public API: every misuse gets one nnx error naming what was
wrong, never a raw Python error, a traceback from deep inside, or a silent wrong answer.

Each case is (call, expected error type, fragment of the message).  NumPy scalars count as
numbers; bools never do.
"""

import math

import numpy as np
import pytest

import nnx
from nnx import backends

NAN, INF = float("nan"), float("inf")


def net():
    nnx.seed(0)
    return nnx.Sequential(nnx.Linear(3, 4), nnx.Tanh(), nnx.Linear(4, 2))


def data(n=6):
    return nnx.asarray(np.random.default_rng(0).normal(size=(n, 3))), \
        nnx.asarray(np.arange(n) % 2)


def self_nested_graph():
    g = nnx.Graph("x")
    g.add("a", nnx.Sequential(nnx.Tanh(), g), "x")


def self_nested_graph_deep():
    g = nnx.Graph("x")
    inner = nnx.Graph("x").add("r", nnx.Residual(g), "x")
    g.add("a", inner, "x")


def fit(**kw):
    n = net()
    x, t = data()
    args = dict(loss=nnx.SoftmaxCrossEntropy(), opt=nnx.SGD(n, lr=0.1), epochs=1, batch_size=2)
    args.update(kw)
    return nnx.fit(n, args.pop("loss"), args.pop("opt"), x, t, **args)


def evaluate(batch_size=1000, t=None):
    x, labels = data()
    return nnx.evaluate(net(), x, labels if t is None else nnx.asarray(np.array(t)),
                        batch_size=batch_size)


ARG = nnx.ArgumentError         # a ValueError
ARGT = nnx.ArgumentTypeError    # a TypeError (and an ArgumentError)

CASES = [
    # optimisers
    (lambda: nnx.SGD(net(), lr=-1e-300), ARG, "SGD: lr must be a finite number >= 0, got -1e-300"),
    (lambda: nnx.SGD(net(), lr=-1.0), ARG, "SGD: lr must be a finite number >= 0"),
    (lambda: nnx.SGD(net(), lr=NAN), ARG, "SGD: lr must be a finite number >= 0, got nan"),
    (lambda: nnx.SGD(net(), lr=INF), ARG, "got inf"),
    (lambda: nnx.SGD(net(), lr=True), ARGT, "SGD: lr must be a number, got True"),
    (lambda: nnx.SGD(net(), lr="0.1"), ARGT, "SGD: lr must be a number, got '0.1'"),
    (lambda: nnx.SGD(net(), lr=None), ARGT, "SGD: lr must be a number, got None"),
    (lambda: nnx.SGD(net(), momentum=1.0), ARG, "SGD: momentum must lie in [0, 1), got 1.0"),
    (lambda: nnx.SGD(net(), momentum=NAN), ARG, "SGD: momentum must lie in [0, 1)"),
    (lambda: nnx.SGD(net(), momentum=False), ARGT, "SGD: momentum must be a number"),
    (lambda: nnx.SGD(net(), weight_decay=-1), ARG, "SGD: weight_decay must lie in [0, inf)"),
    (lambda: nnx.SGD(net(), weight_decay=INF), ARG, "SGD: weight_decay must lie in [0, inf)"),
    (lambda: nnx.SGD("net", lr=0.1), ARGT, "SGD: module must be an nnx Module, got str"),
    (lambda: nnx.Adam(net(), betas=0.9), ARGT, "Adam: betas must be a pair (beta1, beta2)"),
    (lambda: nnx.Adam(net(), betas=(0.9,)), ARGT, "Adam: betas must be a pair"),
    (lambda: nnx.Adam(net(), betas=(0.9, 1.0)), ARG, "Adam: betas[1] must lie in [0, 1)"),
    (lambda: nnx.Adam(net(), betas=("a", 0.9)), ARGT, "Adam: betas[0] must be a number"),
    (lambda: nnx.Adam(net(), eps=0), ARG, "Adam: eps must be a positive finite number"),
    (lambda: nnx.Adam(net(), eps=NAN), ARG, "Adam: eps must be a positive finite number"),
    (lambda: nnx.Adam(net(), eps="1e-8"), ARGT, "Adam: eps must be a number"),
    (lambda: nnx.Adam(net(), lr=NAN), ARG, "Adam: lr must be a finite number >= 0"),
    # layers
    (lambda: nnx.Linear(True, 3), ARGT, "Linear: n_in must be a positive integer, got True"),
    (lambda: nnx.Linear(2.5, 3), ARGT, "Linear: n_in must be a positive integer, got 2.5"),
    (lambda: nnx.Linear("3", 3), ARGT, "Linear: n_in must be a positive integer, got '3'"),
    (lambda: nnx.Linear(0, 3), ARG, "Linear: n_in must be a positive integer, got 0"),
    (lambda: nnx.Linear(3, -1), ARG, "Linear: n_out must be a positive integer, got -1"),
    (lambda: nnx.Linear(3, 2, device=5), nnx.DeviceError, "a device is a string"),
    (lambda: nnx.Linear(3, 2, dtype="int32"), nnx.DTypeError, "use one of float32"),
    (lambda: nnx.Dropout("0.5"), ARGT, "Dropout: p must be a number, got '0.5'"),
    (lambda: nnx.Dropout(1.0), ARG, "Dropout: p must lie in [0, 1), got 1.0"),
    (lambda: nnx.Dropout(NAN), ARG, "Dropout: p must lie in [0, 1), got nan"),
    (lambda: nnx.Dropout(-0.1), ARG, "Dropout: p must lie in [0, 1)"),
    (lambda: nnx.Dropout(True), ARGT, "Dropout: p must be a number, got True"),
    (lambda: nnx.LeakyReLU(NAN), ARG, "LeakyReLU: slope must be a finite number, got nan"),
    (lambda: nnx.LeakyReLU(INF), ARG, "LeakyReLU: slope must be a finite number, got inf"),
    (lambda: nnx.LeakyReLU("a"), ARGT, "LeakyReLU: slope must be a number"),
    (lambda: nnx.PReLU(0), ARG, "PReLU: num_parameters must be a positive integer, got 0"),
    (lambda: nnx.PReLU(True), ARGT, "PReLU: num_parameters must be a positive integer"),
    (lambda: nnx.PReLU(2.0), ARGT, "PReLU: num_parameters must be a positive integer"),
    (lambda: nnx.PReLU(1, init=NAN), ARG, "PReLU: init must be a finite number, got nan"),
    (lambda: nnx.L2Normalize(eps=0), ARG, "L2Normalize: eps must be a positive finite number"),
    (lambda: nnx.L2Normalize(eps="x"), ARGT, "L2Normalize: eps must be a number"),
    (lambda: nnx.Sequential(nnx.Tanh(), 3), ARGT, "Sequential: item 1 is a int"),
    # graph ops
    (lambda: nnx.Split([2.7, 1.2]), ARGT, "Split: sizes must be a list of two or more "
                                          "positive integers, got [2.7, 1.2]"),
    (lambda: nnx.Split(3), ARGT, "Split: sizes must be a list"),
    (lambda: nnx.Split([3]), ARG, "Split: sizes must be a list of two or more"),
    (lambda: nnx.Split([2, 0]), ARG, "Split: sizes must be a list of two or more positive"),
    (lambda: nnx.Split([True, 2]), ARGT, "Split: sizes must be a list"),
    (lambda: nnx.Scale(NAN), ARG, "Scale: c must be a finite number, got nan"),
    (lambda: nnx.Scale("2"), ARGT, "Scale: c must be a number, got '2'"),
    (lambda: nnx.Residual(3), ARGT, "Residual: expected an nnx module, got int"),
    (lambda: nnx.SquaredDistance(0, 3), ARG, "SquaredDistance: n_in must be a positive"),
    (lambda: nnx.SquaredDistance(2, 3, centre_range=(1.0, -1.0)), ARG,
     "SquaredDistance: centre_range must be a pair (low, high) of finite numbers with "
     "low <= high"),
    (lambda: nnx.SquaredDistance(2, 3, centre_range=1.0), ARGT,
     "SquaredDistance: centre_range must be a pair"),
    (lambda: nnx.Gaussian(2.5), ARGT, "Gaussian: n_centres must be a positive integer"),
    (lambda: nnx.Gaussian(3, width=NAN), ARG, "Gaussian: width must be a finite number"),
    (lambda: nnx.WeightedSum(0), ARG, "WeightedSum: n_centres must be a positive integer"),
    (lambda: nnx.RBFNetwork(2, 0), ARG, "RBFNetwork: n_centres must be a positive integer"),
    (lambda: nnx.RBFNetwork(True, 3), ARGT, "RBFNetwork: n_in must be a positive integer"),
    (lambda: nnx.RBFNetwork(2, 3, width=INF), ARG, "RBFNetwork: width must be a finite"),
    (self_nested_graph, ARG, "Graph.add('a'): the graph would contain itself"),
    (self_nested_graph_deep, ARG, "Graph.add('a'): the graph would contain itself"),
    (lambda: nnx.Graph(inputs=3), ARG, "Graph: input name 3 must be a non-empty string"),
    (lambda: nnx.Graph("x", nodes=[3]), ARG, "Graph: a node is (name, module, sources)"),
    (lambda: nnx.Graph("x").add("h", nnx.Tanh(), "x").outputs("nope"), ARG,
     "Graph.outputs: unknown input 'nope'"),
    (lambda: nnx.Graph("x").add("h", nnx.Tanh(), 3), ARGT, "inputs are node or input names"),
    # losses
    (lambda: nnx.CrossEntropy(eps=0), ARG, "CrossEntropy: eps must be a positive finite"),
    (lambda: nnx.Hinge(margin=NAN), ARG, "Hinge: margin must be a finite number"),
    (lambda: nnx.Hinge(margin="1"), ARGT, "Hinge: margin must be a number"),
    (lambda: nnx.CrossEntropy().fprop(nnx.asarray([[-2.0, 3.0]]), nnx.asarray(np.array([0]))),
     ARG, "CrossEntropy().fprop: inputs must be probabilities in [0, 1]"),
    (lambda: nnx.CrossEntropy().fprop(nnx.asarray([[-2.0, 3.0]]), nnx.asarray(np.array([0]))),
     ARG, "use SoftmaxCrossEntropy"),
    (lambda: nnx.Hinge().fprop(nnx.asarray([[1.0, 2.0]]), nnx.asarray([[0.3, 0.7]])),
     nnx.LabelError, "Hinge().fprop: targets must be one-hot"),
    # training and evaluation
    (lambda: evaluate(batch_size=0), ARG, "evaluate: batch_size must be a positive integer, got 0"),
    (lambda: evaluate(batch_size=-1), ARG, "evaluate: batch_size must be a positive integer"),
    (lambda: evaluate(batch_size=2.5), ARGT, "evaluate: batch_size must be a positive integer"),
    (lambda: evaluate(t=[0, 1, 2, 0, 1, 0]), nnx.LabelError, "labels must lie in [0, 2)"),
    (lambda: evaluate(t=[0, 1, -1, 0, 1, 0]), nnx.LabelError, "labels must lie in [0, 2)"),
    (lambda: nnx.evaluate("net", *data()), ARGT, "evaluate: net must be an nnx Module"),
    (lambda: fit(epochs=2.5), ARGT, "fit: epochs must be a positive integer, got 2.5"),
    (lambda: fit(epochs=0), ARG, "fit: epochs must be a positive integer, got 0"),
    (lambda: fit(epochs=True), ARGT, "fit: epochs must be a positive integer"),
    (lambda: fit(batch_size=0), ARG, "fit: batch_size must be a positive integer, got 0"),
    (lambda: fit(batch_size="10"), ARGT, "fit: batch_size must be a positive integer"),
    (lambda: fit(loss=nnx.Linear(2, 2)), ARGT, "fit: loss must be an nnx Loss"),
    (lambda: fit(opt="sgd"), ARGT, "fit: opt must be an nnx Optimizer"),
    (lambda: fit(x_test=data()[0]), ARG, "fit: give x_test and t_test together"),
    (lambda: fit(t_test=data()[1]), ARG, "fit: give x_test and t_test together"),
    (lambda: fit(lr_schedule=0.1), ARGT, "fit: lr_schedule must be callable"),
    (lambda: fit(on_epoch=1), ARGT, "fit: on_epoch must be callable"),
    (lambda: fit(lr_schedule=lambda e: -0.1), ARG,
     "fit: lr_schedule(1) must return a finite number >= 0, got -0.1"),
    (lambda: fit(lr_schedule=lambda e: NAN), ARG, "fit: lr_schedule(1) must return a finite"),
    (lambda: fit(lr_schedule=lambda e: INF), ARG, "fit: lr_schedule(1) must return a finite"),
    (lambda: fit(lr_schedule=lambda e: "x"), ARGT, "fit: lr_schedule(1) must return a number"),
    # functions
    (lambda: nnx.summary(3), ARGT, "summary: module must be an nnx Module, got int"),
    (lambda: nnx.summary(net(), input_shape="abc"), ARGT, "summary: input_shape must be"),
    (lambda: nnx.summary(net(), input_shape=(-1, 3)), ARG, "summary: input_shape must be"),
    (lambda: nnx.asarray(None), ARGT, "asarray: expected numbers"),
    (lambda: nnx.seed("abc"), ARGT, "seed: value must be a non-negative integer, got 'abc'"),
    (lambda: nnx.seed(1.5), ARGT, "seed: value must be a non-negative integer, got 1.5"),
    (lambda: nnx.seed(-1), ARG, "seed: value must be a non-negative integer, got -1"),
    (lambda: nnx.seed(True), ARGT, "seed: value must be a non-negative integer"),
    (lambda: nnx.permutation(-1), ARG, "permutation: n must be a non-negative integer"),
    (lambda: nnx.permutation(2.5), ARGT, "permutation: n must be a non-negative integer"),
    (lambda: nnx.set_default_dtype("int32"), nnx.DTypeError, "use one of float32"),
    (lambda: nnx.set_default_dtype(3), nnx.DTypeError, "use one of float32"),
    (lambda: nnx.set_device(3), nnx.DeviceError, "a device is a string"),
    (lambda: nnx.set_device("tpu"), nnx.DeviceError, "unknown device 'tpu'"),
    (lambda: nnx.device("tpu").__enter__(), nnx.DeviceError, "unknown device 'tpu'"),
    (lambda: net().to(dtype="int8"), nnx.DTypeError, "use one of float32"),
    (lambda: net().set_params([[1.0]]), nnx.ShapeError, "set_params: got 1 arrays for 4"),
]


@pytest.mark.parametrize("call, error, fragment", CASES,
                         ids=[f"{i}-{c[1].__name__}" for i, c in enumerate(CASES)])
def test_misuse_gets_one_clear_nnx_error(call, error, fragment):
    before = nnx.get_default_dtype()
    try:
        with pytest.raises(error) as info:
            call()
    finally:
        nnx.set_default_dtype(before)
        nnx.seed(0)
    assert isinstance(info.value, nnx.NNXError), type(info.value).__mro__
    assert fragment in str(info.value)


def test_argument_errors_keep_the_python_classes():
    """Code written against ``except ValueError`` / ``except TypeError`` keeps working."""
    assert issubclass(nnx.ArgumentError, ValueError)
    assert issubclass(nnx.ArgumentTypeError, TypeError)
    assert issubclass(nnx.ArgumentTypeError, nnx.ArgumentError)
    assert issubclass(nnx.DeviceError, nnx.NNXError) and issubclass(nnx.DeviceError, ValueError)
    assert nnx.DeviceError is backends.DeviceError


@pytest.mark.parametrize("make", [
    lambda n: nnx.SGD(n, lr=np.float32(0.1), momentum=np.float64(0.5)),
    lambda n: nnx.Adam(n, lr=np.float32(1e-3), betas=(np.float32(0.9), np.float64(0.999)),
                       eps=np.float32(1e-7)),
    lambda n: nnx.Adam(n, betas=[0.8, 0.9]),
])
def test_numpy_scalars_are_numbers(make):
    n = net()
    opt = make(n)
    assert type(opt.lr) is float
    x, t = data()
    hist = nnx.fit(n, nnx.SoftmaxCrossEntropy(), opt, x, t, epochs=np.int64(1),
                   batch_size=np.int32(3))
    assert len(hist) == 1 and math.isfinite(hist[0].train_loss)


def test_numpy_integers_are_sizes():
    layer = nnx.Linear(np.int64(3), np.int32(2))
    assert (layer.n_in, layer.n_out) == (3, 2) and type(layer.n_in) is int
    assert nnx.Split(np.array([1, 2])).sizes == [1, 2]
    assert nnx.Dropout(np.float32(0.25)).p == 0.25
    assert nnx.PReLU(np.int64(3)).num_parameters == 3
    nnx.seed(np.int64(3))


def test_evaluate_reports_nan_outputs_instead_of_counting_class_0(device):
    n = net()
    n[0].W *= float("nan")
    x, t = data()
    with pytest.raises(nnx.NNXError, match=r"evaluate: the network's output is not finite "
                                           r"for 6 of 6 rows"):
        nnx.evaluate(n, x, t)


def test_evaluate_still_counts(device):
    x, t = data()
    wrong = nnx.evaluate(net(), x, t, batch_size=4)
    assert wrong == nnx.evaluate(net(), x, t, batch_size=1)
    assert 0 <= wrong <= 6


def test_set_params_copies_the_users_arrays(device):
    n = nnx.Linear(2, 2)
    host = [np.ones((2, 2)), np.zeros(2)]
    for a in host:
        a.flags.writeable = False             # a read-only array works too
    mine = [nnx.asarray(a) for a in host]
    kept = [nnx.to_numpy(a).copy() for a in mine]
    n.set_params(mine)
    opt = nnx.SGD(n, lr=0.5)
    n.fprop(nnx.asarray(np.ones((3, 2))))
    n.bprop(nnx.asarray(np.ones((3, 2))))
    opt.step()
    for a, k in zip(mine, kept):
        np.testing.assert_array_equal(nnx.to_numpy(a), k)    # the user's arrays untouched
    assert not np.array_equal(nnx.to_numpy(n.W), kept[0])   # but the layer did learn


@pytest.mark.parametrize("make", [lambda n: nnx.SGD(n, lr=0.1, momentum=0.9),
                                  lambda n: nnx.Adam(n)])
def test_optimiser_state_follows_the_module(make):
    n = nnx.Linear(2, 2)
    opt = make(n)
    x, g = np.ones((3, 2)), np.ones((3, 2))

    def step(dtype):
        n.fprop(nnx.asarray(x, dtype=dtype))
        n.bprop(nnx.asarray(g, dtype=dtype))
        opt.step()
    step("float32")
    n.to(dtype="float64")
    step("float64")
    assert n.W.dtype == np.float64
    state = opt.state[0] if isinstance(opt.state[0], tuple) else (opt.state[0],)
    assert all(s.dtype == np.float64 for s in state)


def test_optimiser_state_follows_the_module_across_devices():
    if _unavailable("strict:device1"):
        pytest.skip(_unavailable("strict:device1"))
    n = nnx.Linear(2, 2)
    opt = nnx.SGD(n, lr=0.1, momentum=0.9)
    for spec in ("cpu", "strict:device1"):
        n.to(spec)
        with nnx.device(spec):
            n.fprop(nnx.asarray(np.ones((3, 2))))
            n.bprop(nnx.asarray(np.ones((3, 2))))
            opt.step()
    assert nnx.device_of(opt.state[0]) == nnx.device_of(n.W)


def _unavailable(spec):
    try:
        backends.resolve(spec)
    except nnx.DeviceError as e:
        return str(e).split(". Available here")[0]
    return None


@pytest.mark.parametrize("spec", ["strict:no_float64", "strict:no_x64"])
def test_float64_host_data_on_a_device_without_float64(spec):
    if _unavailable(spec):
        pytest.skip(_unavailable(spec))
    x = nnx.asarray(np.ones((2, 3)), device=spec)          # float64 host data -> float32
    assert "float32" in str(x.dtype)
    layer = nnx.Linear(3, 2, device=spec)
    assert layer.fprop(x).shape == (2, 2)
    with pytest.raises(nnx.DTypeError, match=f"device {spec} has no float64; use float32"):
        nnx.asarray(np.ones(2), device=spec, dtype="float64")


def test_float16_on_a_library_without_it_is_refused():
    if _unavailable("strict"):
        pytest.skip(_unavailable("strict"))
    with pytest.raises(nnx.DTypeError, match="device strict has no float16"):
        nnx.Linear(2, 2, device="strict", dtype="float16")


@pytest.mark.parametrize("loss", [nnx.SoftmaxCrossEntropy(), nnx.CrossEntropy(), nnx.Hinge()],
                         ids=repr)
def test_loss_with_scores_and_labels_apart(loss):
    if _unavailable("strict:device1"):
        pytest.skip(_unavailable("strict:device1"))
    z = nnx.asarray(np.full((2, 3), 1 / 3))
    t = nnx.asarray(np.array([0, 2]), device="strict:device1")
    with pytest.raises(nnx.DeviceError, match="targets is on strict:device1 but scores are on cpu"):
        loss.fprop(z, t)


PARAMETERLESS = [nnx.Tanh, nnx.ReLU, lambda: nnx.LeakyReLU(0.1), nnx.Sigmoid, nnx.Softplus,
                 nnx.Softmax, nnx.LogSoftmax, lambda: nnx.Dropout(0.0), nnx.L2Normalize,
                 nnx.Square, nnx.Exp, nnx.Log, nnx.Sin, nnx.Cos, lambda: nnx.Scale(2.0)]


@pytest.mark.parametrize("make", PARAMETERLESS, ids=lambda m: repr(m()))
def test_modules_without_parameters_name_a_stray_grad_output(make):
    """A module without parameters knows its input's device and dtype from fprop: a
    grad_output on another device, of another dtype, or an integer input gets nnx's own
    error, not the array library's."""
    pytest.importorskip("array_api_strict")
    m = make()
    x = nnx.asarray([[0.5, 1.0, 2.0], [0.25, 0.75, 1.5]], device="strict", dtype="float64")
    m.fprop(x)
    elsewhere = nnx.asarray([[1.0] * 3] * 2, device="strict:device1", dtype="float64")
    with pytest.raises(nnx.DeviceError, match=r"bprop: grad_output is on strict:device1 but "
                                              r"fprop's input was on strict"):
        m.bprop(elsewhere)
    with pytest.raises(nnx.DTypeError, match=r"bprop: grad_output dtype float32 differs "
                                             r"from the input's float64"):
        m.bprop(nnx.asarray([[1.0] * 3] * 2, device="strict", dtype="float32"))
    with pytest.raises(nnx.DTypeError, match=r"fprop: input dtype int64 is not a floating"):
        m.fprop(nnx.asarray([[1, 2, 3]], device="strict"))
