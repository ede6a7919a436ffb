"""The executed tutorials (docs/tutorials/t03..t06) run standalone, as a reader runs them,
and print what their text claims: hand-written formulas equal to the layers to rounding,
every gradcheck passing (and the deliberately wrong one failing), training that learns,
devices that agree and the default device left as it was.  The documentation build
executes them too; this catches a broken page without building the site."""

import os
import pathlib
import re
import sys

import pytest

from conftest import Started, early, find_mnist

TUTORIALS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "tutorials"
NEED_MNIST = ("t03_convolutions.py", "t04_backprop_through_time.py")


def start_early():
    """All four tutorials started at once, with the run (tests/conftest.py: each is a few
    seconds of single-threaded work, so together they take about as long as the slowest,
    beside the other tests); MNIST ones only where it is."""
    env = {k: v for k, v in os.environ.items() if k != "NNX_DEVICE"}   # the default device
    env["MPLBACKEND"] = "Agg"
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")           # four processes side by side: one thread each
    mnist = find_mnist()
    if mnist is not None:
        env["NNX_DATA"] = str(mnist)
    return {p.name: Started([sys.executable, str(p)], env=env, cwd=TUTORIALS)
            for p in sorted(TUTORIALS.glob("t0[3-6]_*.py"))
            if mnist is not None or p.name not in NEED_MNIST}


@pytest.fixture(scope="module")
def started():
    return early(__name__, start_early)


def run_tutorial(started, name):
    code, out, err = started[name].result(timeout=300)
    if code is None:
        pytest.fail(f"{name} ran for more than 300 s:\n{out[-2000:]}\n{err[-2000:]}")
    assert code == 0, f"{name} failed:\n{out[-2000:]}\n{err[-4000:]}"
    return out


def numbers_after(pattern, out):
    """Every number that follows ``pattern`` (a regex) in the output."""
    found = [float(v) for v in re.findall(pattern + r"\s*([-+0-9.e]+)", out)]
    assert found, f"no line matching {pattern!r} in:\n{out}"
    return found


@pytest.mark.mnist
def test_t03_convolutions(mnist_dir, started):
    out = run_tutorial(started, "t03_convolutions.py")
    assert max(numbers_after(r"largest difference from (?:Conv2D|BatchNorm)\S*:?", out)) < 1e-12
    assert out.count("gradcheck ok") == 4           # Conv2D, both pools, BatchNorm
    assert out.count("gradcheck FAILED") == 1          # the frozen-statistics batch norm
    assert numbers_after(r"test errors after training:", out)[0] < 150


@pytest.mark.mnist
def test_t04_backprop_through_time(mnist_dir, started):
    out = run_tutorial(started, "t04_backprop_through_time.py")
    assert max(numbers_after(r"largest difference", out)) < 1e-12
    assert out.count("gradcheck ok") == 2
    rho = dict(zip(("0.8", "1.0", "1.2"), numbers_after(r"steps earlier", out)[:3]))
    assert float(rho["0.8"]) < 1e-2 and float(rho["1.2"]) > 1e2     # vanishing, exploding
    assert numbers_after(r"before,", out)[0] == pytest.approx(1.0, abs=1e-3)   # clipped
    assert numbers_after(r"test errors:", out)[0] < 500


def test_t05_attention(started):
    out = run_tutorial(started, "t05_attention.py")
    assert max(numbers_after(r"(?:output differs by|by at most)", out)) < 1e-12
    backward = numbers_after(r"backward", out)
    numeric = numbers_after(r"finite difference", out)
    assert all(abs(a - b) < 1e-7 * max(1.0, abs(a)) for a, b in zip(backward, numeric))
    assert out.count("gradcheck ok") == 1
    assert numbers_after(r"largest change at positions 0..T-2:", out) == [0.0]
    assert numbers_after(r"test accuracy at positions 2..11:", out)[0] > 0.95


def test_t06_devices_and_compiled_step(started):
    out = run_tutorial(started, "t06_devices_and_compiled_step.py")
    assert max(numbers_after(r"largest weight difference from (?:cpu|the eager NumPy run)",
                             out)) < 1e-5
    assert out.count("the current device is still cpu") == 2
    small, large = numbers_after(r"mlp, batch\s+\d+:", out)
    assert small == large                                # independent of the batch size
    assert "0 readbacks" in out and "1 readback" in out
    assert "cpu: eager - " in out
    assert "jax:cpu: jit - " in out or "jax:cpu skipped:" in out
