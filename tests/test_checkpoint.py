"""Checkpoints: round trip on every backend, atomic writes, clear errors for bad files."""

import json
import zipfile

import numpy as np
import pytest

from nnx import backends
import nnx
from nnx import models


def make():
    nnx.seed(3)
    return nnx.Sequential(nnx.Linear(6, 5), nnx.PReLU(5), nnx.Dropout(0.2),
                          nnx.Sequential(nnx.Linear(5, 4), nnx.LeakyReLU(0.05)),
                          nnx.Linear(4, 3), nnx.LogSoftmax())


def test_round_trip(device, tmp_path):
    net = make()
    path = tmp_path / "net.npz"
    nnx.save(net, path, epoch=7)
    back = nnx.load(path)
    assert repr(back) == repr(net)
    x = nnx.asarray(np.random.default_rng(0).standard_normal((2, 6)))
    net.eval(), back.eval()
    np.testing.assert_array_equal(nnx.to_numpy(back(x)), nnx.to_numpy(net(x)))
    assert all(str(nnx.device_of(p)) == device for p in back.params())


def test_load_onto_another_device(tmp_path):
    with nnx.device("strict:device1"):
        net = models.mlp(4, 2, [3])
    nnx.save(net, tmp_path / "m.npz")
    back = nnx.load(tmp_path / "m.npz", device="cpu")
    assert {str(nnx.device_of(p)) for p in back.params()} == {"cpu"}


def test_float64_is_kept(tmp_path):
    net = nnx.Linear(2, 2, dtype="float64")
    nnx.save(net, tmp_path / "m.npz")
    assert str(nnx.load(tmp_path / "m.npz").W.dtype) == "float64"


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "net.npz"
    nnx.save(make(), path)
    before = path.read_bytes()

    def broken(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(backends.host.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        nnx.save(models.mlp(3, 2, []), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]      # no temporary left


def rewrite(path, meta=None, drop=None):
    """Copy the checkpoint with its metadata replaced or a member dropped."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    if drop:
        del members[drop]
    if meta is not None:
        import io
        buf = io.BytesIO()
        np.save(buf, np.array(json.dumps(meta)))
        members["__meta__.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def saved_meta(path):
    with np.load(path) as z:
        return json.loads(str(z["__meta__"]))


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "net.npz"
    nnx.save(models.mlp(4, 2, [3]), path)
    return path


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(nnx.CheckpointError, match=r"notes.txt: not an nnx checkpoint \(not an "
                                                  r"\.npz archive\)"):
        nnx.load(bad)
    with pytest.raises(nnx.CheckpointError, match=r"missing.npz: no such checkpoint file"):
        nnx.load(tmp_path / "missing.npz")


def test_truncated_file(saved):
    saved.write_bytes(saved.read_bytes()[:-100])
    with pytest.raises(nnx.CheckpointError, match=r"net.npz: not (a readable )?an? nnx "
                                                  r"checkpoint"):
        nnx.load(saved)


def test_plain_npz_without_metadata(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(3))
    with pytest.raises(nnx.CheckpointError, match=r"plain.npz: not an nnx checkpoint \(no nnx "
                                                  r"metadata\)"):
        nnx.load(tmp_path / "plain.npz")


def test_newer_version(saved):
    meta = saved_meta(saved)
    rewrite(saved, dict(meta, version=99))
    with pytest.raises(nnx.CheckpointError, match="checkpoint version 99 is not supported"):
        nnx.load(saved)


def test_unknown_module_type(saved):
    meta = saved_meta(saved)
    meta["architecture"]["children"][1]["type"] = "Wobble"
    rewrite(saved, meta)
    with pytest.raises(nnx.CheckpointError, match=r"net.npz: unknown module type 'Wobble'"):
        nnx.load(saved)


def test_missing_parameter(saved):
    rewrite(saved, drop="2.b.npy")
    with pytest.raises(nnx.CheckpointError, match=r"parameters \[.*\] do not match the "
                                                  r"architecture's \[.*'2.b'.*\]"):
        nnx.load(saved)


def test_shape_mismatch(saved):
    meta = saved_meta(saved)
    meta["architecture"]["children"][0]["args"]["_n_out"] = 5
    meta["architecture"]["children"][2]["args"]["_n_in"] = 5
    rewrite(saved, meta)
    with pytest.raises(nnx.CheckpointError, match=r"parameter 0.W has shape \(4, 3\), the "
                                                  r"architecture needs \(4, 5\)"):
        nnx.load(saved)


def test_loading_leaves_the_random_stream_alone(saved):
    nnx.seed(5)
    expected = nnx.to_numpy(nnx.Linear(3, 3).W)
    nnx.seed(5)
    nnx.load(saved)
    np.testing.assert_array_equal(nnx.to_numpy(nnx.Linear(3, 3).W), expected)


def test_load_in_another_dtype_and_odd_extras(tmp_path):
    path = tmp_path / "m.npz"
    nnx.save(nnx.Linear(2, 2, dtype="float64"), path, epoch=np.int64(3))
    assert saved_meta(path)["extra"] == {"epoch": 3}
    assert str(nnx.load(path, dtype="float32").W.dtype) == "float32"
    with pytest.raises(nnx.CheckpointError, match=r"is a folder; give a file name inside it"):
        nnx.save(nnx.Linear(2, 2), tmp_path)
