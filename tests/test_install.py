"""How nnx installs and imports: only `nnx` at the top of site-packages, nothing changed
process-wide on import, no package cycle."""

import ast
import importlib.util
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import zipfile

import pytest

from conftest import REPO, Started, early


def _run(code, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, text=True, env=env,
                          capture_output=True, timeout=120)


def test_the_wheel_installs_only_nnx_at_the_top():
    wheels = early(__name__, start_early)["wheel"]
    code, _, stderr = wheels.result(timeout=300)
    assert code == 0, f"exit status {code} (None: still running after 300 s)\n{stderr[-2000:]}"
    (wheel,) = wheels.folder.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"nnx"}, top
    for module in ("nnx/backends/__init__.py", "nnx/backends/fast.py",
                   "nnx/benchmark/__init__.py", "nnx/benchmark/cli.py"):
        assert module in names
    assert not any(n.startswith("nnx/benchmark/") and "test_" in n for n in names)


def test_import_nnx_beside_a_users_backends_module(tmp_path):
    (tmp_path / "backends.py").write_text("raise RuntimeError('the user module was imported')\n")
    pkg = tmp_path / "bench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('the user package was imported')\n")
    r = _run("import nnx, nnx.benchmark; net = nnx.Linear(3, 2); "
             "print(nnx.backends.__name__, len(net.params()))", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["nnx.backends", "2"]


def test_backends_never_import_the_framework():
    """The dependency graph points one way: nnx.benchmark -> nnx -> nnx.backends."""
    offenders = []
    for path in sorted((REPO / "backends").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                    else [])
            offenders += [f"{path.name}:{node.lineno} imports {m}" for m in mods
                          if m == "nnx" or (m.startswith("nnx.") and
                                            not m.startswith("nnx.backends"))]
    assert not offenders, offenders


def test_import_nnx_does_not_tune_malloc_and_tune_malloc_opts_in():
    code = ("import nnx; from nnx.backends import malloc; print(malloc.malloc_setting()); "
            "print(nnx.tune_malloc())")
    r = _run(code, REPO)
    assert r.returncode == 0, r.stderr
    before, after = r.stdout.splitlines()
    assert before == "glibc defaults"
    if platform.libc_ver()[0] == "glibc":
        assert after.startswith("mallopt M_MMAP_THRESHOLD=32 MiB")
        assert after.endswith(", M_MMAP_MAX=0")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc tuning is for glibc")
@pytest.mark.parametrize("tuned", [False, True])
def test_tune_malloc_reuses_even_blocks_above_32_mib(tuned):
    """A 64 MiB block freed and asked for again (as torch's CPU tensors and Inductor's
    buffers are: straight from malloc): glibc maps it afresh, a page fault per 4 KiB
    written, every training step, unless tune_malloc() keeps it in the heap."""
    code = ("import ctypes, resource, nnx\n"
            f"{'nnx.tune_malloc()' if tuned else ''}\n"
            "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p\n"
            "libc.free.argtypes = [ctypes.c_void_p]\n"
            "def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "def block():\n"
            "    p = libc.malloc(64 << 20); ctypes.memset(p, 1, 64 << 20); return p\n"
            "libc.free(ctypes.c_void_p(block()))\n"
            "before = faults(); block(); print(faults() - before)")
    r = _run(code, REPO)
    assert r.returncode == 0, r.stderr
    faults = int(r.stdout.split()[-1])
    assert (faults < 1000) if tuned else (faults > 10000), faults


def test_jax_x64_stays_off_until_float64_is_asked_for():
    pytest.importorskip("jax", reason="jax is not installed: pip install -e '.[jax]'")
    code = ("import jax, nnx\n"
            "with nnx.device('jax:cpu'):\n"
            "    net = nnx.Linear(3, 2); y = net.fprop(nnx.asarray([[1.0, 2.0, 3.0]]))\n"
            "print(jax.config.jax_enable_x64, y.dtype)\n"
            "x = nnx.asarray([[0.1]], device='jax:cpu', dtype='float64')\n"
            "print(jax.config.jax_enable_x64, x.dtype, float(x[0, 0]) == 0.1)\n")
    r = _run(code, REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["False float32", "True float64 True"]


def test_import_nnx_loads_neither_urllib_request_nor_the_benchmark():
    r = _run("import sys, nnx; print('urllib.request' in sys.modules, "
             "'nnx.benchmark' in sys.modules)", REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


X64_CODE = ("import warnings; warnings.simplefilter('error')\n"
            "import jax, numpy as np, nnx\n"
            "with nnx.device('jax:cpu'):\n"
            "    rng = np.random.default_rng(0)\n"
            "    x = nnx.asarray(rng.standard_normal((40, 3)))\n"
            "    t = nnx.asarray(rng.integers(0, 2, 40).astype(np.uint8))\n"
            "    net = nnx.Sequential(nnx.Linear(3, 2))\n"
            "    nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1), x, t, epochs=2,\n"
            "            batch_size=10, x_test=x, t_test=t, verbose=False)\n"
            "    print(jax.config.jax_enable_x64, nnx.evaluate(net, x, t) <= 40)\n")


def start_early():
    """The wheel build and the float32 JAX training below (a few seconds each, most of it
    starting Python, pip, JAX) in processes of their own, started with the run beside the
    other tests (tests/conftest.py)."""
    folder = tempfile.mkdtemp(prefix="nnx-wheel-")
    wheel = Started([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
                     folder, str(REPO)])
    wheel.cleanup.append(folder)
    wheel.folder = pathlib.Path(folder)
    if importlib.util.find_spec("jax") is None:
        return {"wheel": wheel}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {"wheel": wheel, "x64": Started([sys.executable, "-c", X64_CODE], cwd=REPO, env=env)}


def test_float32_training_on_jax_leaves_x64_off_and_warns_nothing():
    """Labels and counts use the namespace's index type (int32 while JAX's x64 is off), so
    fit and evaluate neither turn x64 on nor trigger JAX's int64-truncation warnings."""
    pytest.importorskip("jax", reason="jax is not installed: pip install -e '.[jax]'")
    code, stdout, stderr = early(__name__, start_early)["x64"].result(timeout=120)
    assert code == 0, f"exit status {code} (None: still running after 120 s)\n{stderr[-2000:]}"
    assert stdout.split() == ["False", "True"]


def test_ci_tests_the_declared_floors():
    """.ci/oldest.sh pins every floor pyproject.toml declares (the dependencies and the test
    extra), and .ci/run calls it: a floor that nnx outgrows fails CI."""
    import re
    tomllib = pytest.importorskip("tomllib")          # Python 3.11+
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {}
    for spec in meta["dependencies"] + meta["optional-dependencies"]["test"]:
        name, floor = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", spec.strip()).groups()
        declared[name.lower()] = floor
    script = (REPO / ".ci" / "oldest.sh").read_text()
    pinned = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([0-9.]+)(?:\.\*)?"', script))
    def version(v):                   # 8 == 8.0 == 8.0.0
        parts = [int(p) for p in v.split(".")]
        while parts and parts[-1] == 0:
            parts.pop()
        return tuple(parts)
    assert {k.lower(): version(v) for k, v in pinned.items()} == \
        {k: version(v) for k, v in declared.items()}
    assert "bash .ci/oldest.sh" in (REPO / ".ci" / "run").read_text()
