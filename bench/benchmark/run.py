"""Running the cases of every model and batch size, into result rows."""

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
    sizes, dtype = cases.MODELS[model], settings["dtype"]
    data = cases.make_data(batch, dtype)
    from nnx import backends
    if sizes == "cnn":
        from . import cnn_cases
        out = [cnn_cases.nnx_case(spec, data, dtype) for spec in settings["devices"]]
        out += _present(cases.nnx_compiled_case(cnn_cases.build_net(dtype, d), d, data, dtype)
                        for d in map(backends.resolve, settings["devices"]))
        if settings["references"]:
            out += [cnn_cases.torch_case(data, dtype, d) for d in _torch_devices(settings["devices"])]
            out += [cnn_cases.floor_case(spec, data, dtype) for spec in settings["devices"]]
        return out
    if sizes == "transformer":
        from . import transformer_cases as tc
        out = [tc.nnx_case(spec, data, dtype) for spec in settings["devices"]]
        if settings["references"]:
            out += [tc.torch_case(data, dtype, d) for d in _torch_devices(settings["devices"])]
        return out
    if sizes == "lstm":
        from . import lstm_cases
        out = [lstm_cases.nnx_case(spec, data, dtype) for spec in settings["devices"]]
        if settings["references"]:
            out += [lstm_cases.torch_case(data, dtype, d) for d in _torch_devices(settings["devices"])]
        return out
    out = [cases.nnx_case(sizes, spec, data, dtype) for spec in settings["devices"]]
    out += _present(cases.nnx_compiled_case(cases.build_net(sizes, dtype, d), d, data, dtype)
                    for d in map(backends.resolve, settings["devices"]))
    if settings["references"]:
        out.append(cases.numpy_case(sizes, data, dtype))
        out += [cases.jax_case(sizes, data, dtype, spec) for spec in settings["devices"]
                if spec.startswith("jax")]
        out += [cases.torch_case(sizes, data, dtype, d) for d in _torch_devices(settings["devices"])]
        out += [cases.floor_case(sizes, spec, data, dtype) for spec in settings["devices"]]
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
