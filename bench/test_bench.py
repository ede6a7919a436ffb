"""The nnx-bench cases as a pytest-benchmark suite (not part of the normal test run).

    .venv/bin/python -m pytest bench --benchmark-only
    .venv/bin/python -m pytest bench --benchmark-only -k "mlp and 100" --bench-threads 1

Each group is one model and batch size: nnx on every available backend beside the
hand-written NumPy step, PyTorch eager and the matmul floor, so pytest-benchmark's
comparison columns read as the ratios of nnx-bench.
"""

import importlib.util

import pytest

from nnx import backends
from nnx.benchmark import cases
from nnx.benchmark.cli import devices

BATCHES = (100, 1000)
DEVICES = devices(None)
HAVE_TORCH = importlib.util.find_spec("torch") is not None
IMPLS = ([("nnx", d) for d in DEVICES] + [("numpy", "cpu")]
         + ([("torch", "cpu")] if HAVE_TORCH else []) + [("floor", d) for d in DEVICES])


def make_case(impl, device, model, batch, dtype="float32"):
    sizes, data = cases.MODELS[model], cases.make_data(batch, dtype)
    if impl == "nnx":
        return cases.nnx_case(sizes, device, data, dtype)
    if impl == "numpy":
        return cases.numpy_case(sizes, data, dtype)
    if impl == "torch":
        return cases.torch_case(sizes, data, dtype, device)
    return cases.floor_case(sizes, device, data, dtype)


def _run(benchmark, case, mode, model, batch):
    fn = getattr(case, mode)
    benchmark.group = f"{mode} {model} batch {batch}"
    benchmark.extra_info.update(samples=batch, label=case.label,
                                matmul_flops=cases.matmul_flops(cases.MODELS[model], batch,
                                                                mode == "train"))

    def step():
        fn()
        case.sync()

    benchmark.pedantic(step, warmup_rounds=3, rounds=20, iterations=max(1, 2000 // batch))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("model", list(cases.MODELS))
@pytest.mark.parametrize("impl,device", IMPLS, ids=[f"{i}-{d}" for i, d in IMPLS])
def test_train_step(benchmark, impl, device, model, batch):
    _run(benchmark, make_case(impl, device, model, batch), "train", model, batch)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("model", list(cases.MODELS))
@pytest.mark.parametrize("impl,device", IMPLS, ids=[f"{i}-{d}" for i, d in IMPLS])
def test_inference(benchmark, impl, device, model, batch):
    _run(benchmark, make_case(impl, device, model, batch), "infer", model, batch)


def test_devices_resolve():
    """Every device the suite times is usable here (a plain check, no timing)."""
    for d in DEVICES:
        assert backends.resolve(d).spec == d
