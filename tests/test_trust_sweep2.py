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
import pytest

import nnx
from nnx import datasets, models, outputs
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
