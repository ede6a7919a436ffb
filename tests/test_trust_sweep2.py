"""Issue 19, the second trust sweep: silent wrong answers, files, one clear error.

One test per class of defect, each asserting the message the user sees.
"""

import gzip
import json
import os
import re
import stat
import struct

import numpy as np
from array_api_compat import array_namespace
import pytest

import nnx
from nnx import datasets, models, outputs
from nnx.testing import ModuleCheckError, check_module
from nnx.cli import main
from nnx.benchmark.cli import main as bench_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def idx_bytes(array, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(folder, n_train=60, n_test=20):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28))
        labels = np.arange(n) % 10
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(images, datasets.IMAGES)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(labels, datasets.LABELS)))
    return folder


@pytest.fixture
def tiny_data(tmp_path):
    return write_idx(tmp_path / "data")


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def bench(capsys, *argv):
    code = bench_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    return err.strip() != "" and err.strip().count("\n") == 0 and "Traceback" not in err


def train_args(data, *more):
    return ["train", "--model", "linear", "--epochs", "1", "--batch-size", "20",
            "--data", data, "--no-malloc-tuning", *more]


TINY = ["--models", "mlp", "--batch-sizes", "10", "--backends", "numpy", "--repeats", "1",
        "--min-time", "0", "--warmup", "0", "--no-references"]


# == Files: one rule for every output, one atomic write ======================================
def users_file(path):
    """A file of the right extension that nnx did not write (a user's data)."""
    payload = {".png": b"\x89PNG\r\n\x1a\n my photo", ".pdf": b"%PDF-1.4 my thesis",
               ".svg": b"<?xml version='1.0'?><svg>my drawing</svg>",
               ".json": b'{"my": "data"}', ".csv": b"name,score\nann,3\n",
               ".jsonl": b'{"my": 1}\n', ".npz": b"PK my archive"}[path.suffix]
    path.write_bytes(payload)
    return payload


@pytest.mark.parametrize("option, name", [("--save", "m.npz"), ("--plot", "c.png"),
                                          ("--plot", "c.pdf"), ("--plot", "c.svg"),
                                          ("--log", "m.csv"), ("--log", "m.jsonl")])
def test_nnx_train_refuses_a_users_file_before_any_work(capsys, tiny_data, tmp_path, option,
                                                        name):
    path = tmp_path / name
    before = users_file(path)
    code, out, err = cli(capsys, *train_args(tiny_data, option, path))
    assert code == 2 and one_line(err)
    assert re.search(rf"{option} {re.escape(str(path))} exists and is not (an nnx|a plot "
                     rf"nnx drew).*refusing to overwrite it \(delete it or choose another "
                     rf"name\)", err), err
    assert "epoch" not in out and path.read_bytes() == before


@pytest.mark.parametrize("option, name", [("--json", "r.json"), ("--csv", "r.csv"),
                                          ("--plot", "r.png"), ("--plot", "r.svg")])
def test_nnx_bench_refuses_a_users_file_before_the_run(capsys, tmp_path, option, name):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    path = tmp_path / name
    before = users_file(path)
    code, out, err = bench(capsys, *TINY, option, path)
    assert code == 2 and one_line(err)
    assert f"{option} {path} exists and is not" in err and "refusing to overwrite it" in err
    assert out == "" and path.read_bytes() == before


def test_nnx_train_replaces_its_own_outputs(capsys, tiny_data, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    files = [tmp_path / n for n in ("m.npz", "c.png", "c.pdf", "m.csv")]
    for plot in ("c.png", "c.pdf"):
        argv = train_args(tiny_data, "--save", files[0], "--plot", tmp_path / plot,
                          "--log", files[3])
        for _ in range(2):                          # the second run replaces the first's
            code, out, err = cli(capsys, *argv)
            assert code == 0, err
    assert outputs.is_plot(files[1]) and outputs.is_plot(files[2])
    assert files[3].read_text().count("\n") == 2     # header + one epoch, not appended
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["data", "m.npz", "c.png", "c.pdf", "m.csv"])   # no temporaries left


def test_nnx_bench_replaces_its_own_outputs_atomically(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    paths = [tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.svg"]
    argv = [*TINY, "--json", paths[0], "--csv", paths[1], "--plot", paths[2]]
    old = os.umask(0o027)
    try:
        for _ in range(2):
            code, out, err = bench(capsys, *argv)
            assert code == 0, err
    finally:
        os.umask(old)
    assert json.loads(paths[0].read_text())["format"] == "nnx-bench"
    assert paths[1].read_text().splitlines()[0].startswith("model,mode,dtype,batch")
    assert outputs.is_plot(paths[2])
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in paths)   # as open() gives
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_a_file_that_appears_during_the_run_is_not_replaced(tmp_path):
    path = tmp_path / "c.png"
    outputs.check(path, "--plot", outputs.is_plot, "a plot nnx drew")   # free at the start
    users_file(path)                                                      # ... then not
    with pytest.raises(outputs.OutputError, match="appeared while nnx was working"):
        outputs.write_text(path, "x", ours=outputs.is_plot)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n my photo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]


def test_one_place_writes_every_output_file():
    """No CLI, checkpoint, log or plot code writes a file itself: nnx.outputs does."""
    writers = ["nnx/cli.py", "nnx/checkpoint.py", "nnx/epoch_log.py", "nnx/datasets.py",
               "bench/benchmark/cli.py", "bench/benchmark/report.py", "backends/host.py"]
    pattern = re.compile(r"open\([^)]*['\"][wax]b?\+?['\"]|savefig\(\s*path|os\.replace")
    for name in writers:
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            text = f.read()
        assert not pattern.search(text), f"{name} writes a file itself"
    assert not hasattr(nnx.backends.host, "write_atomically")


# == Silent wrong answers =====================================================================
def labels(n, classes=10):
    return nnx.asarray(np.arange(n) % classes)


def test_evaluate_and_fit_refuse_an_output_that_is_not_batch_by_classes():
    x = nnx.asarray(np.ones((12, 1, 8, 8)))
    net = nnx.Sequential(nnx.Conv2D(1, 2, 3))                      # no Flatten, no Linear
    with pytest.raises(nnx.ShapeError, match=re.escape(
            "evaluate: the network's output must be (batch, classes) scores, got shape "
            "(12, 2, 6, 6) for 12 inputs; add nnx.Flatten() and a Linear layer to the "
            "classes at the end")):
        nnx.evaluate(net, x, labels(12))
    with pytest.raises(nnx.ShapeError, match=re.escape(
            "fit: the network's output must be (batch, classes) scores, got shape "
            "(1, 2, 6, 6) for 1 input;")):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1), x, labels(12),
                epochs=1, verbose=False)
    flat = nnx.Sequential(nnx.Flatten(), nnx.Linear(64, 10))            # the fix: accepted
    assert 0 <= nnx.evaluate(flat, x, labels(12)) <= 12


def test_nnx_evaluate_of_a_conv_net_without_flatten_is_a_shape_error(capsys, tiny_data,
                                                                     tmp_path):
    path = tmp_path / "m.npz"
    nnx.save(nnx.Sequential(nnx.Reshape((1, 28, 28)), nnx.Conv2D(1, 2, 5)), path)
    code, out, err = cli(capsys, "evaluate", path, "--data", tiny_data)
    assert code == 2 and one_line(err) and "test errors" not in out
    assert "the network's output must be (batch, classes) scores, got shape (20, 2, 24, " \
           "24) for 20 inputs; add nnx.Flatten()" in err


def test_a_multi_output_graph_is_refused_by_fit_and_evaluate():
    g = nnx.Graph("x", [("a", nnx.Linear(3, 2), "x"), ("b", nnx.Linear(3, 2), "x")],
                  outputs=["a", "b"])
    x = nnx.asarray(np.ones((4, 3)))
    message = "the network returns 2 outputs, but a classifier needs one (batch, classes)"
    with pytest.raises(nnx.ShapeError, match=re.escape(f"evaluate: {message}")):
        nnx.evaluate(g, x, labels(4, 2))
    with pytest.raises(nnx.ShapeError, match=re.escape(f"fit: {message}")):
        nnx.fit(g, nnx.SoftmaxCrossEntropy(), nnx.SGD(g, lr=0.1), x, labels(4, 2), epochs=1,
                verbose=False)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_in_float16_keeps_its_statistics_in_float32(training):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference")
    values = np.zeros((4, 2))
    values[:, 0] = [0, 600, -600, 1000]               # |x - mean| > 256: (x - mean)^2 > 65504
    values[:, 1] = [1, 2, 3, 4]
    bn = nnx.BatchNorm(2, dtype="float16")
    ref = torch.nn.BatchNorm1d(2).double()
    if not training:
        bn.fprop(nnx.asarray(values, dtype="float16"))          # running statistics first
        ref(torch.tensor(values))
        bn.eval()
        ref.eval()
    y = bn.fprop(nnx.asarray(values, dtype="float16"))
    want = ref(torch.tensor(values)).detach().numpy()
    assert str(y.dtype) == "float16" and np.isfinite(nnx.to_numpy(y)).all()
    np.testing.assert_allclose(nnx.to_numpy(y).astype(np.float64), want, rtol=5e-3, atol=5e-3)
    assert str(bn.running_var.dtype) == "float32"
    np.testing.assert_allclose(nnx.to_numpy(bn.running_var), ref.running_var.numpy(), rtol=1e-4)
    g = bn.bprop(nnx.asarray(np.ones((4, 2)), dtype="float16"))
    assert str(g.dtype) == "float16" and np.isfinite(nnx.to_numpy(g)).all()
    assert str(bn.to(dtype="float16").running_var.dtype) == "float32"   # to() keeps them wide


class DoublesInPlace(nnx.Module):
    def fprop(self, x):
        self.out_shape = tuple(x.shape)
        x *= 2
        return x

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return grad_output * 2


class ReturnsFloat32(nnx.Module):
    def fprop(self, x):
        namespace = array_namespace(x)
        self.out_shape = tuple(x.shape)
        return namespace.astype(x * 2, namespace.float32)

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return grad_output * 2


def test_check_module_fails_a_module_that_changes_its_input_in_place():
    with pytest.raises(ModuleCheckError) as e:
        check_module(DoublesInPlace, (3, 4), devices=["cpu"], dtypes="float64")
    failed = {(r.check, r.detail) for r in e.value.report.failures}
    assert len(failed) == 1                  # gradcheck of the layer alone passes
    assert ("keeps its input", "fprop changed its input in place (x *= ..., x[...] = ...): the "
            "layer before it, and gradcheck of a network holding it, see the changed values; "
            "compute into a new array (y = x * 2)") in failed


def test_check_module_reports_a_dtype_change_as_one():
    with pytest.raises(ModuleCheckError) as e:
        check_module(ReturnsFloat32, (3, 4), devices=["cpu"], dtypes="float64")
    report = e.value.report
    assert [(r.check, r.status) for r in report.failures] == [("keeps the dtype", "FAILED")]
    assert report.failures[0].detail.startswith("the dtype changed: float64 input gave "
                                                "float32 output")
    assert [r.status for r in report.results if r.check == "gradcheck"] == ["skipped"]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"factory": nnx.ReLU(), "input_shape": (2, 3)}, nnx.ArgumentTypeError,
     "check_module: factory must build the module, got the module ReLU() itself; pass its "
     "class or a function, e.g. lambda: ReLU(...)"),
    ({"factory": nnx.ReLU, "input_shape": None, "x": "abc"}, nnx.ArgumentTypeError,
     "check_module: x must be an array or a (nested) list of numbers, got 'abc'"),
    ({"factory": nnx.ReLU, "input_shape": None, "x": [[1, 2], [3]]}, nnx.ArgumentTypeError,
     "check_module: x must be numbers of one rectangular shape"),
    ({"factory": nnx.ReLU, "input_shape": (10 ** 6, 10 ** 6)}, nnx.ArgumentError,
     "check_module: input_shape must hold at most 10,000,000 values"),
])
def test_check_module_refuses_bad_arguments_in_one_line(kwargs, error, message):
    factory = kwargs.pop("factory")
    shape = kwargs.pop("input_shape")
    with pytest.raises(error, match=re.escape(message)):
        check_module(factory, shape, devices=["cpu"], **kwargs)


@pytest.mark.parametrize("argv, message", [
    (["--batch-sizes", "2,2"], "--batch-sizes: 2 is given twice; name each batch size once"),
    (["--models", "mlp,mlp"], "--models: mlp is given twice; name each model once"),
    (["--batch-sizes", "²"], "argument --batch-sizes: '²' is not a whole number above 0"),
    (["--batch-sizes", "+3"], "'+3' is not a whole number above 0"),
])
def test_nnx_bench_refuses_repeats_and_odd_digits(capsys, argv, message):
    code, out, err = bench(capsys, *[a for a in TINY if a not in ("mlp", "10", "--models",
                                                                  "--batch-sizes")], *argv)
    assert code == 2 and one_line(err) and message in err, err


@pytest.mark.parametrize("values", [[1.0, 100.0], [3.0, 1.0, 2.0], [5.0] * 3 + [50.0]])
def test_bench_quartiles_lie_within_the_measured_values(values):
    from nnx.benchmark.timing import quartiles
    q1, q3 = quartiles(sorted(values))
    assert min(values) <= q1 <= q3 <= max(values)


def test_the_busy_machine_warning_uses_quartiles_within_the_data():
    from nnx.benchmark import report
    from nnx.benchmark.timing import quartiles
    q1, q3 = quartiles([1.0, 1.2])              # exclusive quantiles gave 0.95 .. 1.25
    row = {"label": "nnx", "batch": 10, "impl": "nnx", "median_ms": 1.1, "q1_ms": q1,
           "q3_ms": q3}
    lines = report.notes([row], {"versions": {}})
    assert not any(line.startswith("warning: wide spread") for line in lines)  # 14%, not 27%


@pytest.mark.parametrize("value, message", [
    ([[1, "2"]], "asarray: expected real numbers, got strings (dtype <U21)"),
    ([1, None], "asarray: expected real numbers, got Python objects (None, mixed types)"),
    ([1j], "asarray: expected real numbers, got complex numbers"),
    (np.array(["a"]), "asarray: expected real numbers, got strings"),
    ([[1, 2], [3]], "asarray: expected a rectangular nested list of numbers (every row of "
                    "one length), got rows of different lengths"),
])
def test_asarray_refuses_what_is_not_real_numbers(value, message):
    with pytest.raises(nnx.ArgumentTypeError, match=re.escape(message)):
        nnx.asarray(value)


def test_asarray_names_an_unreadable_dtype():
    torch = pytest.importorskip("torch", reason="a torch bfloat16 tensor")
    with pytest.raises(nnx.ArgumentTypeError, match=re.escape(
            "asarray: cannot read a Tensor of dtype torch.bfloat16")):
        nnx.asarray(torch.ones(2, dtype=torch.bfloat16), device="cpu")


def test_gradcheck_in_direction_mode_says_what_it_checked():
    result = nnx.gradcheck(nnx.Linear(3, 2, dtype="float64"),
                           nnx.asarray(np.ones((2, 3)), dtype="float64"), mode="direction")
    assert result.ok and "0 entries" not in str(result)
    assert str(result).startswith("gradcheck ok on cpu in float64: 1 random direction "
                                  "through the input and every parameter at once, worst abs")


# == One clear error, never a traceback =====================================================
def test_nnx_train_distributed_without_mpi4py_is_one_line(capsys, tiny_data, monkeypatch):
    from nnx.backends import mpi
    monkeypatch.setenv("NNX_MPI", "1")
    monkeypatch.setitem(__import__("sys").modules, "mpi4py", None)
    monkeypatch.setattr(mpi, "_world", None)
    code, out, err = cli(capsys, *train_args(tiny_data, "--distributed"))
    assert code == 1 and one_line(err)
    assert "started by an MPI launcher but mpi4py cannot be imported" in err


@pytest.mark.parametrize("spec", [["cpu"], 3, ("cpu",)])
def test_a_device_that_is_not_a_string_is_a_device_error(spec):
    message = re.escape(f"a device is a string such as ") + ".*" + re.escape(f"got {spec!r}")
    with pytest.raises(nnx.DeviceError, match=message):
        nnx.set_device(spec)
    with pytest.raises(nnx.DeviceError, match=message):
        nnx.asarray([1.0], device=spec)
    with pytest.raises(nnx.DeviceError, match=message):
        nnx.Linear(2, 2, device=spec)


def test_strict_no_x64_is_unavailable_with_its_reason(capsys):
    pytest.importorskip("array_api_strict", reason="array-api-strict's no_x64 device")
    from nnx import backends
    if "no_x64" not in backends.BACKENDS["strict"]._names():
        pytest.skip("this array-api-strict has no no_x64 device (later versions have it)")
    with pytest.raises(nnx.DeviceError, match="no_x64 device has no 64-bit integers, so "
                                              "argmax, integer sums and int64 labels fail"):
        nnx.asarray([1.0], device="strict:no_x64")
    code, out, err = cli(capsys, "devices")
    assert "strict:no_x64      unavailable: array-api-strict's no_x64 device has no 64-bit" in out


def fit_tiny(**kw):
    x = nnx.asarray(np.random.default_rng(0).standard_normal((40, 3)))
    net = nnx.Sequential(nnx.Linear(3, 2))
    return nnx.fit(net, nnx.SoftmaxCrossEntropy(), kw.pop("opt", None) or nnx.SGD(net, lr=0.1),
                   x, labels(40, 2), epochs=1, batch_size=10, verbose=False, **kw)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"distributed": True}, nnx.ArgumentTypeError,
     "fit: distributed=True needs the optimiser wrapped in nnx.distributed.DataParallel"),
    ({"progress": lambda steps: None}, nnx.ArgumentTypeError,
     "fit: progress(steps) must return an iterable over the steps (e.g. tqdm(steps)), got "
     "None"),
    ({"x_test": nnx.asarray(np.ones((0, 3))), "t_test": labels(0)}, nnx.ArgumentError,
     "fit: the test set is empty (x_test has 0 rows)"),
])
def test_fit_refuses_what_it_cannot_use_in_one_line(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        fit_tiny(**kwargs)


@pytest.mark.parametrize("call, error, message", [
    (lambda: nnx.summary(nnx.Linear(784, 2), input_shape=[(1, 784), (1, 784)]),
     nnx.ArgumentError, "summary: input_shape must be one shape for Linear, which takes 1 "
                        "input, got 2"),
    (lambda: nnx.datasets.load_mnist(kind=["mnist"]), nnx.datasets.DatasetError,
     "load_mnist: unknown dataset kind ['mnist']; use one of mnist, fashion-mnist"),
    (lambda: nnx.datasets.load_mnist(kind=b"mnist"), nnx.datasets.DatasetError,
     "load_mnist: unknown dataset kind b'mnist'"),
    (lambda: nnx.Adam(nnx.Linear(2, 2), betas={"a": 1}), nnx.ArgumentTypeError,
     "Adam: betas must be a pair (beta1, beta2), got {'a': 1}"),
])
def test_argument_types_are_checked(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_an_empty_split_is_one_dataset_error(capsys, tmp_path, command):
    data = write_idx(tmp_path / "d", n_test=0)
    ckpt = tmp_path / "m.npz"
    nnx.save(models.mlp(784, 10, []), ckpt)
    argv = train_args(data) if command == "train" else ["evaluate", ckpt, "--data", data]
    code, out, err = cli(capsys, *argv)
    assert code == 2 and one_line(err) and "test errors" not in out
    assert "t10k-images-idx3-ubyte.gz holds no images (0 in its header)" in err


def test_asarray_still_reads_extension_floats():
    jnp = pytest.importorskip("jax.numpy", reason="JAX's bfloat16 (an ml_dtypes float)")
    x = jnp.ones(2, dtype=jnp.bfloat16)
    assert str(nnx.asarray(x, device="cpu").dtype) == "float32"
    with pytest.raises(nnx.ArgumentTypeError, match="got records"):
        nnx.asarray(np.zeros(2, dtype=[("a", "f8")]))


class GradientInFloat32(nnx.Module):
    def fprop(self, x):
        self.out_shape = tuple(x.shape)
        return x * 2

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        namespace = array_namespace(grad_output)
        return namespace.astype(grad_output * 2, namespace.float32)


def test_check_module_reports_a_gradient_dtype_change_as_one():
    with pytest.raises(ModuleCheckError) as e:
        check_module(GradientInFloat32, (3, 4), devices=["cpu"], dtypes="float64")
    first = e.value.report.failures[0]
    assert (first.check, first.detail) == (
        "keeps the dtype", "the dtype changed: bprop's input gradient is float32 for float64 "
                           "input; compute it in the input's dtype")


def test_evaluate_refuses_an_empty_set():
    """0 errors out of 0 rows is no score: one clear error, not a perfect result."""
    net = nnx.Sequential(nnx.Linear(4, 3))
    x = nnx.asarray(np.zeros((0, 4)))
    t = nnx.asarray(np.zeros((0,), dtype=np.int64))
    with pytest.raises(nnx.NNXError, match="evaluate: x has 0 rows; give at least one example"):
        nnx.evaluate(net, x, t)
