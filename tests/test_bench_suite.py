"""The pytest-benchmark suite in bench/ (not run by CI) can build every model of nnx-bench:
each of its cases, built as the suite builds it, runs one step at a tiny batch.  No timing."""

import importlib.util
import pathlib

import pytest

from nnx import backends
from nnx.benchmark import cases

SUITE_FILE = pathlib.Path(__file__).resolve().parents[1] / "bench" / "test_bench.py"


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("nnx_bench_suite", SUITE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_suite_times_every_model(suite):
    assert {model for model, *_ in suite.suite_cases()} == set(cases.MODELS)


@pytest.mark.parametrize("model", list(cases.MODELS))
def test_suite_builds_every_model(suite, model):
    specs = ["cpu"] + (["strict"] if backends.unavailable_reason("strict") is None else [])
    settings = {**suite.SETTINGS, "devices": specs}
    built = [(impl, spec, make) for m, impl, spec, make in suite.suite_cases(settings)
             if m == model]
    assert {(impl, spec) for impl, spec, _ in built} >= {("nnx", s) for s in specs}
    for impl, spec, make in built:
        case = suite.build(make, 2)
        assert case.device.endswith(spec), (impl, spec, case.label)
        case.train()
        case.infer()
        case.sync()


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_interleaved_rounds_run_every_case_once_and_vary_what_each_follows(n):
    from nnx.benchmark.timing import _turns
    keys = [f"case{i}" for i in range(n)]
    rounds = [_turns(keys, r) for r in range(2 * n)]
    assert all(sorted(order) == keys for order in rounds)
    before = {k: {order[order.index(k) - 1] for order in rounds if order.index(k)} for k in keys}
    assert all(len(b) == min(2, n - 1) for b in before.values()), before     # not one only
    assert {order[0] for order in rounds} == set(keys)       # each case also goes first


def test_every_model_has_an_nnx_compiled_row_on_jax_and_torch():
    """nnx-bench times compile_step beside the eager step for every model, sequence models
    included, on JAX and torch (the plan only: nothing is built or compiled here; on NumPy
    the step stays eager, so no row is planned)."""
    from nnx.benchmark import run
    settings = {"dtype": "float32", "devices": ["jax:cpu", "torch:cpu", "cpu"],
                "references": False}
    for model in cases.MODELS:
        rows = {(impl, spec) for impl, spec, _ in run.plan(model, settings)}
        assert {("nnx compiled", "jax:cpu"), ("nnx compiled", "torch:cpu")} <= rows, model
        assert ("nnx compiled", "cpu") not in rows, model
