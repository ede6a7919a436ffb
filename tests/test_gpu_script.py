"""bench/gpu.sh --rehearse: the GPU run's script, end to end with cpu and torch:cpu standing
in for cuda:0 and torch:cuda:0, so that it cannot rot before a GPU comes."""

import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

from conftest import Started, early

REPO = pathlib.Path(__file__).resolve().parent.parent


def start_early():
    """The rehearsal (about half a minute of subprocesses) started with the run, beside the
    other tests (tests/conftest.py), where torch and jax are installed (else the test skips)."""
    if not all(importlib.util.find_spec(m) for m in ("torch", "jax")):
        return {}
    folder = tempfile.mkdtemp(prefix="nnx-gpu-rehearsal-")
    env = dict(os.environ, PYTHON=sys.executable)
    started = Started(["bash", str(REPO / "bench" / "gpu.sh"), "--rehearse", "--out",
                       os.path.join(folder, "results")], env=env)
    started.cleanup.append(folder)
    started.folder = pathlib.Path(folder)
    return {"rehearsal": started}


def test_gpu_script_rehearsal():
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    started = early(__name__, start_early)["rehearsal"]
    code, _, stderr = started.result(timeout=300)
    assert code == 0, f"exit status {code} (None: still running after 300 s)\n{stderr}"
    out = started.folder / "results"
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and all(p.stat().st_size <= 16 * 2**20 for p in files)
    names = {p.name for p in files}
    assert {"commands.txt", "versions.txt", "tests.txt", "bench.txt", "bench.csv",
            "rest.tar.gz"} <= names
    commands = (out / "commands.txt").read_text().splitlines()
    ran = [line for line in commands if line[:1].isdigit()]
    failed = [line for line in ran if not line.startswith("0 ") and "nvidia-smi" not in line]
    assert ran and failed == [], failed                     # every stage exited 0
    assert any("pytest" in line for line in ran) and any("nnx.benchmark" in line for line in ran)
    assert " passed" in (out / "tests.txt").read_text()
    bench = (out / "bench.txt").read_text()
    assert "nnx compiled [jax:cpu]" in bench and "jax.jit(grad)" in bench
    assert "torch eager [torch:cpu]" in bench


def test_gpu_script_refuses_a_used_results_folder(tmp_path):
    (tmp_path / "old.txt").write_text("keep me")
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), "--rehearse", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not empty" in done.stderr
    assert (tmp_path / "old.txt").read_text() == "keep me"
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), "--bogus"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown argument --bogus" in done.stderr
