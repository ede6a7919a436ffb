"""A hostile user against the CNN layers, Sequential's early stop, `nnx train --model cnn` and
nnx.testing.check_module: every misuse is a result that is right or one clear nnx error
(a one-line message and exit status 2 / 1 from the CLI), never a crash or a silent wrong answer.
"""

import json
import math

import numpy as np
import pytest

import nnx
from nnx import checkpoint
from nnx.errors import (ArgumentError, ArgumentTypeError, DTypeError, NNXError, ShapeError,
                        StateError)

from test_trust_files import cli, one_line, tiny_data  # noqa: F401  (the fixture)

CNN_LAYERS = {
    "Conv2D": lambda **kw: nnx.Conv2D(2, 3, 3, **kw),
    "MaxPool2D": lambda **kw: nnx.MaxPool2D(2),
    "AvgPool2D": lambda **kw: nnx.AvgPool2D(2),
    "BatchNorm": lambda **kw: nnx.BatchNorm(2, **kw),
    "Flatten": lambda **kw: nnx.Flatten(),
    "Reshape": lambda **kw: nnx.Reshape((2, 5, 5)),
}


def image(n=4, c=2, h=5, w=5, dtype="float64", seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)


def on(device, a):
    return nnx.asarray(a, device=device, dtype=str(a.dtype))


# -- 1a. constructor arguments ---------------------------------------------------------------
BAD_CONV = [
    ((True, 3, 3), {}, "c_in"), ((2, False, 3), {}, "c_out"), ((2.0, 3, 3), {}, "c_in"),
    (("2", 3, 3), {}, "c_in"), ((-1, 3, 3), {}, "c_in"), ((0, 3, 3), {}, "c_in"),
    ((2, 3, 0), {}, "kernel_size"), ((2, 3, -2), {}, "kernel_size"),
    ((2, 3, 2.5), {}, "kernel_size"), ((2, 3, True), {}, "kernel_size"),
    ((2, 3, "3"), {}, "kernel_size"), ((2, 3, (3,)), {}, "kernel_size"),
    ((2, 3, (3, 3, 3)), {}, "kernel_size"), ((2, 3, None), {}, "kernel_size"),
    ((2, 3, 3), {"stride": 0}, "stride"), ((2, 3, 3), {"stride": (1, True)}, "stride"),
    ((2, 3, 3), {"padding": -1}, "padding"), ((2, 3, 3), {"padding": 1.0}, "padding"),
    ((2, 3, 3), {"padding": (1, 1, 1)}, "padding"),
]


@pytest.mark.parametrize("args, kw, name", BAD_CONV)
def test_conv2d_refuses_bad_arguments_with_an_nnx_error(args, kw, name):
    with pytest.raises(ArgumentError, match=f"Conv2D.*{name}"):
        nnx.Conv2D(*args, **kw)


@pytest.mark.parametrize("cls", [nnx.MaxPool2D, nnx.AvgPool2D])
@pytest.mark.parametrize("args, name", [((0,), "kernel_size"), ((True,), "kernel_size"),
                                        ((2.0,), "kernel_size"), (("2",), "kernel_size"),
                                        (((2, 2, 2),), "kernel_size"), ((2, 0), "stride"),
                                        ((2, -1), "stride"), ((2, (1, False)), "stride")])
def test_pools_refuse_bad_arguments_with_an_nnx_error(cls, args, name):
    with pytest.raises(ArgumentError, match=f"{cls.__name__}.*{name}"):
        cls(*args)


@pytest.mark.parametrize("args, kw, name", [
    ((True,), {}, "n_features"), ((2.0,), {}, "n_features"), ((0,), {}, "n_features"),
    (("2",), {}, "n_features"), ((2,), {"momentum": math.nan}, "momentum"),
    ((2,), {"momentum": math.inf}, "momentum"), ((2,), {"momentum": -0.1}, "momentum"),
    ((2,), {"momentum": 1.5}, "momentum"), ((2,), {"momentum": True}, "momentum"),
    ((2,), {"momentum": "0.1"}, "momentum"), ((2,), {"eps": 0}, "eps"),
    ((2,), {"eps": -1e-5}, "eps"), ((2,), {"eps": math.nan}, "eps"),
    ((2,), {"eps": math.inf}, "eps"), ((2,), {"eps": True}, "eps")])
def test_batch_norm_refuses_bad_arguments(args, kw, name):
    with pytest.raises(ArgumentError, match=f"BatchNorm.*{name}"):
        nnx.BatchNorm(*args, **kw)


@pytest.mark.parametrize("shape", [(), (0, 3), (-1,), (2.0, 3), (True, 3), "13", None, 5])
def test_reshape_refuses_bad_shapes(shape):
    with pytest.raises(ArgumentError, match="Reshape"):
        nnx.Reshape(shape)


def test_huge_kernel_is_refused_at_fprop_not_a_crash():
    with pytest.raises(ShapeError, match="smaller than the kernel"):
        nnx.MaxPool2D(10**6).fprop(image(c=1))


# -- 1b. inputs: rank, channels, dtype, device ------------------------------------------------
@pytest.mark.parametrize("name", ["Conv2D", "MaxPool2D", "AvgPool2D"])
@pytest.mark.parametrize("shape", [(4, 2, 5), (4, 2, 5, 5, 1), (2,)])
def test_image_layers_refuse_the_wrong_rank(name, shape):
    m = CNN_LAYERS[name](dtype="float64", device="cpu") if name == "Conv2D" else \
        CNN_LAYERS[name]()
    with pytest.raises(ShapeError, match="4-D"):
        m.fprop(np.zeros(shape))


def test_conv_and_batch_norm_refuse_the_wrong_channel_count():
    with pytest.raises(ShapeError, match="channels"):
        nnx.Conv2D(2, 3, 3, dtype="float64", device="cpu").fprop(image(c=3))
    with pytest.raises(ShapeError, match=r"\(batch, 2"):
        nnx.BatchNorm(2, dtype="float64", device="cpu").fprop(image(c=3))


@pytest.mark.parametrize("name", ["Conv2D", "BatchNorm"])
def test_integer_and_wrong_float_inputs_are_dtype_errors(name):
    m = CNN_LAYERS[name](dtype="float64", device="cpu")
    for bad in (image().astype(np.int64), image().astype(np.float32), image() > 0):
        with pytest.raises(DTypeError, match="dtype"):
            m.fprop(bad)


@pytest.mark.parametrize("name", ["MaxPool2D", "AvgPool2D", "Flatten"])
def test_parameterless_layers_refuse_integer_inputs(name):
    """No parameters to compare with, but an integer or bool image has no gradient: a clear
    DTypeError (AvgPool2D's mean of ints, MaxPool2D's int gradient are nonsense)."""
    with pytest.raises(DTypeError, match="floating"):
        CNN_LAYERS[name]().fprop(image().astype(np.int32))


def test_an_input_on_another_device_is_a_device_error():
    conv = nnx.Conv2D(2, 3, 3, dtype="float64", device="strict")
    with pytest.raises(nnx.DeviceError):
        conv.fprop(image())
    bn = nnx.BatchNorm(2, dtype="float64", device="strict")
    with pytest.raises(nnx.DeviceError):
        bn.fprop(image())


# -- 1c. NaN / inf, float16, batch sizes, small inputs ----------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaN in, on purpose
@pytest.mark.parametrize("device", ["cpu", "strict"])
@pytest.mark.parametrize("name", ["Conv2D", "MaxPool2D", "AvgPool2D", "BatchNorm"])
def test_nan_in_the_input_reaches_the_output_of_its_windows(device, name):
    nnx.seed(0)
    m = CNN_LAYERS[name](dtype="float64", device=device)
    x = image()
    x[1, 0, 0, 0] = np.nan
    x[2, 1, 3, 3] = np.inf
    y = nnx.to_numpy(m.fprop(on(device, x)))
    if name == "BatchNorm":                 # batch statistics: the whole channel is NaN
        assert np.isnan(y[:, 0]).all() and np.isnan(y[:, 1]).all()
    else:
        assert np.isnan(y[1]).any() and not np.isfinite(y[2]).all()
        assert np.isfinite(y[0]).all() and np.isfinite(y[3]).all()


def test_max_pool_propagates_nan_in_the_window_like_the_reference():
    x = image(n=1, c=1, h=2, w=2)
    x[0, 0, 1, 1] = np.nan
    for device in ("cpu", "strict"):
        y = nnx.to_numpy(nnx.MaxPool2D(2).fprop(on(device, x)))
        assert np.isnan(y).all(), device


@pytest.mark.parametrize("name", ["Conv2D", "MaxPool2D", "AvgPool2D", "BatchNorm"])
def test_float16_matches_float64_within_float16_tolerance(name):
    nnx.seed(0)
    m64 = CNN_LAYERS[name](dtype="float64", device="cpu")
    x = image()
    y64 = nnx.to_numpy(m64.fprop(x))
    try:
        m16 = CNN_LAYERS[name](dtype="float16", device="cpu") if m64.params() else m64
        if m64.params():
            m16.set_params([p.astype(np.float16) for p in m64.params()])
        y16 = m16.fprop(x.astype(np.float16))
    except DTypeError as e:
        assert "float16" in str(e)
        return
    assert y16.dtype == np.float16
    np.testing.assert_allclose(y16.astype(np.float64), y64, rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("device", ["cpu", "strict"])
@pytest.mark.parametrize("name", list(CNN_LAYERS))
@pytest.mark.parametrize("train", [True, False])
def test_an_empty_batch_goes_through_fprop_and_bprop(device, name, train):
    m = CNN_LAYERS[name](dtype="float64", device=device)
    m.train(train)
    x = on(device, image(n=0))
    if name == "BatchNorm" and train:
        with pytest.raises(ShapeError, match="batch"):
            m.fprop(x)
        return
    y = m.fprop(x)
    assert y.shape[0] == 0
    dx = m.bprop(on(device, np.zeros(tuple(y.shape))))
    assert tuple(dx.shape) == tuple(x.shape)
    for g in m.grads():
        assert np.all(nnx.to_numpy(g) == 0)


@pytest.mark.parametrize("name", ["Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "Reshape"])
def test_batch_size_one_works(name):
    m = CNN_LAYERS[name](dtype="float64", device="cpu")
    y = m.fprop(image(n=1))
    assert m.bprop(np.ones(y.shape)).shape == (1, 2, 5, 5)


def test_batch_norm_batch_of_one_is_refused_in_training_and_works_in_eval():
    bn = nnx.BatchNorm(2, dtype="float64", device="cpu")
    with pytest.raises(ShapeError, match="eval"):
        bn.fprop(np.ones((1, 2)))
    bn.eval()
    assert bn.fprop(np.ones((1, 2))).shape == (1, 2)


@pytest.mark.parametrize("name", ["Conv2D", "MaxPool2D", "AvgPool2D"])
def test_an_input_smaller_than_the_kernel_is_a_shape_error(name):
    m = CNN_LAYERS[name](dtype="float64", device="cpu")
    with pytest.raises(ShapeError, match="smaller than the kernel"):
        m.fprop(image(h=1, w=1))


# -- 1d. strided, read-only inputs: fast path == reference ------------------------------------
def odd_inputs():
    base = image(n=3, c=2, h=7, w=9, seed=1)
    yield "contiguous", base
    yield "transposed", np.ascontiguousarray(base.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)
    yield "fortran", np.asfortranarray(base)
    big = image(n=6, c=4, h=14, w=18, seed=1)
    yield "sliced", big[::2, ::2, ::2, ::2]
    yield "negative strides", np.ascontiguousarray(base[::-1, :, ::-1, ::-1])[::-1, :, ::-1, ::-1]
    ro = base.copy()
    ro.flags.writeable = False
    yield "read-only", ro


CONV_CASES = [
    ("Conv2D", lambda d: nnx.Conv2D(2, 3, 3, stride=2, padding=1, dtype="float64", device=d)),
    ("Conv2D k1", lambda d: nnx.Conv2D(2, 3, 1, stride=2, dtype="float64", device=d)),
    ("MaxPool2D overlap", lambda d: nnx.MaxPool2D(3, 2)),
    ("MaxPool2D", lambda d: nnx.MaxPool2D(2)),
    ("AvgPool2D", lambda d: nnx.AvgPool2D((2, 3), (1, 2))),
    ("BatchNorm", lambda d: nnx.BatchNorm(2, dtype="float64", device=d)),
]


@pytest.mark.parametrize("kind, x", list(odd_inputs()), ids=[k for k, _ in odd_inputs()])
@pytest.mark.parametrize("name, make", CONV_CASES, ids=[n for n, _ in CONV_CASES])
def test_fast_path_matches_the_reference_on_odd_layouts(kind, x, name, make):
    results = {}
    for device in ("cpu", "strict"):
        nnx.seed(0)
        m = make(device)
        y = m.fprop(on(device, x) if device != "cpu" else x)
        g = np.random.default_rng(2).standard_normal(tuple(y.shape))
        g = np.asfortranarray(g) if device == "cpu" else on(device, g)
        dx = m.bprop(g)
        results[device] = [nnx.to_numpy(a) for a in [y, dx] + m.grads()]
    if kind == "read-only":
        assert not x.flags.writeable and np.array_equal(x, image(n=3, c=2, h=7, w=9, seed=1))
    for a, b in zip(results["cpu"], results["strict"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# -- 1e. grad_output and call order -----------------------------------------------------------
@pytest.mark.parametrize("name", list(CNN_LAYERS))
def test_bprop_before_fprop_is_a_state_error(name):
    with pytest.raises(StateError, match="before fprop"):
        CNN_LAYERS[name](dtype="float64", device="cpu").bprop(np.zeros((4, 3, 3, 3)))


@pytest.mark.parametrize("name", list(CNN_LAYERS))
def test_grad_output_of_the_wrong_shape_is_a_shape_error(name):
    m = CNN_LAYERS[name](dtype="float64", device="cpu")
    y = m.fprop(image())
    with pytest.raises(ShapeError, match="grad_output has shape"):
        m.bprop(np.zeros(tuple(y.shape) + (1,)))
    with pytest.raises(ShapeError, match="grad_output has shape"):
        m.bprop(np.zeros((5,) + tuple(y.shape)[1:]))


@pytest.mark.parametrize("name", ["Conv2D", "BatchNorm"])
def test_grad_output_of_the_wrong_dtype_is_a_dtype_error(name):
    m = CNN_LAYERS[name](dtype="float64", device="cpu")
    y = m.fprop(image())
    for bad in (np.zeros(y.shape, np.float32), np.zeros(y.shape, np.int64)):
        with pytest.raises(DTypeError, match="grad_output dtype"):
            m.bprop(bad)


@pytest.mark.parametrize("name", ["MaxPool2D", "AvgPool2D", "Flatten", "Reshape"])
def test_parameterless_layers_refuse_a_grad_output_whose_dtype_differs_from_the_input(name):
    m = CNN_LAYERS[name]()
    y = m.fprop(image())
    with pytest.raises(DTypeError, match="grad_output dtype"):
        m.bprop(np.zeros(y.shape, np.int64))


@pytest.mark.parametrize("shape", [(3, 5, 5), (2, 5, 6), (51,)])
def test_reshape_to_a_shape_of_the_wrong_size_is_a_shape_error(shape):
    with pytest.raises(ShapeError, match="do not fill"):
        nnx.Reshape(shape).fprop(image())


def test_flatten_of_a_one_dimensional_input_is_a_shape_error():
    with pytest.raises(ShapeError, match="Flatten"):
        nnx.Flatten().fprop(np.zeros(5))


# -- 2. Sequential.bprop(need_input_grad=False) ----------------------------------------------
def run_seq(net, x):
    y = net.fprop(x)
    return net.bprop(np.ones(y.shape), need_input_grad=False)


def test_sequential_without_parameters_still_returns_its_input_gradient_or_none():
    net = nnx.Sequential(nnx.Reshape((2, 5, 5)), nnx.MaxPool2D(2), nnx.Flatten())
    assert run_seq(net, image()) is None


def test_parameterless_layers_then_linear_return_none_and_fill_the_gradients():
    nnx.seed(0)
    net = nnx.Sequential(nnx.Flatten(), nnx.ReLU(), nnx.Linear(50, 3, dtype="float64"))
    ref = nnx.Sequential(nnx.Flatten(), nnx.ReLU(), nnx.Linear(50, 3, dtype="float64"))
    ref.set_params(net.params())
    x = image()
    assert run_seq(net, x) is None
    y = ref.fprop(x)
    ref.bprop(np.ones(y.shape))
    for a, b in zip(net.grads(), ref.grads()):
        np.testing.assert_allclose(a, b)


def test_nested_sequentials_and_a_graph_inside_return_none_with_the_right_gradients():
    nnx.seed(0)
    inner = nnx.Sequential(nnx.Flatten(), nnx.Sequential(nnx.Linear(50, 4, dtype="float64")))
    net = nnx.Sequential(nnx.Sequential(nnx.ReLU()), inner, nnx.Tanh(),
                         nnx.Linear(4, 2, dtype="float64"))
    twin = nnx.Sequential(nnx.Sequential(nnx.ReLU()),
                          nnx.Sequential(nnx.Flatten(),
                                         nnx.Sequential(nnx.Linear(50, 4, dtype="float64"))),
                          nnx.Tanh(), nnx.Linear(4, 2, dtype="float64"))
    twin.set_params(net.params())
    x = image()
    assert run_seq(net, x) is None
    y = twin.fprop(x)
    twin.bprop(np.ones(y.shape))
    for a, b in zip(net.grads(), twin.grads()):
        np.testing.assert_allclose(a, b)


def _graph_net():
    g = nnx.Graph(inputs="x")
    g.add("h", nnx.Linear(50, 3, dtype="float64"), "x").add("a", nnx.Tanh(), "h")
    g.add("sum", nnx.Add(), "h", "a").outputs("sum")         # "h" feeds two nodes
    return nnx.Sequential(nnx.Flatten(), nnx.ReLU(), g)


def test_a_graph_inside_a_sequential():
    """Flatten and ReLU before a Graph are skipped; the Graph's gradients are those of the
    full backward pass."""
    nnx.seed(0)
    net, ref = _graph_net(), _graph_net()
    ref.set_params(net.params())
    x = image()
    assert run_seq(net, x) is None
    y = ref.fprop(x)
    assert ref.bprop(np.ones(y.shape)).shape == x.shape
    for a, b in zip(net.grads(), ref.grads()):
        np.testing.assert_allclose(a, b)


def test_need_input_grad_true_still_returns_the_input_gradient():
    net = nnx.Sequential(nnx.Reshape((2, 5, 5)), nnx.Conv2D(2, 3, 3, dtype="float64"),
                         nnx.Flatten())
    y = net.fprop(image().reshape(4, 50))
    assert net.bprop(np.ones(y.shape)).shape == (4, 50)


# -- 3. the CLI ------------------------------------------------------------------------------
def cnn_args(data, *more):
    return ["train", "--model", "cnn", "--epochs", "1", "--batch-size", "20", "--data", data,
            "--no-malloc-tuning", *more]


def test_adam_with_momentum_is_a_usage_error(capsys, tiny_data):
    code, out, err = cli(capsys, *cnn_args(tiny_data, "--optimizer", "adam",
                                           "--momentum", "0.9"))
    assert code == 2 and one_line(err) and "--momentum" in err


def test_hidden_with_the_cnn_is_a_usage_error(capsys, tiny_data):
    """--hidden/--layers/--activation shape the MLPs only: silently ignoring them would train
    a network other than the one asked for."""
    for opt in (["--hidden", "5"], ["--layers", "3"], ["--activation", "tanh"]):
        code, out, err = cli(capsys, *cnn_args(tiny_data, *opt))
        assert code == 2 and one_line(err) and opt[0] in err and "cnn" in err


def test_cnn_in_float64_trains_then_saves_and_evaluates(capsys, tiny_data, tmp_path):
    save = tmp_path / "cnn.npz"
    code, out, err = cli(capsys, *cnn_args(tiny_data, "--dtype", "float64", "--save", save))
    assert code == 0, err
    assert save.exists()
    code, out, err = cli(capsys, "evaluate", save, "--data", tiny_data)
    assert code == 0, err
    assert "error" in out.lower() or "accuracy" in out.lower()


@pytest.mark.parametrize("log", ["", "dir/", "missing/sub/log.jsonl", "same"])
def test_odd_log_paths_are_usage_errors(capsys, tiny_data, tmp_path, log):
    if log == "same":
        log = tmp_path / "out.npz"
        extra = ["--save", log]
    else:
        extra = []
        if log == "dir/":
            (tmp_path / "d").mkdir()
            log = tmp_path / "d"
        elif log:
            log = tmp_path / log
    code, out, err = cli(capsys, *cnn_args(tiny_data, "--log", log, *extra))
    assert code in (1, 2) and one_line(err), err


@pytest.fixture
def saved_cnn(capsys, tiny_data, tmp_path):
    save = tmp_path / "cnn.npz"
    code, out, err = cli(capsys, *cnn_args(tiny_data, "--save", save))
    assert code == 0, err
    return save


def rewrite(path, change):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    out = path.with_name("damaged.npz")
    np.savez(out, **arrays)
    return out


def buffer_keys(arrays, word):
    return [k for k in arrays if word in k]


@pytest.mark.parametrize("damage", ["missing", "shape", "nan"])
def test_a_damaged_cnn_checkpoint_is_one_line_and_status_1(capsys, tiny_data, saved_cnn, damage):
    def change(arrays):
        keys = buffer_keys(arrays, "running_var")
        assert keys, sorted(arrays)
        if damage == "missing":
            for k in buffer_keys(arrays, "running_"):
                del arrays[k]
        elif damage == "shape":
            arrays[keys[0]] = arrays[keys[0]][:-1]
        else:
            arrays[keys[0]] = arrays[keys[0]].copy()
            arrays[keys[0]][0] = np.nan
    damaged = rewrite(saved_cnn, change)
    code, out, err = cli(capsys, "evaluate", damaged, "--data", tiny_data)
    assert code == 2 and one_line(err), err          # nnx's status for a bad checkpoint
    assert {"missing": "running_var", "shape": "running_var",
            "nan": "holds NaN or infinite"}[damage] in err


# -- 4. nnx.testing.check_module -------------------------------------------------------------
from nnx.testing import check_module  # noqa: E402


@pytest.mark.parametrize("kw, word", [
    ({"factory": 5, "input_shape": (2, 3)}, "factory"),
    ({"factory": lambda: 5, "input_shape": (2, 3)}, "factory"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": "2,3"}, "input_shape"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": (2, -3)}, "input_shape"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": ()}, "input_shape"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": 3}, "input_shape"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": (2, 3.0)}, "input_shape"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": (2, 3), "dtypes": ("float8",)},
     "float8"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": (2, 3), "dtypes": ()}, "dtypes"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": (2, 3), "devices": ["gpu9"]},
     "gpu9"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": (2, 3), "devices": [5]}, "devices"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": (2, 3), "samples": 0}, "samples"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": (2, 3), "samples": -1}, "samples"),
    ({"factory": lambda: nnx.Linear(3, 2), "input_shape": (2, 3), "samples": True},
     "samples"),
])
def test_check_module_refuses_hostile_arguments_with_one_nnx_error(kw, word):
    with pytest.raises(NNXError, match=word) as info:
        check_module(kw.pop("factory"), kw.pop("input_shape"), **kw)
    assert "\n" not in str(info.value)
