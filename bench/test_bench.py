"""The nnx-bench cases as a pytest-benchmark suite (not part of the normal test run).

    .venv/bin/python -m pytest bench --benchmark-only
    .venv/bin/python -m pytest bench --benchmark-only -k "mlp and 100" --bench-threads 1

Each group is one model and batch size, with the cases of nnx-bench (``run.plan``): nnx
on every available backend beside its references (hand-written NumPy, jax.jit, PyTorch
eager, the matmul floor, as the model has them), so pytest-benchmark's comparison columns
read as the ratios of nnx-bench.
"""

import pytest

from nnx import backends
from nnx.benchmark import cases, run
from nnx.benchmark.cli import devices

BATCHES = (100, 1000)
SETTINGS = {"devices": devices(None), "dtype": "float32", "references": True}


def suite_cases(settings=SETTINGS):
    """(model, impl, device, make) for every case nnx-bench builds (``run.plan``)."""
    return [(model, impl, spec, make) for model in cases.MODELS
            for impl, spec, make in run.plan(model, settings)]


CASES = [pytest.param(model, make, id=f"{model}-{impl.replace(' ', '_')}-{spec}")
         for model, impl, spec, make in suite_cases()]


def build(make, batch, dtype=SETTINGS["dtype"]):
    case = make(cases.make_data(batch, dtype))
    if case is None:
        pytest.skip("compile_step stays eager here; the nnx row times that step")
    return case


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
@pytest.mark.parametrize("model,make", CASES)
def test_train_step(benchmark, model, make, batch):
    _run(benchmark, build(make, batch), "train", model, batch)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("model,make", CASES)
def test_inference(benchmark, model, make, batch):
    _run(benchmark, build(make, batch), "infer", model, batch)


@pytest.mark.parametrize("name", list(backends.BACKENDS))
def test_backend_timed(name):
    """Every available backend's devices are in the suite; a missing one says why."""
    reason = backends.unavailable_reason(name)
    if reason:
        pytest.skip(f"{name} not timed: {reason}")
    for d in devices(name):
        assert backends.resolve(d).spec == d and d in SETTINGS["devices"]
