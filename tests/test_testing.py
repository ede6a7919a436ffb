"""nnx.testing: check_module proves a layer written outside the package on every backend,
names the device, dtype and check of each failure; the pytest plugin's nnx_device fixture
works in a user's own project and prints why devices are skipped."""

import ast
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

import pytest

import nnx
from conftest import REPO, Started, early
from nnx.testing import ModuleCheckError, check_module, device_params

USER_LAYERS = '''
import nnx


class Cube(nnx.Module):
    """y = x³;   dx = g·3x²"""

    def fprop(self, x):
        self.x = x
        y = x * x * x
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return 3.0 * self.x * self.x * grad_output


class Swish(nnx.Module):
    """y = x·σ(βx), one β per feature
    dx = g·(σ + βx·σ(1-σ)),  dβ = Σ_batch g·x²·σ(1-σ)"""

    param_names = ("beta",)

    def __init__(self, width):
        self.width = width
        self.init_params(None, None, beta=nnx.backends.host.full((width,), 1.0, "float64"))

    def fprop(self, x):
        xp = self.check_input(x, self.width)
        self.x, self.s = x, 1.0 / (1.0 + xp.exp(-self.beta * x))
        y = x * self.s
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        ds = self.s * (1.0 - self.s)
        self.dbeta = xp.sum(grad_output * self.x * self.x * ds, axis=0)
        return grad_output * (self.s + self.beta * self.x * ds)


class WrongCube(Cube):
    """bprop forgets the factor 3."""

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return self.x * self.x * grad_output


class InPlaceCube(Cube):
    """The right gradient, written into grad_output itself."""

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        grad_output *= 3.0 * self.x * self.x
        return grad_output


class CarelessSwish(Swish):
    """Neither checks its input's device nor that fprop ran."""

    def fprop(self, x):
        xp = nnx.device_of(x).xp
        self.x, self.s = x, 1.0 / (1.0 + xp.exp(-x))
        self.out_shape = tuple(x.shape)
        return x * self.s

    def bprop(self, grad_output, *, need_input_grad=True):
        return grad_output
'''


@pytest.fixture
def user_layers(tmp_path, monkeypatch):
    """The layers above, in a file outside the package, imported as a user would."""
    (tmp_path / "my_layers.py").write_text(USER_LAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_layers
    yield my_layers
    sys.modules.pop("my_layers", None)


def available():
    return [spec for spec, reason in device_params() if reason is None]


@pytest.mark.parametrize("layer", ["Cube", "Swish"])
def test_a_users_layer_passes_on_every_backend(user_layers, layer):
    make = getattr(user_layers, layer)
    report = check_module(lambda: make(5) if layer == "Swish" else make(), (4, 5))
    assert report.ok and report.passed_on() == available()
    for spec in available():
        for dtype in ("float64", "float32"):
            got = {r.check: r for r in report.results if r.device == spec and r.dtype == dtype}
            if not got:                      # a device without float64
                continue
            assert got["gradcheck"].status == "ok" and "entries" in got["gradcheck"].detail
            assert got["agrees with cpu"].status == "ok"
            assert got["bprop before fprop"].status == "ok"
            assert got["keeps its grad_output"].status == "ok"
            assert got["device mixing"].status == ("ok" if layer == "Swish" else "skipped")
    for spec, reason in device_params():
        if reason is not None:
            assert any(r.device == spec and r.status == "skipped" and r.detail == reason
                       for r in report.results)
    text = str(report)
    assert text.startswith(f"check_module({make.__name__}(") and " 0 failed" in text


def test_a_wrong_bprop_fails_naming_the_backend_dtype_and_check(user_layers):
    with pytest.raises(AssertionError) as info:
        check_module(user_layers.WrongCube, (3, 4), dtypes=("float64",))
    assert isinstance(info.value, (ModuleCheckError, nnx.NNXError))
    message = str(info.value)
    assert message.splitlines()[0] == (f"check_module(WrongCube()): {len(available())} check(s) "
                                       f"failed")
    for spec in available():
        assert f"  gradcheck on {spec} in float64: FAILED: 144 entries" in message
    assert "agrees with cpu on" not in message       # it is wrong the same way everywhere


def test_a_bprop_that_changes_grad_output_in_place_fails(user_layers):
    """Its gradient is right, but a module sharing grad_output (a Residual, a Split) would
    see the changed values: check_module says so, on every device."""
    with pytest.raises(ModuleCheckError) as info:
        check_module(user_layers.InPlaceCube, (3, 4), dtypes=("float64",))
    failed = {(r.device, r.check) for r in info.value.report.failures}
    mutable = [spec for spec in available() if not spec.startswith("jax")]   # jax: g *= a
    assert {(spec, "keeps its grad_output") for spec in mutable} <= failed  # makes a new g
    assert "bprop changed grad_output in place (g *= ..., g[...] = ...)" in str(info.value)


def test_careless_layer_fails_state_and_device_checks(user_layers):
    devices = ["cpu", "strict"] if "strict" in available() else ["cpu"]
    with pytest.raises(ModuleCheckError) as info:
        check_module(lambda: user_layers.CarelessSwish(4), (3, 4), devices=devices,
                     dtypes=("float64",))
    failed = {(r.device, r.check) for r in info.value.report.failures}
    assert ("cpu", "bprop before fprop") in failed
    assert "bprop ran before any fprop; it should raise nnx.StateError" in str(info.value)
    if "strict" in devices:
        assert ("cpu", "device mixing") in failed and ("strict", "device mixing") in failed
        assert "an input on strict with parameters on cpu was accepted" in str(info.value)


def test_devices_argument(user_layers):
    report = check_module(user_layers.Cube, (2, 3), devices=["cpu", "cuda:7"],
                          dtypes=("float32",))
    assert report.passed_on() == ["cpu"]
    skipped = [r for r in report.results if r.device == "cuda:7"]
    assert len(skipped) == 1 and skipped[0].status == "skipped" and "cuda:7" in skipped[0].detail
    with pytest.raises(nnx.DeviceError, match="unknown device 'gpu'"):
        check_module(user_layers.Cube, (2, 3), devices=["gpu"])


def test_check_module_keeps_the_callers_state(user_layers):
    nnx.seed(3)
    expected = nnx.to_numpy(nnx.permutation(10))
    nnx.seed(3)
    with nnx.device("cpu"):
        check_module(user_layers.Cube, (2, 3), devices=["cpu"])
        assert nnx.get_device().spec == "cpu"
    assert (nnx.to_numpy(nnx.permutation(10)) == expected).all()


def test_nnx_own_modules_pass_the_kit():
    """The kit over a few of tests/cases.py's modules (the full set runs in
    test_gradcheck.py and test_cross_backend.py)."""
    from cases import BATCH, MODULES, WIDTH
    for name in ("PReLU-per-feature", "Dropout"):
        assert check_module(MODULES[name], (BATCH, WIDTH)).ok


USER_TEST = '''
import nnx


def test_tanh_on_every_device(nnx_device):
    x = nnx.asarray([[0.5, -1.0]])
    assert str(nnx.device_of(x)) == nnx_device
    assert nnx.to_numpy(nnx.Tanh().fprop(x)).shape == (1, 2)
'''


def _pytest_in(folder, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)


def start_early():
    """A user's pytest run over USER_TEST (a few seconds: it imports every array library)
    started with the run, beside the other tests (tests/conftest.py)."""
    folder = tempfile.mkdtemp(prefix="nnx-plugin-")
    (pathlib.Path(folder) / "test_mine.py").write_text(USER_TEST)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    started = Started([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"],
                      cwd=folder, env=env)
    started.cleanup.append(folder)
    return {"plugin": started}


def test_plugin_gives_users_the_nnx_device_fixture():
    code, stdout, _ = early(__name__, start_early)["plugin"].result(timeout=300)
    assert code == 0, stdout[-3000:]
    params = device_params()
    ran = sum(reason is None for _, reason in params)
    assert f"{ran} passed" in stdout
    for spec, reason in params:
        if reason is not None:
            assert f"SKIPPED [1] test_mine.py" in stdout and reason in stdout, stdout


def test_plugin_is_inert_in_a_project_that_does_not_use_it(tmp_path):
    (tmp_path / "test_plain.py").write_text(textwrap.dedent('''
        import sys

        def test_nothing_heavy_was_loaded(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("nnx")
            loaded = [m for m in ("torch", "jax", "cupy", "array_api_strict") if m in sys.modules]
            assert loaded == []
    '''))
    r = _pytest_in(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "1 passed" in r.stdout


def test_every_test_that_needs_mnist_is_marked():
    """A test taking the mnist_dir (or test_datasets' mnist) fixture carries @pytest.mark.mnist."""
    unmarked = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                args = {a.arg for a in node.args.args}
                marks = {ast.unparse(d) for d in node.decorator_list}
                if args & {"mnist_dir", "mnist"} and "pytest.mark.mnist" not in marks:
                    unmarked.append(f"{path.name}::{node.name}")
    assert not unmarked, unmarked


def test_the_guides_kit_snippet_runs(capsys):
    import re
    page = "docs/guide/testing.md"
    blocks = re.findall(r"```python\n(.*?)```", (REPO / page).read_text(), re.S)
    (code,) = [b for b in blocks if "check_module" in b]
    exec(compile(code, page, "exec"), {"__name__": "readme_snippet"})
    out = capsys.readouterr().out
    assert out.startswith("check_module(Cube()): ") and " 0 failed" in out.splitlines()[0]


def test_packaging_declares_the_plugin_and_the_license():
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["pytest11"] == {"nnx": "nnx.testing.plugin"}
    assert "nnx.testing" in meta["tool"]["setuptools"]["packages"]
    assert meta["project"]["license"] == "MIT"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the nnx authors" in text
    extras = meta["project"]["optional-dependencies"]
    assert any(d.startswith("threadpoolctl") for d in extras["bench"])
    assert any(d.startswith("threadpoolctl") for d in extras["test"])


class _OneEntryWrong(nnx.Module):
    """y = x·W whose dW is off by 1 at a single entry of a 30 x 30 W."""

    param_names = ("W",)

    def __init__(self):
        self.init_params(None, None, W=nnx.backends.host.normal((30, 30), 0.2, "float64"))

    def fprop(self, x):
        self.x = x
        y = x @ self.W
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        dW = xp.matrix_transpose(self.x) @ grad_output
        wrong = xp.reshape(xp.arange(900), (30, 30)) == 17 * 30 + 23
        self.dW = xp.where(wrong, dW + 1.0, dW)
        return grad_output @ xp.matrix_transpose(self.W)


def test_the_kit_catches_one_wrong_gradient_entry_by_default():
    """check_module leaves coverage to gradcheck's default (every entry up to its budget):
    a single wrong dW[17, 23] fails, naming gradcheck and the parameter."""
    with pytest.raises(ModuleCheckError, match=r"gradcheck on cpu in float64.*W\[17, 23\]"):
        check_module(_OneEntryWrong, (3, 30), devices=["cpu"], dtypes="float64")


def test_count_ops_counts_a_linear_layer_and_a_readback():
    pytest.importorskip("array_api_strict")
    from nnx.testing import count_ops
    with nnx.device("strict"):
        layer = nnx.Linear(3, 2, dtype="float64")
        x = nnx.asarray([[1.0, 2.0, 3.0]], dtype="float64")
        c = count_ops(lambda: layer.fprop(x))
        assert (c.ops, c.readbacks) == (2, 0)              # x·W, += b
        assert dict(c.by_name) == {"__matmul__": 1, "__iadd__": 1}
        inner = []
        outer = count_ops(lambda: inner.append(count_ops(lambda: float(layer.fprop(x)[0, 0]))))
        assert (outer.ops, outer.readbacks) == (inner[0].ops, inner[0].readbacks) == (2, 1)
        assert "2 ops, 1 readbacks" in str(outer)


def test_count_ops_refuses_what_it_cannot_count():
    from nnx.testing import count_ops
    with pytest.raises(nnx.ArgumentTypeError, match=r"^count_ops: fn must be a callable .* "
                                                    r"got int$"):
        count_ops(3)
    with pytest.raises(nnx.ArgumentError, match=r"^count_ops: on must be one of 'strict', "
                                                r"'torch', got 'cupy'$"):
        count_ops(lambda: None, on="cupy")


def test_check_module_takes_integer_inputs_for_an_embedding():
    """Indices stay integers on every device (not cast to the checked float dtype); the
    Embedding has no input gradient, and everything else is checked."""
    k = [[0, 6, 2, 2], [5, 1, 0, 3], [4, 4, 6, 1]]           # repeats: rows add up in dW
    report = check_module(lambda: nnx.Embedding(7, 3), (3, 4), x=k, devices=["cpu", "strict"])
    assert report.ok
    checks = {r.check for r in report.results if r.status == "ok"}
    assert {"gradcheck", "agrees with cpu", "keeps the dtype"} <= checks
    with pytest.raises(ModuleCheckError, match="indices must be integers"):
        check_module(lambda: nnx.Embedding(7, 3), (3, 4), devices=["cpu"])   # drawn floats
