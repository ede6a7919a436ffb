"""Shared fixtures: every test that takes ``device`` runs once per backend.

Backends that are missing here are skipped with the reason nnx gives for them.
"""

import os
import pathlib

import pytest

from nnx import backends
import nnx

DEVICES = ["cpu", "strict", "strict:device1", "torch:cpu", "jax:cpu", "cuda:0"]
REPO = pathlib.Path(__file__).resolve().parent.parent


def _skip_reason(spec):
    try:
        backends.resolve(spec)
    except nnx.DeviceError as e:
        return str(e).split(". Available here")[0]
    return None


@pytest.fixture(params=DEVICES)
def device(request):
    """The device spec, selected for the test's duration (skipped where unavailable)."""
    reason = _skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    with nnx.device(request.param):
        nnx.seed(0)
        yield request.param


@pytest.fixture
def mnist_dir():
    """The MNIST folder: $NNX_DATA, else ../shared/data/mnist beside the repository."""
    path = pathlib.Path(os.environ.get("NNX_DATA") or REPO.parent / "shared" / "data" / "mnist")
    if not (path / "train-images-idx3-ubyte.gz").exists() and \
       not (path / "train-images-idx3-ubyte").exists():
        pytest.skip(f"MNIST not found at {path} (set NNX_DATA to the folder with the IDX files)")
    return path
