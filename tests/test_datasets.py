"""nnx.datasets: the IDX reader, the search order and the (offline-tested) download."""

import gzip
import hashlib
import os
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from nnx import datasets
from nnx.datasets import FILES, DatasetError, load_mnist, read_idx

from conftest import find_mnist, mnist_missing

REAL = None                           # set by the mnist fixture
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx(magic, dims, payload):
    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


def pixels(n, side=28):
    return bytes((7 * k) % 256 for k in range(n * side * side))


def labels(n):
    return bytes(k % 10 for k in range(n))


def split_files(n_train=5, n_test=3):
    """{file name: raw IDX bytes} of a small, valid MNIST-shaped dataset."""
    return {FILES[0]: idx(0x803, (n_train, 28, 28), pixels(n_train)),
            FILES[1]: idx(0x801, (n_train,), labels(n_train)),
            FILES[2]: idx(0x803, (n_test, 28, 28), pixels(n_test)),
            FILES[3]: idx(0x801, (n_test,), labels(n_test))}


def write(folder, files, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(blob) if gz else blob)
    return folder


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No NNX_DATA, and a cache folder inside tmp_path."""
    monkeypatch.delenv("NNX_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "nnx" / "mnist"


# -- the real MNIST files -----------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist():
    global REAL
    REAL = find_mnist()               # the product's search path, as the mnist_dir fixture
    if REAL is None:
        pytest.skip(mnist_missing())
    return load_mnist(REAL, download=False)


@pytest.mark.mnist
def test_real_mnist_shapes_range_and_label_counts(mnist):
    x_train, y_train, x_test, y_test = mnist
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0 and x_test.max() == 1.0
    assert np.bincount(y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == TEST_COUNTS


@pytest.mark.mnist
def test_read_idx_on_real_file(mnist):
    raw = read_idx(next(p for p in (REAL / (FILES[2] + ".gz"), REAL / FILES[2]) if p.is_file()))
    assert raw.shape == (10000, 28, 28) and raw.dtype == np.uint8
    np.testing.assert_allclose(raw.reshape(10000, -1) / 255, mnist.x_test, rtol=1e-6)


# -- small generated files ----------------------------------------------------------------

def load_generated(*args, **kwargs):
    """load_mnist of generated files: valid IDX whose checksum is not a published one, so
    they load with a DatasetWarning (asserted here, so that the test run shows none)."""
    with pytest.warns(datasets.DatasetWarning, match="the checksum is not the published"):
        return load_mnist(*args, **kwargs)


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_generated_files_load(tmp_path, gz):
    data = load_generated(write(tmp_path, split_files(), gz=gz), download=False)
    assert data.x_train.shape == (5, 784) and data.x_test.shape == (3, 784)
    assert data.x_train.dtype == np.float32 and data.y_test.dtype == np.int64
    expected = np.frombuffer(pixels(5), np.uint8).reshape(5, 784) / 255
    np.testing.assert_allclose(data.x_train, expected, rtol=1e-6)
    assert data.y_train.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name, gz", [("x.gz", False), ("x.idx", True), ("x", False)])
def test_read_idx_detects_gzip_by_content_not_name(tmp_path, name, gz):
    path = tmp_path / name
    blob = idx(0x803, (2, 3, 4), bytes(range(24)))
    path.write_bytes(gzip.compress(blob) if gz else blob)
    raw = read_idx(path)
    assert raw.shape == (2, 3, 4) and raw.dtype == np.uint8 and raw[1, 2, 3] == 23


DAMAGED = {   # which file, its bytes (raw), expected message fragment
    "bad magic": (0, b"\x12\x34\x08\x03" + b"\0" * 12, "bad magic number 0x12340803"),
    "wrong type byte": (0, idx(0xD03, (5, 28, 28), pixels(5)), "element type 0x0d"),
    "truncated header": (1, b"\0\0\x08\x01\0\0", "truncated header"),
    "tiny file": (1, b"\0\0", "truncated header"),
    "truncated data": (0, idx(0x803, (5, 28, 28), pixels(5))[:-10], "truncated"),
    "dims vs length": (2, idx(0x803, (2, 28, 28), pixels(3)), "has trailing bytes"),
    "count mismatch": (3, idx(0x801, (4,), labels(4)), "has 3 images but"),
    "images as labels": (1, idx(0x803, (5, 28, 28), pixels(5)), "expected a labels file"),
    "labels as images": (0, idx(0x801, (5,), labels(5)), "expected an images file"),
    "not 28x28": (2, idx(0x803, (3, 4, 4), pixels(3, 4)), "MNIST images are 28x28"),
    "label out of range": (3, idx(0x801, (3,), b"\x01\x0c\x02"), "labels must lie in 0..9"),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_damaged_file_names_file_and_problem(tmp_path, case):
    which, blob, fragment = DAMAGED[case]
    files = split_files()
    files[FILES[which]] = blob
    folder = write(tmp_path, files, gz=False)
    with pytest.raises(DatasetError) as info:
        load_mnist(folder, download=False)
    assert fragment in str(info.value)
    assert str(folder / FILES[which]) in str(info.value)


@pytest.mark.parametrize("damage", [lambda b: b[:len(b) // 2],
                                    lambda b: b[:20] + b"garbage" + b[27:]],
                         ids=["truncated", "mangled"])
def test_corrupt_gzip(tmp_path, damage):
    folder = write(tmp_path, split_files())
    path = folder / (FILES[0] + ".gz")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DatasetError, match="corrupt or truncated gzip") as info:
        load_mnist(folder, download=False)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(tmp_path / "nope")


# -- where the data comes from ------------------------------------------------------------

def test_search_order(monkeypatch, tmp_path, no_env):
    explicit = write(tmp_path / "explicit", split_files(2))
    env = write(tmp_path / "env", split_files(3))
    write(no_env, split_files(4))
    monkeypatch.setenv("NNX_DATA", str(env))
    assert len(load_generated(explicit).y_train) == 2
    assert len(load_generated().y_train) == 3
    monkeypatch.delenv("NNX_DATA")
    assert len(load_generated().y_train) == 4


def test_kind_subfolder(monkeypatch, tmp_path, no_env):
    write(tmp_path / "data" / "fashion-mnist", split_files(6))
    monkeypatch.setenv("NNX_DATA", str(tmp_path / "data"))
    assert len(load_generated(kind="fashion-mnist", download=False).y_train) == 6
    with pytest.raises(DatasetError, match="unknown dataset kind 'emnist'"):
        load_mnist(kind="emnist")


def test_missing_offline_says_what_where_and_how(monkeypatch, no_env):
    monkeypatch.setattr(datasets, "_fetch", pytest.fail)
    with pytest.raises(DatasetError) as info:
        load_mnist(download=False)
    message = str(info.value)
    assert all(name in message for name in FILES)
    assert str(no_env) in message and "NNX_DATA" in message and "download=True" in message


def test_named_folder_is_never_downloaded_into(monkeypatch, tmp_path, no_env):
    monkeypatch.setattr(datasets, "_fetch", pytest.fail)
    write(tmp_path / "mine", {k: v for k, v in split_files().items() if k != FILES[3]})
    with pytest.raises(DatasetError, match=f"missing: {FILES[3]}.*the path argument"):
        load_mnist(tmp_path / "mine")
    monkeypatch.setenv("NNX_DATA", str(tmp_path / "mine"))
    with pytest.raises(DatasetError, match="NNX_DATA"):
        load_mnist()


# -- download, without network ------------------------------------------------------------

def serve(monkeypatch, files, digest_of=lambda raw, gz: hashlib.sha256(raw).hexdigest()):
    """Mirror 1 is down, mirror 2 serves ``files`` gzipped; returns the URLs asked for."""
    gzipped = {name: gzip.compress(blob) for name, blob in files.items()}
    monkeypatch.setitem(datasets.SHA256, "mnist",
                        {name: digest_of(split_files()[name], gzipped[name]) for name in FILES})
    asked = []

    def fetch(url):
        asked.append(url)
        if url.startswith(datasets.MIRRORS["mnist"][0]):
            raise urllib.error.URLError("offline")
        return gzipped[url.rsplit("/", 1)[1][:-3]]
    monkeypatch.setattr(datasets, "_fetch", fetch)
    return asked


@pytest.mark.parametrize("digest", ["decompressed", "gzip"])
def test_download_verifies_and_writes_atomically(monkeypatch, no_env, digest):
    pick = (lambda raw, gz: hashlib.sha256(raw if digest == "decompressed" else gz).hexdigest())
    asked = serve(monkeypatch, split_files(), pick)
    replaced, real_replace = [], os.replace

    def spy(src, dst):
        assert os.path.dirname(src) == os.path.dirname(dst) and src != dst
        assert not os.path.exists(dst)          # the final name appears only when complete
        replaced.append(Path(dst).name)
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", spy)
    data = load_mnist()
    assert data.y_test.tolist() == [0, 1, 2]
    assert sorted(replaced) == sorted(n + ".gz" for n in FILES)
    assert sorted(os.listdir(no_env)) == sorted(n + ".gz" for n in FILES)
    assert len(asked) == 8 and asked[1] == datasets.MIRRORS["mnist"][1] + FILES[0] + ".gz"
    asked.clear()
    load_mnist()                                # cached now: nothing is fetched again
    assert asked == []


def test_checksum_mismatch_writes_no_bad_file(monkeypatch, no_env):
    files = split_files()
    files[FILES[1]] = idx(0x801, (5,), bytes(5))    # valid IDX, wrong content
    serve(monkeypatch, files)
    with pytest.raises(DatasetError) as info:
        load_mnist()
    message = str(info.value)
    assert "checksum mismatch" in message and "offline" in message and FILES[1] in message
    assert "download=True" not in message
    assert sorted(os.listdir(no_env)) == [FILES[0] + ".gz"]     # only the good one before it


def test_failed_write_leaves_no_temp_file(monkeypatch, no_env):
    serve(monkeypatch, split_files())

    def broken(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        load_mnist()
    assert os.listdir(no_env) == []
