"""Results as rows: ratios between implementations, the terminal table, JSON, CSV, plot."""

import csv
import io
import json

from nnx import outputs
from . import opcount

NUMPY, TORCH, FLOOR = "numpy (hand-written)", "torch eager", "matmul floor"
FIELDS = ("model", "mode", "dtype", "batch", "impl", "device", "label", "samples_per_s",
          "median_ms", "q1_ms", "q3_ms", "min_ms", "max_ms", "gflops", "vs_numpy",
          "vs_torch", "vs_floor", "faults_per_step", "peak_mb", "ops_per_step", "syncs_per_step",
          "blocks", "steps_per_block")
META_FIELDS = ("cpu", "blas", "blas_threads", "numpy", "torch", "gpu", "malloc")


def _torch_device(device):
    return "torch:cuda" if "cuda" in device else "torch:cpu"


def add_ratios(rows):
    """Time ratios (this / reference, below 1 = faster) within each model, mode and batch."""
    by_key = {}
    for r in rows:
        by_key.setdefault((r["model"], r["mode"], r["batch"]), []).append(r)
    for group in by_key.values():
        def median(impl, where=None):
            for r in group:
                if r["impl"] == impl and (where is None or r["device"].startswith(where)):
                    return r["median_ms"]
            return None

        for r in group:
            own_floor = r["device"] if r["impl"] != NUMPY else "cpu"
            refs = {"vs_numpy": None if r["impl"] == NUMPY else median(NUMPY),
                    "vs_torch": None if r["impl"] == TORCH
                    else median(TORCH, _torch_device(r["device"])),
                    "vs_floor": None if r["impl"] == FLOOR else median(FLOOR, own_floor)}
            for k, ref in refs.items():
                r[k] = round(r["median_ms"] / ref, 3) if ref else None
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _cpus(meta):
    """The CPUs the process could run on, and whether --threads confined it to them."""
    cpus = meta.get("cpus")
    text = "unknown (no CPU affinity on this OS)" if cpus is None else ",".join(map(str, cpus))
    return text + (" (pinned by --threads)" if meta.get("cpus_pinned") else "")


def table(rows, meta):
    """The terminal table, one block per model and mode."""
    env = ", ".join(f"{k}={v}" for k, v in meta["blas_env"].items()) or "none"
    lines = [f"CPU: {meta['cpu']} ({meta['cpu_count']} cores); BLAS: {blas_line(meta)}; "
             f"PyTorch threads: {meta.get('torch_threads', '-')}; BLAS/OpenMP variables set: {env}",
             f"CPUs the run may use: {_cpus(meta)}; malloc: {meta['malloc']}; peak resident "
             f"memory of the run: "
             f"{meta.get('max_rss_mb', 0):.0f} MB",
             "x-columns are time ratios (this / reference): below 1 means faster than the "
             "reference; faults: minor page faults per step; peak MB: tracemalloc peak of a "
             "step (NumPy-based cases)",
             opcount.FOOTNOTE]
    head = (f"{'batch':>5}  {'implementation':<32} {'samples/s':>10} {'ms/step':>9} "
            f"{'IQR ms':>15} {'GFLOP/s':>8} {'xnumpy':>7} {'xtorch':>7} {'xfloor':>7} "
            f"{'faults':>7} {'peak MB':>8} {'ops':>5} {'syncs':>5}")
    blocks = {}
    for r in rows:
        blocks.setdefault((r["model"], r["mode"], r["dtype"]), []).append(r)
    for (model, mode, dtype), group in blocks.items():
        lines += ["", f"{model} - {'training step' if mode == 'train' else 'inference'} "
                      f"({dtype})", head]
        for r in group:
            lines.append(
                f"{r['batch']:>5}  {r['label']:<32} {r['samples_per_s']:>10.0f} "
                f"{r['median_ms']:>9.3f} {r['q1_ms']:>7.3f}-{r['q3_ms']:<7.3f} "
                f"{r['gflops']:>8.1f} {_fmt(r['vs_numpy'], '7.2f'):>7} "
                f"{_fmt(r['vs_torch'], '7.2f'):>7} {_fmt(r['vs_floor'], '7.2f'):>7} "
                f"{r['faults_per_step']:>7.1f} {_fmt(r['peak_mb'], '8.1f'):>8} "
                f"{_fmt(r.get('ops_per_step'), '5d'):>5} {_fmt(r.get('syncs_per_step'), '5d'):>5}")
        lines += notes(group, meta)
    return "\n".join(lines)


NOISY = 0.25          # IQR / median above this: the timings are not to be trusted


def notes(group, meta):
    """The lines under a table: what the floor is, why a reference column is empty, and a
    warning when the timings spread widely."""
    impls = {r["impl"] for r in group}
    out = []
    if FLOOR in impls:
        out.append("matmul floor: the step's matrix products alone (x·W per layer; in "
                   "training also xᵀ·g and g·Wᵀ) on the same device, with no activation, "
                   "loss or update: the time no implementation of this model can go below")
    references = impls - {"nnx"}
    for column, impl, what in (("xnumpy", NUMPY, "the hand-written NumPy step"),
                               ("xtorch", TORCH, "PyTorch eager"),
                               ("xfloor", FLOOR, "the matmul floor")):
        if impl in impls:
            continue
        if not references:
            why = "references were not timed (--no-references)"
        elif impl == TORCH and "torch" not in meta.get("versions", {}):
            why = "torch is not installed (pip install 'nnx-backprop[torch]')"
        else:
            why = f"{what} was not timed for these devices"
        out.append(f"{column} is empty: {why}")
    spread = [((r["q3_ms"] - r["q1_ms"]) / r["median_ms"], r) for r in group
              if r["median_ms"] > 0]
    if spread:
        worst, r = max(spread, key=lambda p: p[0])
        if worst > NOISY:
            out.append(f"warning: wide spread: the IQR of {r['label']} at batch {r['batch']} is "
                       f"{100 * worst:.0f}% of its median (over {100 * NOISY:.0f}%); the machine "
                       f"was busy: rerun on a quiet machine or with more --repeats")
    return out


def blas_line(meta):
    for p in meta["blas"]:
        if p.get("user_api") == "blas":
            arch = f" {p['architecture']} kernels" if p.get("architecture") else ""
            n = p.get("num_threads")
            return f"{p.get('internal_api')} {p.get('version')}{arch}, {n} thread{'s' * (n != 1)}"
    return "unknown"


def meta_columns(meta):
    v = meta["versions"]
    return {"cpu": meta["cpu"], "blas": blas_line(meta), "blas_threads": meta["blas_threads"],
            "numpy": v.get("numpy"), "torch": v.get("torch"), "gpu": meta["gpu"],
            "malloc": meta["malloc"]}


JSON_FORMAT = "nnx-bench"      # the "format" key that marks nnx-bench's own JSON
OUTPUT_KINDS = {                # option: (recogniser of nnx-bench's own output, its name)
    "--json": (outputs.has_json_format(JSON_FORMAT), "an nnx-bench JSON file"),
    "--csv": (outputs.has_csv_header(FIELDS + META_FIELDS), "an nnx-bench CSV file"),
    "--plot": (outputs.is_plot, "a plot nnx drew"),
}


def write_json(path, rows, meta, settings):
    text = json.dumps({"format": JSON_FORMAT, "meta": meta, "settings": settings,
                       "results": rows}, indent=1)
    outputs.write_text(path, text + "\n", ours=OUTPUT_KINDS["--json"][0])


def write_csv(path, rows, meta):
    extra = meta_columns(meta)
    buffer = io.StringIO()
    w = csv.DictWriter(buffer, fieldnames=FIELDS + META_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**{k: r.get(k) for k in FIELDS}, **extra})
    outputs.write_text(path, buffer.getvalue(), ours=OUTPUT_KINDS["--csv"][0])


def plot(path, rows, meta):
    """Throughput against batch size: one panel per model and mode, one line per case.

    Every case keeps its colour and marker in every panel (so a single batch size still
    shows each point, the floor included); the legend sits below the panels, never on a
    point; the title says which run it is (date, commit, host) and wraps to the figure."""
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    models = list(dict.fromkeys(r["model"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    impl = {r["label"]: r["impl"] for r in rows}
    colour = {label: f"C{k % 10}" for k, label in enumerate(labels)}
    width = max(4.6 * len(models), 7.0)
    fig, axes = plt.subplots(len(modes), len(models), squeeze=False,
                             figsize=(width, 3.6 * len(modes) + 1.4))
    for i, mode in enumerate(modes):
        for j, model in enumerate(models):
            ax = axes[i][j]
            group = [r for r in rows if r["model"] == model and r["mode"] == mode]
            for label in dict.fromkeys(r["label"] for r in group):
                pts = sorted((r["batch"], r["samples_per_s"]) for r in group
                             if r["label"] == label)
                kind = impl[label]
                ax.plot(*zip(*pts), color=colour[label], label=label, markersize=6,
                        linestyle="-" if kind == "nnx" else (":" if kind == FLOOR else "--"),
                        marker="o" if kind == "nnx" else ("v" if kind == FLOOR else "s"))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{model}: {'training' if mode == 'train' else 'inference'}")
            ax.set_xlabel("batch size")
            ax.set_ylabel("samples / s")
            ax.grid(True, which="both", alpha=0.3)
            batches = sorted({r["batch"] for r in group})
            if len(batches) == 1:                    # one batch size: room on both sides
                ax.set_xlim(batches[0] / 2, batches[0] * 2)
            ax.set_xticks(batches, [str(b) for b in batches])      # the sizes measured
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.margins(y=0.15)
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=min(len(handles), 2 if width < 9 else 4), fontsize=8, frameon=False)
    run = ", ".join(str(meta[k]) for k in ("date", "git_commit", "host") if meta.get(k))
    title = (f"nnx-bench ({rows[0]['dtype']}) on {meta['cpu']}, {blas_line(meta)}"
             + (f"; run {run}" if run else ""))
    fig.suptitle("\n".join(textwrap.wrap(title, int(width * 14))), fontsize=9)
    rows_of_legend = -(-len(handles) // (2 if width < 9 else 4))
    fig.tight_layout(rect=(0, 0.05 + 0.035 * rows_of_legend * 7 / (3.6 * len(modes) + 1.4), 1, 1))
    fmt = path.rsplit(".", 1)[-1].lower()
    outputs.write_atomically(path, lambda f: fig.savefig(
        f, format=fmt, dpi=110, metadata=outputs.plot_metadata("nnx-bench --plot")),
        ours=outputs.is_plot)
    plt.close(fig)
