"""Issue 10, files: outputs never clobber anything, checkpoints load or fail in one line,
the CLIs never print a traceback, and Fashion-MNIST is never MNIST in disguise.

The CLI cases run in-process through ``main([...])`` on a tiny IDX data set written here.
"""

import gzip
import json
import os
import stat
import struct
import time
import zipfile

import numpy as np
import pytest

import nnx
from nnx import checkpoint, datasets, models
from nnx.cli import main
from nnx.benchmark.cli import main as bench_main


# -- helpers ---------------------------------------------------------------------------------
def idx_bytes(array, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.fixture
def tiny_data(tmp_path):
    """A folder with four small, valid, gzipped IDX files (60 train and 20 test images)."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        images = rng.integers(0, 256, (n, 28, 28))
        labels = np.arange(n) % 10
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(images, datasets.IMAGES)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(labels, datasets.LABELS)))
    return folder


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    return err.strip().count("\n") == 0 and "Traceback" not in err and err.strip() != ""


def train_args(data, *more):
    return ["train", "--model", "linear", "--epochs", "1", "--batch-size", "20",
            "--data", data, "--no-malloc-tuning", *more]


# -- 1. outputs never collide, never clobber a file that is not theirs -----------------------
@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
def test_outputs_that_collide_are_a_usage_error(capsys, tiny_data, tmp_path, spelling):
    save = tmp_path / "m.png"
    plot = {"same": save, "dotted": tmp_path / "." / "m.png", "symlink": tmp_path / "l.png",
            "hardlink": tmp_path / "h.png"}[spelling]
    if spelling in ("symlink", "hardlink"):
        nnx.save(models.mlp(784, 10, []), save)
        (os.symlink if spelling == "symlink" else os.link)(save, plot)
    before = save.read_bytes() if save.exists() else None
    code, out, err = cli(capsys, *train_args(tiny_data, "--save", save, "--plot", plot))
    assert code == 2 and one_line(err)
    assert "--save and --plot name the same file" in err
    assert (save.read_bytes() if save.exists() else None) == before


@pytest.mark.parametrize("first, second", [("--log", "--save"), ("--plot", "--log")])
def test_the_metrics_log_may_not_collide_with_another_output(capsys, tiny_data, tmp_path,
                                                            first, second):
    path = tmp_path / ("m.png" if "--plot" in (first, second) else "m.csv")
    code, out, err = cli(capsys, *train_args(tiny_data, first, path, second, path))
    assert code == 2 and one_line(err)
    assert "name the same file" in err and not path.exists()


@pytest.mark.parametrize("option", ["--save", "--plot", "--data", "--log"])
def test_an_empty_path_is_a_usage_error(capsys, tiny_data, option):
    argv = train_args(tiny_data) + [option, ""]
    code, out, err = cli(capsys, *argv)
    assert code == 2 and one_line(err) and f"{option} is an empty path" in err


def test_save_refuses_to_overwrite_a_file_that_is_not_a_checkpoint(capsys, tiny_data, tmp_path):
    precious = tmp_path / "notes.npz"
    precious.write_text("my thesis")
    code, out, err = cli(capsys, *train_args(tiny_data, "--save", precious))
    assert code == 2 and one_line(err)
    assert "is not an nnx checkpoint; refusing to overwrite it" in err
    assert precious.read_text() == "my thesis"
    with pytest.raises(nnx.CheckpointError, match="refusing to overwrite it"):
        nnx.save(models.mlp(3, 2, []), precious)
    assert precious.read_text() == "my thesis"


def test_save_overwrites_an_nnx_checkpoint(capsys, tiny_data, tmp_path):
    ckpt = tmp_path / "m.npz"
    nnx.save(models.mlp(3, 2, []), ckpt)
    code, out, err = cli(capsys, *train_args(tiny_data, "--save", ckpt))
    assert code == 0, err
    assert nnx.load(ckpt).params()[0].shape == (784, 10)


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
def test_outputs_must_not_be_the_input_data(capsys, tiny_data, tmp_path, name):
    data_file = tiny_data / name
    before = data_file.read_bytes()
    code, out, err = cli(capsys, *train_args(tiny_data, "--save", data_file))
    assert code == 2 and one_line(err) and "is an input data file" in err
    link = tmp_path / "curves.png"
    os.symlink(data_file, link)
    code, out, err = cli(capsys, *train_args(tiny_data, "--plot", link))
    assert code == 2 and one_line(err) and "is an input data file" in err
    assert data_file.read_bytes() == before


@pytest.mark.parametrize("ext, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_plot_writes_the_format_its_extension_names(capsys, tiny_data, tmp_path, ext, magic):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    plot = tmp_path / f"curves.{ext.upper() if ext == 'pdf' else ext}"
    code, out, err = cli(capsys, *train_args(tiny_data, "--plot", plot))
    assert code == 0, err
    assert plot.read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["curves.jpg", "curves", "curves.npz"])
def test_plot_refuses_an_unknown_extension_up_front(capsys, tiny_data, tmp_path, name):
    code, out, err = cli(capsys, *train_args(tiny_data, "--plot", tmp_path / name))
    assert code == 2 and one_line(err) and "--plot: unknown image format" in err
    assert "epoch" not in out                             # refused before training


# -- 2. modes and temporaries ----------------------------------------------------------------
def test_files_get_the_mode_open_would_give_and_keep_theirs(tmp_path):
    old = os.umask(0o027)
    try:
        path = tmp_path / "m.npz"
        nnx.save(models.mlp(3, 2, []), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.chmod(path, 0o604)
        nnx.save(models.mlp(3, 2, []), path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o604
    finally:
        os.umask(old)


def dead_pid():
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_stale_temporaries_of_a_killed_save_are_removed_by_the_next_save(tmp_path):
    dead = tmp_path / f".m.npz.nnx-tmp-{dead_pid()}-a1b2c3"
    old = tmp_path / f".m.npz.nnx-tmp-{os.getpid()}-d4e5f6"
    live = tmp_path / f".x.npz.nnx-tmp-{os.getpid()}-g7h8i9"
    mine = tmp_path / ".m.npz.nnx-tmp-notes"                 # not one of ours: kept
    for p in (dead, old, live, mine):
        p.write_bytes(b"partial")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    nnx.save(models.mlp(3, 2, []), tmp_path / "other.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, mine.name, "other.npz"])


def test_the_temporary_is_named_after_the_file(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(os.path.basename(a)),
                                                     real(a, b)))
    nnx.save(models.mlp(3, 2, []), tmp_path / "m.npz")
    assert len(seen) == 1 and seen[0].startswith(f".m.npz.nnx-tmp-{os.getpid()}-")


# -- 3. save's own errors ----------------------------------------------------------------------
def test_save_into_a_missing_folder_names_the_users_path(tmp_path):
    path = tmp_path / "no" / "such" / "m.npz"
    with pytest.raises(nnx.CheckpointError) as e:
        nnx.save(models.mlp(3, 2, []), path)
    assert str(path) in str(e.value) and "nnx-tmp" not in str(e.value)
    assert "does not exist" in str(e.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_save_into_an_unwritable_folder_names_the_users_path(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o500)
    try:
        with pytest.raises(nnx.CheckpointError) as e:
            nnx.save(models.mlp(3, 2, []), folder / "m.npz")
    finally:
        os.chmod(folder, 0o700)
    assert str(folder / "m.npz") in str(e.value) and "nnx-tmp" not in str(e.value)


@pytest.mark.parametrize("path, message", [
    ("", "save: the path is empty"),
    (None, "save: expected a file path, got None"),
    (3, "save: expected a file path, got int"),
])
def test_save_refuses_bad_paths(path, message):
    with pytest.raises(nnx.CheckpointError, match=message):
        nnx.save(models.mlp(3, 2, []), path)


def test_save_refuses_a_non_module(tmp_path):
    with pytest.raises(nnx.CheckpointError, match="save: expected an nnx module, got dict"):
        nnx.save({"W": 1}, tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


# -- 4. hostile checkpoints --------------------------------------------------------------------
def write_checkpoint(path, meta, arrays=None):
    """A checkpoint-shaped .npz with any metadata (JSON-encoded unless it is bytes)."""
    import io
    members = {n: a for n, a in (arrays or {}).items()}
    with zipfile.ZipFile(path, "w") as z:
        for n, a in members.items():
            buf = io.BytesIO()
            np.save(buf, a)
            z.writestr(n + ".npy", buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, np.array(meta if isinstance(meta, str) else json.dumps(meta)))
        z.writestr("__meta__.npy", buf.getvalue())
    return path


def good_meta():
    net = models.mlp(4, 2, [3])
    return ({"format": "nnx-checkpoint", "version": 1, "architecture": net.architecture(),
             "dtype": "float32", "params": {n: list(p.shape) for n, p in net.named_params()},
             "extra": {}},
            {n: nnx.to_numpy(p) for n, p in net.named_params()})


class Raw(str):
    """Metadata text written as is (json.dumps cannot encode 5000 levels)."""


def deep(n):
    return Raw('{"type": "Sequential", "children": [' * n + '{"type": "Sequential"}'
               + ']}' * n)


def hostile():
    meta, arrays = good_meta()
    cases = {
        "meta is a list": ([1, 2], arrays, "the metadata is not a JSON object"),
        "meta is a string": ("\"hello\"", arrays, "the metadata is not a JSON object"),
        "architecture is a list": (dict(meta, architecture=[]), arrays,
                                   "architecture: expected an object"),
        "args is a list": (dict(meta, architecture=dict(meta["architecture"], args=[1])),
                           arrays, "architecture.args: expected an object"),
        "children is a dict": (dict(meta, architecture=dict(meta["architecture"],
                                                            children={"a": 1})),
                               arrays, "architecture.children: expected a list"),
        "type is a number": (dict(meta, architecture={"type": 5}), arrays,
                             "architecture.type: expected a module name"),
        "5000 deep": (Raw('{"format": "nnx-checkpoint", "version": 1, "params": {}, '
                          '"architecture": ' + deep(5000) + '}'), {}, "nested"),
        "Linear(1e6, 1e6)": (dict(meta, architecture={"type": "Linear", "args": {
            "_n_in": 1000000, "_n_out": 1000000}}, params={"W": [3, 2], "b": [2]}),
            {"W": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.float32)},
            "larger than the stored parameters"),
        "params is a list": (dict(meta, params=[]), arrays, "params: expected an object"),
        "param shape is text": (dict(meta, params=dict(meta["params"], **{"0.W": "4x3"})),
                                arrays, "params.0.W: expected a list of sizes"),
        "declared shape differs from stored": (
            dict(meta, params=dict(meta["params"], **{"0.W": [4, 4]})), arrays,
            "params.0.W: declared shape (4, 4) but the stored array has shape (4, 3)"),
        "undeclared array": (meta, dict(arrays, extra=np.zeros(3)), "do not match"),
        "dtype unknown": (dict(meta, dtype="complex256"), arrays, "dtype: 'complex256'"),
        "dtype is a list": (dict(meta, dtype=["float32"]), arrays, "dtype:"),
        "extra is a list": (dict(meta, extra=[]), arrays, "extra: expected an object"),
        "version is text": (dict(meta, version="1"), arrays, "version"),
        "integer array": (meta, dict(arrays, **{"0.W": np.zeros((4, 3), np.int64)}),
                          "0.W: stored as int64"),
        "bad constructor args": (dict(meta, architecture={"type": "Linear", "args": {
            "_n_in": "four", "_n_out": 3}}, params={}), {}, "cannot rebuild"),
    }
    return cases


@pytest.mark.parametrize("case", list(hostile()))
def test_a_hostile_checkpoint_gives_one_checkpoint_error(tmp_path, case):
    meta, arrays, message = hostile()[case]
    path = write_checkpoint(tmp_path / "bad.npz", meta, arrays)
    with pytest.raises(nnx.CheckpointError) as e:
        nnx.load(path)
    assert str(path) in str(e.value) and message in str(e.value)


@pytest.mark.parametrize("case", ["meta is a list", "args is a list", "children is a dict",
                                  "5000 deep", "Linear(1e6, 1e6)"])
def test_nnx_evaluate_of_a_hostile_checkpoint_is_one_line(capsys, tiny_data, tmp_path, case):
    meta, arrays, message = hostile()[case]
    path = write_checkpoint(tmp_path / "bad.npz", meta, arrays)
    code, out, err = cli(capsys, "evaluate", path, "--data", tiny_data)
    assert code in (1, 2) and one_line(err) and message in err


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_nnx_evaluate_works_in_the_checkpoints_dtype(capsys, tiny_data, tmp_path, dtype):
    path = tmp_path / "m.npz"
    nnx.save(models.mlp(784, 10, []).to(dtype=dtype), path)
    code, out, err = cli(capsys, "evaluate", path, "--data", tiny_data)
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("test errors: ") and last.endswith(" / 20")
    assert "nnx: note: mnist: the checksum is not the published mnist one" in out


# -- 5. the CLIs never print a traceback -------------------------------------------------------
@pytest.mark.parametrize("more, message", [
    (["--hidden", "1000000000"], "does not fit in memory"),
    (["--layers", "100000"], "does not fit in memory"),
    (["--model", "resmlp", "--hidden", "100000", "--layers", "3"], "does not fit in memory"),
])
def test_sizes_that_cannot_fit_are_refused_before_allocating(capsys, tiny_data, more, message):
    code, out, err = cli(capsys, "train", "--model", "mlp", "--data", tiny_data, *more)
    assert code == 2 and one_line(err) and message in err


HOSTILE_TRAIN = [
    ["--epochs", "nan"], ["--epochs", "1e3"], ["--epochs", "-1"], ["--epochs", ""],
    ["--hidden", "inf"], ["--hidden", "0"], ["--layers", "-3"], ["--batch-size", "1e100"],
    ["--lr", "nan"], ["--lr", ""], ["--lr", "1e400"], ["--momentum", "nan"],
    ["--momentum", "x"], ["--weight-decay", "-0.1"], ["--seed", "-1"], ["--seed", "1.5"],
    ["--device", ""], ["--device", "::"],
    ["--dtype", "float16"], ["--data", "/nonexistent"], ["--save", "/"], ["--plot", "/"],
    ["--save", "/proc/version"], ["--plot", "/dev/null"], ["--save", "\x00bad.npz"],
    ["--dataset", ""], ["--activation", ""],
]


@pytest.mark.parametrize("more", HOSTILE_TRAIN, ids=lambda a: " ".join(a) or "empty")
def test_hostile_train_arguments_end_in_one_line(capsys, tiny_data, more):
    argv = ["train", "--model", "linear", "--epochs", "1", "--data", tiny_data,
            "--no-malloc-tuning", *more]
    code, out, err = cli(capsys, *argv)
    assert code in (1, 2) and one_line(err), err


@pytest.mark.parametrize("argv", [
    ["evaluate"], ["evaluate", ""], ["evaluate", "/"], ["evaluate", "/dev/null"],
    ["evaluate", "/nonexistent.npz"], ["evaluate", "\x00.npz"], ["devices", "extra"],
    ["evaluate", "CKPT", "--device", "nope"], ["evaluate", "CKPT", "--data", ""],
    ["evaluate", "CKPT", "--data", "DAMAGED"],
], ids=lambda a: " ".join(a))
def test_hostile_evaluate_and_devices_arguments_end_in_one_line(capsys, tiny_data, tmp_path,
                                                                argv):
    ckpt = tmp_path / "m.npz"
    nnx.save(models.mlp(784, 10, []), ckpt)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in tiny_data.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes()[:-7])
    argv = [{"CKPT": ckpt, "DAMAGED": damaged}.get(a, a) for a in argv]
    code, out, err = cli(capsys, *argv)
    assert code in (1, 2) and one_line(err), err


def bench(capsys, *argv):
    started = time.perf_counter()
    code = bench_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, err, time.perf_counter() - started


TINY = ["--models", "mlp", "--batch-sizes", "10", "--backends", "numpy", "--repeats", "1",
        "--min-time", "0", "--warmup", "0", "--no-references"]


@pytest.mark.parametrize("case, message", [
    ("json is a folder", "--json DIR is a folder"),
    ("csv is a folder", "--csv DIR is a folder"),
    ("json and csv collide", "--json and --csv name the same file"),
    ("plot collides with json", "--json and --plot name the same file"),
    ("plot extension", "--plot: unknown image format"),
    ("json empty", "--json is an empty path"),
    ("unwritable", "is not writable"),
])
def test_bench_outputs_are_refused_before_the_run(capsys, tmp_path, case, message):
    if case == "unwritable" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    args = {"json is a folder": ["--json", tmp_path],
            "csv is a folder": ["--csv", tmp_path],
            "json and csv collide": ["--json", tmp_path / "r", "--csv", tmp_path / "." / "r"],
            "plot collides with json": ["--json", tmp_path / "r.png", "--plot",
                                        tmp_path / "r.png"],
            "plot extension": ["--plot", tmp_path / "r.gif"],
            "json empty": ["--json", ""],
            "unwritable": ["--json", ro / "r.json"]}[case]
    code, err, seconds = bench(capsys, *TINY, *args)
    os.chmod(ro, 0o700)
    assert code == 2 and one_line(err) and message.replace("DIR", str(tmp_path)) in err
    assert "mlp" not in err.replace(str(tmp_path), "")        # no case ran


@pytest.mark.parametrize("more", [
    ["--repeats", "nan"], ["--min-time", "nan"], ["--min-time", "inf"], ["--warmup", "-1"],
    ["--threads", "0"], ["--threads", "x"], ["--backends", ""], ["--backends", ",,"],
    ["--batch-sizes", "99999999999999"], ["--batch-sizes", "-1"], ["--models", ""],
    ["--backends", "strict:device9"], ["--repeats", str(10 ** 30)],
], ids=lambda a: " ".join(a))
def test_hostile_bench_arguments_end_in_one_line(capsys, more):
    code, err, seconds = bench(capsys, *TINY, *more)
    assert code in (1, 2) and one_line(err), err


# -- 6. Fashion-MNIST is not MNIST -------------------------------------------------------------
@pytest.mark.mnist
def test_mnist_files_are_not_fashion_mnist(capsys, mnist_dir):
    with pytest.raises(datasets.DatasetError, match="these are MNIST files, not fashion-mnist"):
        datasets.load_mnist(mnist_dir, kind="fashion-mnist")
    code, out, err = cli(capsys, "train", "--dataset", "fashion-mnist", "--data", mnist_dir,
                         "--epochs", "1")
    assert code == 2 and one_line(err) and "not fashion-mnist" in err


@pytest.mark.mnist
def test_mnist_files_are_recognised_as_mnist(mnist_dir):
    data = datasets.load_mnist(mnist_dir)
    assert data.x_train.shape == (60000, 784)
    assert datasets.identify(mnist_dir / "t10k-labels-idx1-ubyte.gz") == "mnist"


def test_known_files_are_told_apart_by_checksum(tmp_path, monkeypatch):
    labels = idx_bytes(np.arange(20) % 10, datasets.LABELS)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(labels)
    import hashlib
    digest = hashlib.sha256(labels).hexdigest()
    monkeypatch.setitem(datasets.SHA256["fashion-mnist"], datasets.FILES[3], digest)
    assert datasets.identify(path) == "fashion-mnist"
    with pytest.raises(datasets.DatasetError, match="fashion-mnist files, not mnist"):
        datasets._check_kind(str(path), datasets.FILES[3], "mnist")


def test_unknown_but_valid_files_are_accepted_with_a_note(tiny_data):
    with pytest.warns(UserWarning, match="checksum is not the published fashion-mnist one"):
        data = datasets.load_mnist(tiny_data, kind="fashion-mnist")
    assert data.x_train.shape == (60, 784)
