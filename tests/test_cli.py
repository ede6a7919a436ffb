"""``nnx train`` / ``nnx evaluate``: output lines, exit codes, one-line errors."""

import subprocess
import sys

import pytest

from conftest import REPO
from nnx.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "-0.1"], "argument --lr: '-0.1' is not a number above 0"),
    (["train", "--lr", "inf"], "argument --lr: 'inf' is not a number above 0"),
    (["train", "--epochs", "0"], "argument --epochs: '0' is not a whole number above 0"),
    (["train", "--batch-size", "ten"], "argument --batch-size: 'ten' is not a whole number"),
    (["train", "--hidden", "1.5"], "argument --hidden: '1.5' is not a whole number"),
    (["train", "--save", "/nonexistent/m.npz"], "--save /nonexistent/m.npz: the folder "
                                                "/nonexistent does not exist"),
    (["train", "--momentum", "1.5"], "argument --momentum: '1.5' is not a number in [0, 1)"),
    (["train", "--model", "vgg"], "argument --model: invalid choice: 'vgg'"),
    (["train", "--optimizer", "adam", "--momentum", "0.9"], "--momentum is SGD's"),
    (["train", "--device", "gpu"], "unknown device 'gpu'"),
    (["train", "--device", "strict:device7"], "device 'strict:device7' is unavailable"),
    (["train", "--data", "/nonexistent"], "mnist files missing: train-images-idx3-ubyte[.gz]"),
    (["evaluate", "/nonexistent.npz", "--data", "/nonexistent"],
     "checkpoint /nonexistent.npz does not exist"),
    (["fly"], "argument command: invalid choice: 'fly'"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_devices_lists_cpu(capsys):
    code, out, _ = run(capsys, "devices")
    assert code == 0 and "cpu" in out and "available" in out


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "nnx.cli", "train", "--lr", "0"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().startswith("nnx train: error:")


@pytest.mark.mnist
def test_train_save_evaluate_plot(capsys, mnist_dir, tmp_path):
    ckpt, plot = tmp_path / "linear.npz", tmp_path / "curves.png"
    code, out, err = run(capsys, "train", "--model", "linear", "--epochs", "1", "--lr", "0.1",
                         "--data", str(mnist_dir), "--save", str(ckpt), "--plot", str(plot))
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("test errors: ") and last.endswith(" / 10000")
    errors = int(last.split()[2])
    assert errors < 1100                                 # one epoch of softmax regression
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run(capsys, "evaluate", str(ckpt), "--data", str(mnist_dir))
    assert code == 0 and out.strip() == f"test errors: {errors} / 10000"


@pytest.mark.mnist
def test_divergence_is_one_line_and_exit_1(capsys, mnist_dir, tmp_path):
    code, _, err = run(capsys, "train", "--model", "linear", "--epochs", "2", "--lr", "1e38",
                       "--data", str(mnist_dir), "--save", str(tmp_path / "m.npz"))
    assert code == 1 and err.count("\n") == 1
    assert "at epoch 1, step" in err and "lower the learning rate" in err
