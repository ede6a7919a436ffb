"""The second trust sweep, the newcomer's part: what a new user trips over, and messages
that pointed the wrong way.  One test per class of defect, each asserting the message."""

import subprocess
import sys

import numpy as np
import pytest

import nnx
from nnx.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- submodules named in the guide work after a plain `import nnx` ------------------------

def test_submodules_load_on_first_access_and_the_core_import_stays_light():
    code = ("import sys, nnx; before = set(sys.modules); "
            "assert not {'nnx.models', 'nnx.distributed', 'nnx.testing'} & before, before; "
            "print(nnx.models.cnn.__name__, nnx.distributed.DataParallel.__name__, "
            "nnx.testing.check_module.__name__); "
            "print(sorted(m for m in set(sys.modules) - before if not m.startswith('nnx')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "cnn DataParallel check_module"
    assert out[1] == "[]"                 # no third-party library loaded by the access
    with pytest.raises(AttributeError, match="module 'nnx' has no attribute 'modles'"):
        nnx.modles


# -- a path that is a file where a folder is expected -------------------------------------

def test_a_file_given_as_the_data_folder_is_called_a_file(capsys, tmp_path, monkeypatch):
    f = tmp_path / "mnist.gz"
    f.write_bytes(b"")
    code, _, err = run(capsys, "train", "--data", str(f), "--epochs", "1")
    assert code == 2
    assert f"{f} (the path argument) is a file, not a folder; name the folder" in err
    monkeypatch.setenv("NNX_DATA", "/dev/null")
    with pytest.raises(nnx.DatasetError, match=r"/dev/null \(NNX_DATA\) is a file, not a "
                                               r"folder; name the folder that holds"):
        nnx.datasets.load_mnist()
    with pytest.raises(nnx.DatasetError, match="the folder .*nothing.* does not exist"):
        nnx.datasets.load_mnist(tmp_path / "nothing")


# -- advice names only options the command accepts ----------------------------------------

@pytest.mark.parametrize("model, advice", [("cnn", "lower --batch-size"),
                                           ("linear", "lower --batch-size"),
                                           ("mlp", "lower --hidden, --layers or --batch-size")])
def test_out_of_memory_advice_names_options_the_model_takes(capsys, model, advice):
    code, _, err = run(capsys, "train", "--model", model, "--batch-size", "10000000000")
    assert code == 2 and err.rstrip().endswith(advice), err


# -- one example without a batch axis ---------------------------------------------------

def test_reshape_of_one_unbatched_row_says_to_add_a_batch_axis():
    with pytest.raises(nnx.ShapeError, match=r"input has shape \(784,\), one example without "
                                             r"a batch axis; add one: .*\(1, 784\)"):
        nnx.Reshape((1, 28, 28)).fprop(nnx.asarray(np.ones(784, "float32")))


# -- a parameter-free module given grad_output on another device --------------------------

@pytest.mark.parametrize("module", [nnx.Flatten(), nnx.MaxPool2D(2), nnx.Reshape((4,))],
                         ids=repr)
def test_grad_output_on_another_device_is_a_device_error(module):
    pytest.importorskip("array_api_strict")
    x = nnx.asarray(np.ones((2, 1, 2, 2), "float32"), device="strict")
    y = module.fprop(x)
    g = nnx.asarray(np.ones(tuple(y.shape), "float32"), device="strict:device1")
    with pytest.raises(nnx.DeviceError, match=r"bprop: grad_output is on strict:device1 but "
                                              r"fprop's input was on strict; move grad_output "
                                              r"there: nnx.asarray\(g, device='strict'\)"):
        module.bprop(g)


# -- device strings ignore case ---------------------------------------------------------

@pytest.mark.parametrize("spec, canonical", [("CPU", "cpu"), ("Strict", "strict"),
                                             ("STRICT:Device1", "strict:device1"),
                                             ("TORCH:CPU", "torch:cpu"), ("Jax:CPU", "jax:cpu")])
def test_device_strings_ignore_case(spec, canonical):
    listed = nnx.devices()            # an unavailable backend: by its main device string
    reason = listed.get(canonical, "not listed")
    if reason is not None:
        pytest.skip(reason)
    assert str(nnx.backends.resolve(spec)) == canonical


# -- the pytest plugin: a user's own parametrisation, state put back, nnx's frames hidden --

USER_TESTS = '''
import pytest
import nnx
from nnx.testing import check_module


class WrongCube(nnx.Module):
    def fprop(self, x):
        self.x = x
        y = x * x * x
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, g, *, need_input_grad=True):
        self.check_grad(g)
        return self.x * self.x * g            # the 3 is missing


def test_wrong_cube():
    check_module(WrongCube, (4, 5), devices=["cpu"], dtypes=("float64",))


@pytest.mark.parametrize("nnx_device", ["cpu"], indirect=True)
def test_my_own_devices(nnx_device):
    nnx.set_default_dtype("float64")
    assert nnx_device == "cpu"


def test_after_it():
    assert nnx.get_default_dtype() == "float32"
'''


def test_plugin_takes_users_parametrize_restores_the_dtype_and_hides_nnx_frames(tmp_path):
    import os
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "no:randomly", "test_user.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout
    assert "1 failed, 2 passed" in out, out
    failure = out[out.index("test_wrong_cube ___"):out.index("short test summary")]
    assert "ModuleCheckError: check_module(WrongCube()): 1 check(s) failed" in failure
    assert "gradcheck on cpu in float64: FAILED" in failure
    assert "kit.py" not in failure and "def check_module" not in failure, failure
    assert len(failure.splitlines()) < 12, failure


# -- BatchNorm: a batch too small is refused before training; a damaged buffer at load ----

def _bn_fit(n, batch_size):
    nnx.seed(0)
    net = nnx.Sequential(nnx.Linear(3, 4), nnx.BatchNorm(4), nnx.Linear(4, 2))
    x = nnx.asarray(np.random.default_rng(0).normal(size=(n, 3)))
    t = nnx.asarray(np.arange(n) % 2)
    return nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1), x, t, epochs=1,
                   batch_size=batch_size, verbose=False)


@pytest.mark.parametrize("n, batch_size, message", [
    (11, 5, r"fit: the last batch of each epoch holds 1 example \(11 rows, batch_size 5\), but "
            r"BatchNorm\(4.*\) needs 2 or more in training .*drop 1 row: x\[:10\]"),
    (10, 1, r"fit: batch_size 1 is too small: BatchNorm\(4.*needs 2 or more .*batch_size >= 2"),
    (1, 5, r"fit: x holds 1 example, but BatchNorm\(4.*needs 2 or more"),
])
def test_a_batch_too_small_for_batchnorm_is_refused_before_training(n, batch_size, message):
    with pytest.raises(nnx.ArgumentError, match=message):
        _bn_fit(n, batch_size)


def test_batches_that_batchnorm_can_take_train():
    assert len(_bn_fit(10, 5)) == 1 and len(_bn_fit(3, 5)) == 1
    nnx.seed(0)                       # images: one example has H·W values per channel
    net = nnx.Sequential(nnx.Conv2D(1, 2, 3), nnx.BatchNorm(2), nnx.Flatten(),
                         nnx.Linear(32, 2))
    x = nnx.asarray(np.random.default_rng(0).normal(size=(11, 1, 6, 6)))
    assert nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1), x,
                   nnx.asarray(np.arange(11) % 2), epochs=1, batch_size=5, verbose=False)


def test_a_checkpoint_with_a_negative_running_var_is_refused_at_load(tmp_path):
    net = nnx.Sequential(nnx.Linear(3, 2), nnx.BatchNorm(2))
    nnx.save(net, tmp_path / "bn.npz")
    arrays = dict(np.load(tmp_path / "bn.npz"))
    arrays["1.running_var"] = np.array([1.0, -0.5], arrays["1.running_var"].dtype)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(nnx.CheckpointError, match=r"bad.npz: buffer 1.running_var holds "
                                                  r"negative values \(down to -0.5\)"):
        nnx.load(tmp_path / "bad.npz")


# -- fit trains with every loss nnx has, with metrics that fit the task -------------------

def _task(kind, n=60):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    if kind == "labels":
        return x, labels
    if kind == "one-hot":
        return x, np.eye(2)[labels]
    if kind == "regression":
        return x, x @ np.array([[1.0], [2.0], [-1.0]])
    return x, (x[:, :2] > 0).astype(np.float64)            # multi-label: 2 independent bits


LOSSES = [  # (loss, targets, classifies, an output layer after Linear(8, 2 or 1))
    (nnx.SoftmaxCrossEntropy, "labels", True, None),
    (nnx.SoftmaxCrossEntropy, "one-hot", True, None),
    (nnx.Hinge, "labels", True, None),
    (nnx.Hinge, "one-hot", True, None),
    (nnx.CrossEntropy, "labels", True, nnx.Softmax),
    (nnx.MSE, "regression", False, None),
    (nnx.BCEWithLogits, "multi-label", False, None),
]


@pytest.mark.parametrize("loss_class, kind, classifies, head", LOSSES,
                         ids=[f"{c.__name__}-{k}" for c, k, _, _ in LOSSES])
def test_fit_trains_with_every_loss(device, capsys, loss_class, kind, classifies, head):
    x, t = nnx.train.to_device(*_task(kind))
    outputs = 1 if kind == "regression" else 2
    nnx.seed(0)
    net = nnx.Sequential(nnx.Linear(3, 8), nnx.Tanh(), nnx.Linear(8, outputs),
                         *([head()] if head else []))
    lr = 0.02 if kind == "regression" else 0.2
    history = nnx.fit(net, loss_class(), nnx.SGD(net, lr=lr, momentum=0.9), x, t, epochs=4,
                      batch_size=10, x_test=x, t_test=t, verbose=2)
    out = capsys.readouterr().out
    first, last = history[0], history[-1]
    assert last.train_loss < first.train_loss
    if classifies:
        assert out.startswith("epoch     loss train acc test errors")
        assert last.train_accuracy > 0.8 and last.test_errors < 12 and last.test_loss is None
    else:
        assert out.startswith("epoch       loss  test loss")
        assert last.train_accuracy is None and last.test_errors is None
        assert 0 < last.test_loss < first.test_loss


@pytest.mark.parametrize("loss, t, message", [
    (nnx.MSE(), np.arange(60) % 2, r"fit: MSE\(\) needs floating targets of shape \(N, \.\.\.\) "
                                   r"like the network's output, got int64 of shape \(60,\)"),
    (nnx.MSE(), np.full((60, 1), np.nan), r"fit: the training targets contain NaN or infinite "
                                          r"values \(first at row 0\)"),
    (nnx.MSE(), np.zeros((59, 1)), r"fit: 60 inputs but 59 targets"),
    (nnx.SoftmaxCrossEntropy(), np.zeros((60, 2, 1)), r"needs integer class labels of shape "
                                                      r"\(N,\) or one-hot rows"),
])
def test_fit_says_which_targets_a_loss_needs(loss, t, message):
    nnx.seed(0)
    net = nnx.Sequential(nnx.Linear(3, 1))
    x = nnx.asarray(np.ones((60, 3)))
    with pytest.raises((nnx.ShapeError, nnx.ArgumentError), match=message):
        nnx.fit(net, loss, nnx.SGD(net, lr=0.1), x, nnx.asarray(t), epochs=1, verbose=False)


# -- nnx evaluate: the checkpoint is checked before the data; only the test set is read ---

def test_evaluate_checks_the_checkpoint_before_reading_data(capsys, tmp_path):
    (tmp_path / "cnn.csv").write_text("epoch,train_loss\n")
    code, _, err = run(capsys, "evaluate", str(tmp_path / "cnn.csv"), "--data",
                       str(tmp_path / "no-data-here"))
    assert code == 2 and "cnn.csv: not an nnx checkpoint" in err and "mnist" not in err, err


def test_evaluate_needs_only_the_test_files(capsys, tmp_path):
    from nnx.datasets import FILES
    rng = np.random.default_rng(0)
    header = lambda magic, *dims: (magic.to_bytes(4, "big")
                                   + b"".join(d.to_bytes(4, "big") for d in dims))
    (tmp_path / FILES[2]).write_bytes(header(0x803, 5, 28, 28)
                                      + rng.integers(0, 256, 5 * 784, np.uint8).tobytes())
    (tmp_path / FILES[3]).write_bytes(header(0x801, 5) + bytes([0, 1, 2, 3, 4]))
    nnx.seed(0)
    nnx.save(nnx.models.mlp(784, 10, [8]), tmp_path / "m.npz")
    with pytest.warns(nnx.datasets.DatasetWarning):          # valid files, unknown checksum
        data = nnx.datasets.load_mnist(tmp_path, train=False)
    assert data.x_train is None and data.y_train is None and data.x_test.shape == (5, 784)
    code, out, err = run(capsys, "evaluate", str(tmp_path / "m.npz"), "--data", str(tmp_path))
    assert code == 0, err
    assert out.splitlines()[-1].startswith("test errors: ") and out.endswith(" / 5\n"), out


# -- PReLU on any rank, per feature on axis 1 as in PyTorch -------------------------------

@pytest.mark.parametrize("shape, n", [((4, 5), 5), ((3, 2, 4, 4), 2), ((3, 2, 4, 4), 1),
                                      ((3, 2, 5), 2), ((6,), 1), ((2, 3, 2, 2, 2), 3)])
def test_prelu_of_any_rank_agrees_with_torch(shape, n):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    m = nnx.PReLU(n, init=0.2, dtype="float64")
    y, dx = m.fprop(nnx.asarray(x, dtype="float64")), None
    dx = m.bprop(nnx.asarray(g, dtype="float64"))
    ref = torch.nn.PReLU(n).double()
    with torch.no_grad():
        ref.weight.fill_(0.2)
    tx = torch.tensor(x, requires_grad=True)
    ref(tx).backward(torch.tensor(g))
    np.testing.assert_allclose(nnx.to_numpy(y), ref(tx).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(nnx.to_numpy(dx), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(nnx.to_numpy(m.da), ref.weight.grad.numpy(), rtol=1e-12)
    assert nnx.gradcheck(m, nnx.asarray(x, dtype="float64")).ok


@pytest.mark.parametrize("shape, n, want", [((4, 3), 5, r"\(batch, 5, \.\.\.\) \(one slope per "
                                                         r"feature, axis 1\)"),
                                            ((4,), 5, r"\(batch, 5, \.\.\.\)"),
                                            ((), 1, r"\(batch, \.\.\.\)")])
def test_prelu_names_the_shape_it_needs(shape, n, want):
    import re
    with pytest.raises(nnx.ShapeError, match=rf"input has shape {re.escape(str(shape))}, "
                                             rf"expected {want}"):
        nnx.PReLU(n).fprop(nnx.asarray(np.ones(shape, "float32")))


# -- wording: one line from the example, counts with their noun ---------------------------

def test_the_rbf_example_on_a_missing_backend_says_so_in_one_line():
    from conftest import REPO
    code = ("import runpy, sys; sys.modules['torch'] = None; "
            "sys.argv = ['rbf_regression.py', '--device', 'torch:cpu', '--steps', '2']; "
            f"runpy.run_path({str(REPO / 'examples' / 'rbf_regression.py')!r}, "
            f"run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("rbf_regression.py: error: device 'torch:cpu' is unavailable: "
                               "torch is not installed")


def test_counts_take_their_noun_in_the_singular_and_plural():
    import argparse
    from nnx import _checks
    from nnx.cli import _describe, build_parser, hyperparameters
    assert [_checks.count(n, "epoch") for n in (0, 1, 2, 1000)] == \
        ["0 epochs", "1 epoch", "2 epochs", "1,000 epochs"]
    args = build_parser().parse_args(["train", "--epochs", "1", "--lr", "0.1",
                                      "--momentum", "0", "--schedule", "constant"])
    assert ", 1 epoch, " in hyperparameters(args)
    assert _describe(nnx.Sequential(nnx.Tanh())) == "Tanh (0 parameters)"
    assert _describe(nnx.Sequential(nnx.PReLU())) == "PReLU (1 parameter)"
    with pytest.raises(nnx.distributed.DistributedError, match="a batch of 1 example cannot"):
        nnx.distributed.shard(nnx.asarray([[1.0]]), rank=0, size=2)


# -- plots: the title fits, every point shows, the legend covers none, the run is named ----

def _drawn(monkeypatch, draw):
    """The figure ``draw()`` saves, kept open for inspection."""
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    draw()
    (fig,) = figures
    fig.canvas.draw()
    return fig


def _check_layout(fig):
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    title = fig._suptitle.get_window_extent(renderer)
    assert page.x0 <= title.x0 and title.x1 <= page.x1 and title.y1 <= page.y1, "title clipped"
    for ax in fig.axes:
        assert ax.get_legend() is None                    # no legend on top of the points
        for line in ax.get_lines():
            assert line.get_marker() not in (None, "None", ""), line.get_label()
            xs = line.get_xdata()
            lo, hi = ax.get_xlim()
            assert all(lo < x < hi for x in xs), "a point on the panel's edge"
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)


@pytest.mark.parametrize("batches", [[100], [100, 300]])
def test_the_benchmark_plot_shows_every_point_and_names_its_run(monkeypatch, tmp_path, batches):
    from nnx.benchmark import report
    rows = [{"model": "mlp", "mode": mode, "dtype": "float32", "batch": b, "impl": impl,
             "label": label, "samples_per_s": speed * b}
            for mode in ("train", "infer") for b in batches
            for impl, label, speed in (("nnx", "nnx cpu", 10), ("torch", "torch eager", 5),
                                       (report.FLOOR, "matmul floor [cpu]", 20))]
    meta = {"cpu": "A Processor With A Rather Long Name Indeed (R)", "blas": [],
            "date": "2026-12-01T08:00:00+00:00", "git_commit": "abc1234", "host": "box"}
    fig = _drawn(monkeypatch, lambda: report.plot(str(tmp_path / "b.png"), rows, meta))
    _check_layout(fig)
    assert "2026-12-01T08:00:00+00:00" in fig._suptitle.get_text() and "abc1234" in \
        fig._suptitle.get_text()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == \
        ["nnx cpu", "torch eager", "matmul floor [cpu]"]


def test_the_training_plot_of_one_epoch_shows_its_points_and_its_run(monkeypatch, tmp_path):
    from nnx.cli import _plot
    history = [nnx.EpochStats(1, 0.35, 0.9, 420, 10000, 0.1, 3.0)]
    fig = _drawn(monkeypatch, lambda: _plot(history, str(tmp_path / "c.png"),
                                            "nnx train --model mlp: sgd lr 0.1, 1 epoch"))
    _check_layout(fig)
    assert fig._suptitle.get_text() == "nnx train --model mlp: sgd lr 0.1, 1 epoch"
