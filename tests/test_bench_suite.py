"""The pytest-benchmark suite in bench/ (not run by CI) can build every model of nnx-bench:
each of its cases, built as the suite builds it, runs one step at a tiny batch.  No timing."""

import importlib.util
import pathlib

import numpy as np
import pytest

import nnx
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


def test_the_jax_cnn_reference_is_nnx_cnn_written_the_jax_way():
    """nnx-bench's jax.jit(grad) row for the cnn trains the same model as nnx (same
    weights: the same loss, the same update and running statistics after a step), so the
    two rows time the same work."""
    pytest.importorskip("jax")
    import inspect

    from nnx.benchmark import cnn_cases, run
    settings = {"dtype": "float64", "devices": ["jax:cpu"], "references": True}
    assert ("jax", "jax:cpu") in {(i, s) for i, s, _ in run.plan("cnn", settings)}
    data = cases.make_data(6, "float64")
    case = cnn_cases.jax_case(data, "float64")
    case.train()
    state = inspect.getclosurevars(case.train).nonlocals["state"]
    net = cnn_cases.build_net("float64", "cpu")
    loss = nnx.SoftmaxCrossEntropy()
    value = loss.fprop(net.fprop(nnx.asarray(data[0][0], dtype="float64")),
                       nnx.asarray(data[1][0]))
    net.bprop(loss.bprop())
    nnx.SGD(net, lr=cases.LR).step()
    np.testing.assert_allclose(float(state["out"]), float(value), rtol=1e-12)
    conv, bn = net[1], net[2]
    np.testing.assert_allclose(np.asarray(state["params"][0][0]), nnx.to_numpy(conv.W),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(state["stats"][0][1]), nnx.to_numpy(bn.running_var),
                               rtol=1e-12)
    case.infer()
    assert np.asarray(state["out"]).shape == (6, 10)
