"""Running the cases of every model and batch size, into result rows."""

import importlib

from . import cases, machine, opcount, report, timing


def _torch_devices(specs):
    """Where the PyTorch reference runs: on the CPU, and on CUDA if a GPU is benchmarked."""
    try:
        import torch
    except ImportError:
        return []
    out = ["cpu"]
    if any("cuda" in s for s in specs) and torch.cuda.is_available():
        out.append("cuda")
    return out


def build(model, batch, settings):
    """Every case of ``model`` at ``batch``, built (see ``plan``)."""
    data = cases.make_data(batch, settings["dtype"])
    return _present(make(data) for _, _, make in plan(model, settings))


def plan(model, settings):
    """The cases of ``model`` as (impl, device spec, make) in report order, unbuilt:
    ``make(data)`` builds the Case, or gives None for a compiled step that stays eager.
    nnx-bench and the pytest-benchmark suite (bench/test_bench.py) both build from here."""
    from nnx import backends
    sizes, dtype, specs = cases.MODELS[model], settings["dtype"], settings["devices"]
    refs = settings["references"]
    torch_specs = _torch_devices(specs) if refs else []
    jax_specs = [s for s in specs if s.startswith("jax")]
    compiled_specs = [s for s in specs if s.startswith(("jax", "torch"))]   # compile_step's

    def compiled(build_net):
        def make(data, spec):
            device = backends.resolve(spec)
            return cases.nnx_compiled_case(build_net(dtype, device), device, data, dtype)
        return [("nnx compiled", s, lambda data, s=s: make(data, s)) for s in compiled_specs]

    if isinstance(sizes, str):          # "cnn", "lstm", "gru", "transformer": <name>_cases.py
        mod = importlib.import_module(f"{__package__}.{sizes}_cases")
        out = [("nnx", s, lambda data, s=s: mod.nnx_case(s, data, dtype)) for s in specs]
        out += compiled(mod.build_net)
        if refs and hasattr(mod, "jax_case"):
            out += [("jax", s, lambda data, s=s: mod.jax_case(data, dtype, s)) for s in jax_specs]
        out += [("torch", d, lambda data, d=d: mod.torch_case(data, dtype, d))
                for d in torch_specs]
        if refs and hasattr(mod, "floor_case"):
            out += [("floor", s, lambda data, s=s: mod.floor_case(s, data, dtype))
                    for s in specs]
        return out
    out = [("nnx", s, lambda data, s=s: cases.nnx_case(sizes, s, data, dtype)) for s in specs]
    out += compiled(lambda dtype, device: cases.build_net(sizes, dtype, device))
    if refs:
        out.append(("numpy", "cpu", lambda data: cases.numpy_case(sizes, data, dtype)))
        out += [("jax", s, lambda data, s=s: cases.jax_case(sizes, data, dtype, s))
                for s in jax_specs]
    out += [("torch", d, lambda data, d=d: cases.torch_case(sizes, data, dtype, d))
            for d in torch_specs]
    if refs:
        out += [("floor", s, lambda data, s=s: cases.floor_case(sizes, s, data, dtype))
                for s in specs]
    return out


def _present(cases_or_none):
    """The cases that exist (a compiled case is None where the step stays eager)."""
    return [c for c in cases_or_none if c is not None]


def run_all(settings, meta, progress=print):
    """Time every case; return result rows (see report.FIELDS)."""
    threads = settings.get("threads")
    if threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads, user_api="blas")     # for the rest of this process
        meta["blas"] = machine.blas_pools()
    threads = machine.blas_threads()
    meta["blas_threads"] = threads
    try:
        import torch
        torch.set_num_threads(threads)      # PyTorch gets as many threads as NumPy's BLAS
        meta["torch_threads"] = threads
    except ImportError:
        pass
    rows = []
    for model in settings["models"]:
        sizes = cases.MODELS[model]
        for batch in settings["batch_sizes"]:
            progress(f"nnx-bench: {model}, batch {batch}")
            built = build(model, batch, settings)
            for mode in ("train", "infer"):
                jobs = {c.label: (getattr(c, mode), c.sync) for c in built}
                stats = timing.interleaved(jobs, settings["repeats"], settings["min_time"],
                                           settings["warmup"])
                flops = cases.matmul_flops(sizes, batch, train=mode == "train")
                for c in built:
                    s = stats[c.label]
                    peak = timing.traced_peak(getattr(c, mode), c.sync) if c.traced else None
                    ops, syncs = opcount.count(c, mode)
                    rows.append({
                        "model": model, "mode": mode, "dtype": settings["dtype"],
                        "batch": batch, "impl": c.impl, "device": c.device, "label": c.label,
                        "samples_per_s": batch / s.median, "median_ms": s.median * 1e3,
                        "q1_ms": s.q1 * 1e3, "q3_ms": s.q3 * 1e3, "min_ms": s.min * 1e3,
                        "max_ms": s.max * 1e3, "gflops": flops / s.median / 1e9,
                        "faults_per_step": s.faults_per_step,
                        "peak_mb": None if peak is None else peak / 2**20,
                        "ops_per_step": ops,
                        "syncs_per_step": syncs if c.impl == "nnx" else None,
                        "blocks": s.blocks, "steps_per_block": s.steps_per_block})
    return report.add_ratios(rows)
