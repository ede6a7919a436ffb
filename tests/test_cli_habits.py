"""The conventions users expect of nnx and nnx-bench: --version, python -m nnx, a bare
nnx, --help with a line and a default for every option, one wording for bad numbers, the
checkpoint checked before the data, --data named in data errors, every hyper-parameter in
the header, device strings that --device accepts, the metrics log and fit's verbose rows."""

import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import nnx
from conftest import REPO
from nnx import backends
from nnx.benchmark import cli as bench_cli
from nnx.cli import build_parser, main
from nnx.epoch_log import MetricsLog


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _cmd(*args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_version_of_both_commands(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"nnx {nnx.__version__}"
    assert bench_cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"nnx-bench (nnx {nnx.__version__})"


def test_python_dash_m_nnx_and_a_bare_nnx_print_the_commands():
    r = _cmd("-m", "nnx")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("usage: nnx ") and r.stdout == ""
    for command in ("train", "evaluate", "devices"):
        assert f"\n    {command} " in r.stderr
    assert _cmd("-m", "nnx", "--version").stdout.strip() == f"nnx {nnx.__version__}"


def _parsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [("nnx", parser)] + [(f"nnx {n}", p) for n, p in sub.choices.items()] + [
        ("nnx-bench", bench_cli.build_parser())]


@pytest.mark.parametrize("name, parser", _parsers(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_has_a_help_line_and_shows_its_default(name, parser):
    text = parser.format_help()
    assert "``" not in text and "`" not in text, f"{name} --help has RST markup"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help, f"{name} {action.option_strings or action.dest} has no help line"
        if action.option_strings and action.default is not None and \
                action.default is not False and action.default != argparse.SUPPRESS:
            shown = parser.formatter_class(name)._get_help_string(action)
            assert "default" in shown.lower(), f"{name} {action.option_strings[0]}: {shown}"


@pytest.mark.parametrize("option, value, wanted", [
    ("--epochs", "0", "a whole number above 0"),
    ("--epochs", "ten", "a whole number"),
    ("--lr", "-1", "a number above 0"),
    ("--lr", "nan", "a number above 0"),
    ("--momentum", "1", "a number in [0, 1)"),
    ("--weight-decay", "x", "a number"),
])
def test_one_wording_for_bad_numbers_in_nnx_train(capsys, option, value, wanted):
    code, _, err = run(capsys, "train", option, value)
    assert code == 2
    assert err == (f"nnx train: error: argument {option}: '{value}' is not {wanted} "
                   f"(see nnx train --help)\n")


@pytest.mark.parametrize("option, value, wanted", [
    ("--repeats", "0", "a whole number above 0"),
    ("--repeats", "many", "a whole number"),
    ("--threads", "0", "a whole number above 0"),
    ("--warmup", "-1", "a whole number of 0 or more"),
    ("--min-time", "-0.5", "a number of 0 or more"),
    ("--batch-sizes", "0", "a whole number above 0"),
])
def test_the_same_wording_in_nnx_bench(capsys, option, value, wanted):
    assert bench_cli.main([option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nnx-bench: error: argument {option}: '{value}' is not {wanted} (")
    assert err.count("\n") == 1


def test_evaluate_names_a_missing_checkpoint_before_looking_for_data(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", str(tmp_path / "missing.npz"),
                       "--data", str(tmp_path / "nowhere"))
    assert code == 2
    assert err == f"nnx evaluate: error: checkpoint {tmp_path / 'missing.npz'} does not exist\n"
    code, _, err = run(capsys, "evaluate", str(tmp_path))
    assert code == 2 and "is a folder; give the checkpoint file" in err


def test_data_errors_name_data_and_a_missing_folder(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--data", str(tmp_path / "nowhere"))
    assert code == 2 and err.count("\n") == 1
    assert f"the folder {tmp_path / 'nowhere'} (the path argument) does not exist" in err
    assert "--data DIR" in err and "NNX_DATA" in err
    code, _, err = run(capsys, "train", "--data", str(tmp_path))
    assert code == 2 and f"looked in {tmp_path} (the path argument)" in err


def test_devices_prints_strings_that_device_accepts(capsys):
    code, out, _ = run(capsys, "devices")
    assert code == 0
    for line in out.strip().splitlines():
        spec, status = line.split()[0], line.split()[1]
        if status == "available":
            assert backends.resolve(spec).spec == spec
        else:
            assert status == "unavailable:"
            backends.split_spec(spec)           # a string --device knows, unavailable here
            with pytest.raises(nnx.DeviceError, match=f"device '{spec}' is unavailable"):
                backends.resolve(spec)


@pytest.mark.parametrize("name, message", [
    ("m.txt", "use a .csv or .jsonl file name"),
    ("m.json", "use a .csv or .jsonl file name"),
    ("no/such/m.csv", "does not exist; create it first"),
])
def test_log_refuses_other_formats_and_missing_folders(capsys, tmp_path, name, message):
    code, _, err = run(capsys, "train", "--log", str(tmp_path / name), "--data",
                       str(tmp_path / "nowhere"))
    assert code == 2 and message in err and err.count("\n") == 1


def test_log_never_clobbers_a_users_file(capsys, tmp_path):
    mine = tmp_path / "notes.csv"
    mine.write_text("my precious notes\n")
    code, _, err = run(capsys, "train", "--log", str(mine))
    assert code == 2 and "exists and is not an nnx metrics log with the same fields" in err
    assert mine.read_text() == "my precious notes\n"


@pytest.mark.parametrize("ext", [".csv", ".jsonl"])
def test_log_rows_are_on_disk_after_each_epoch(tmp_path, monkeypatch, ext):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / ("m" + ext)
    log = MetricsLog(str(path), ["epoch", "train_loss", "test_errors"])
    log.write(nnx.EpochStats(1, 0.5, 0.9, None, None, 0.1, 1.0))
    # not closed yet (as in a crash): the row is already in the file, and was fsync'd
    text = path.read_text()
    if ext == ".csv":
        assert list(csv.DictReader(text.splitlines())) == [
            {"epoch": "1", "train_loss": "0.5", "test_errors": ""}]
    else:
        assert json.loads(text) == {"epoch": 1, "train_loss": 0.5, "test_errors": None}
    assert len(synced) >= 1
    log.close()
    with pytest.raises(nnx.outputs.OutputError, match="exists and is not an nnx metrics log"):
        MetricsLog(str(path), ["epoch"])


def _tiny_fit(**kw):
    rng = np.random.default_rng(0)
    x = nnx.asarray(rng.standard_normal((40, 3)))
    t = nnx.asarray((rng.standard_normal(40) > 0).astype("int64"))
    net = nnx.Sequential(nnx.Linear(3, 2))
    return nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1), x, t, epochs=2,
                   batch_size=10, x_test=x, t_test=t, **kw)


def test_fit_prints_a_row_per_epoch_by_default(capsys):
    history = _tiny_fit()
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["epoch", "loss", "train", "acc", "test", "errors", "lr", "seconds"]
    assert [line.split()[0] for line in out[1:]] == ["1", "2"]
    assert out[2].split()[3] == str(history[1].test_errors)


def test_fit_verbose_false_is_silent(capsys):
    _tiny_fit(verbose=False)
    assert capsys.readouterr() == ("", "")


@pytest.mark.mnist
def test_train_header_and_log(capsys, mnist_dir, tmp_path):
    log = tmp_path / "m.jsonl"
    code, out, err = run(capsys, "train", "--model", "linear", "--epochs", "2", "--lr", "0.05",
                         "--momentum", "0.5", "--weight-decay", "0.001", "--schedule", "step",
                         "--data", str(mnist_dir), "--log", str(log))
    assert code == 0, err
    header = out.splitlines()[0]
    for setting in ("sgd lr 0.05 momentum 0.5", "weight decay 0.001", "schedule step",
                    "batch 100", "2 epochs", "float32", "mnist", "seed 0"):
        assert setting in header, header
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["lr"] == pytest.approx(
        nnx.train.schedule("step", 0.05, 2)(2))
    last = out.strip().splitlines()[-1]
    assert last == f"test errors: {rows[-1]['test_errors']} / 10000"


@pytest.mark.mnist
def test_adam_takes_its_own_learning_rate_default(capsys, mnist_dir):
    code, out, err = run(capsys, "train", "--model", "linear", "--epochs", "1",
                         "--optimizer", "adam", "--data", str(mnist_dir))
    assert code == 0, err
    assert "adam lr 0.001" in out.splitlines()[0], out.splitlines()[0]
