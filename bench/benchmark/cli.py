"""Command line of ``nnx-bench``; see ``nnx-bench --help``."""

import argparse
import os
import sys

from nnx.cli import HelpFormatter, at_least_zero, bad_number, positive, same_file_pair

from . import cases, machine, report, timing

DEFAULT_BATCHES = (100, 200, 500, 1000)
DTYPES = ("float32", "float64")


class UsageError(Exception):
    """A bad argument: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):           # one line, no usage block
        raise UsageError(f"{message} (see nnx-bench --help)")


def parse_args(argv):
    return build_parser().parse_args(argv)


def build_parser():
    p = Parser(
        prog="nnx-bench",
        description="Time nnx's training step (fprop, loss, bprop, SGD update) and inference "
                    "on each backend, beside a hand-written NumPy step, PyTorch eager and the "
                    "matmul floor, measured in the same run.")
    import nnx
    p.add_argument("--version", action="version", version=f"nnx-bench (nnx {nnx.__version__})")
    p.add_argument("--backends", default=None,
                   help="comma-separated backends or devices: numpy, torch, strict, cupy, jax, "
                        "or specs such as torch:cuda:0 (default: every one available)")
    p.add_argument("--models", default=",".join(cases.MODELS),
                   help=f"comma-separated, each once, from {', '.join(cases.MODELS)} "
                        f"(default: all)")
    p.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCHES)),
                   help="comma-separated positive integers, each once (default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="precision timed")
    p.add_argument("--repeats", type=positive(int), default=15,
                   help="timed blocks per case; median and IQR over them (default: %(default)s)")
    p.add_argument("--min-time", type=at_least_zero(float), default=0.05,
                   help="seconds each timed block lasts at least (default: %(default)s)")
    p.add_argument("--warmup", type=at_least_zero(int), default=3,
                   help="untimed steps first (default: %(default)s)")
    p.add_argument("--threads", type=positive(int), default=None,
                   help="BLAS threads for NumPy, PyTorch's thread count, and (Linux) the "
                        "CPUs the whole run may use, so that no library's own thread pool "
                        "takes more (default: what NumPy's BLAS uses now, every CPU)")
    p.add_argument("--no-references", action="store_true",
                   help="time nnx only: no NumPy, PyTorch or matmul-floor references")
    p.add_argument("--malloc-tuning", action=argparse.BooleanOptionalAction, default=True,
                   help="keep freed memory for reuse between steps, as nnx.tune_malloc() does "
                        "(glibc; default: on)")
    p.add_argument("--json", metavar="FILE", help="write results and machine details as JSON")
    p.add_argument("--csv", metavar="FILE", help="write results as CSV")
    p.add_argument("--plot", metavar="FILE.png", help="plot throughput against batch size")
    return p


def _split(text, what):
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise UsageError(f"--{what} is empty: give a comma-separated list")
    return items


def batch_sizes(text):
    out = []
    for s in _split(text, "batch-sizes"):
        try:
            value = int(s) if s.isascii() and s.isdigit() else 0   # not '²', '+3', '1_0'
        except ValueError:
            value = 0
        if value < 1:
            raise UsageError(f"argument --batch-sizes: "
                             f"{bad_number(s, 'a whole number above 0')} "
                             f"(e.g. --batch-sizes 100,1000)")
        if int(s) > MAX_BATCH:
            raise UsageError(f"--batch-sizes: {s} is too large (at most {MAX_BATCH})")
        if value in out:
            raise UsageError(f"--batch-sizes: {value} is given twice; name each batch size "
                             f"once")
        out.append(value)
    return out


def devices(text):
    """Device specs for --backends: names expand to their main device, specs are checked."""
    from nnx import backends
    if text is None:
        names = [n for n, reason in backends.available().items() if reason is None]
        return [d for n in names for d in _main_devices(backends, n)]
    specs = []
    for item in _split(text, "backends"):
        name = item.lower()
        if name in backends.BACKENDS or name == "cuda":
            name = "cupy" if name == "cuda" else name
            reason = backends.unavailable_reason(name)
            if reason:
                raise UsageError(f"--backends: {item} is unavailable: {reason}")
            specs += _main_devices(backends, name)
            continue
        try:
            specs.append(backends.resolve(item).spec)
        except backends.DeviceError as e:
            raise UsageError(f"--backends: {str(e).splitlines()[0]}") from None
    return list(dict.fromkeys(specs))


def _main_devices(backends, name):
    """The devices a backend name stands for: its first CPU and first GPU device."""
    listed = backends.BACKENDS[name].listed()
    gpus = [] if "cuda" in listed[0] else [s for s in listed if "cuda" in s][:1]
    return listed[:1] + gpus


IMAGE_FORMATS = (".png", ".svg", ".pdf")
MAX_BATCH = 1_000_000
MAX_COUNT = 100_000          # --repeats, --warmup: more would run for days


def check_output(path, flag):
    """Refuse an output that cannot be written, or an existing file that is not nnx-bench's
    own output of that kind, before the long run rather than after it (nnx.outputs' rule)."""
    from nnx import outputs
    if not path:
        raise UsageError(f"{flag} is an empty path; give a file name")
    ours, what = report.OUTPUT_KINDS[flag]
    try:
        outputs.check(path, flag, ours, what)
    except outputs.OutputError as e:
        raise UsageError(str(e)) from None


def check_outputs(args):
    """Every output checked, then no two of them the same file (any spelling or link)."""
    outputs = [(flag, path) for flag, path in (("--json", args.json), ("--csv", args.csv),
                                               ("--plot", args.plot)) if path is not None]
    for flag, path in outputs:
        check_output(path, flag)
    clash = same_file_pair(outputs)
    if clash:
        raise UsageError(clash)
    if args.plot is not None and os.path.splitext(args.plot)[1].lower() not in IMAGE_FORMATS:
        raise UsageError(f"--plot: unknown image format in {args.plot}; end the name with "
                         f"{', '.join(IMAGE_FORMATS)}")


def settings_from(args):
    models = _split(args.models, "models")
    for k, m in enumerate(models):
        if m not in cases.MODELS:
            raise UsageError(f"--models: unknown model {m!r}; choose from "
                             f"{', '.join(cases.MODELS)}")
        if m in models[:k]:
            raise UsageError(f"--models: {m} is given twice; name each model once")
    if not 1 <= args.repeats <= MAX_COUNT:
        raise UsageError(f"--repeats must lie in 1..{MAX_COUNT}, got {args.repeats}")
    if not 0 <= args.min_time <= 3600:
        raise UsageError(f"--min-time must be 0 to 3600 seconds, got {args.min_time}")
    if not args.warmup <= MAX_COUNT:
        raise UsageError(f"--warmup must be at most {MAX_COUNT}, got {args.warmup}")
    if args.threads is not None:
        try:
            import threadpoolctl  # noqa: F401
        except ImportError:
            raise UsageError("--threads needs threadpoolctl: "
                             "pip install 'nnx-backprop[bench]'") from None
    check_outputs(args)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib: "
                             "pip install 'nnx-backprop[bench]'") from None
    if args.threads:                    # before JAX starts: XLA reads its flags once
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_"
                                   f"eigen={str(args.threads > 1).lower()} "
                                   f"intra_op_parallelism_threads={args.threads}").strip()
    return {"models": models, "batch_sizes": batch_sizes(args.batch_sizes),
            "devices": devices(args.backends), "dtype": args.dtype, "repeats": args.repeats,
            "min_time": args.min_time, "warmup": args.warmup,
            "references": not args.no_references, "threads": args.threads}


def main(argv=None):
    try:
        args = parse_args(argv)
        settings = settings_from(args)
    except SystemExit as e:             # --help, --version
        return e.code
    except UsageError as e:
        print(f"nnx-bench: error: {e}", file=sys.stderr)
        return 2
    from .run import run_all
    if args.malloc_tuning:
        import nnx
        nnx.tune_malloc()
    pinned = machine.pin_cpus(args.threads) if args.threads else None
    try:
        meta = machine.describe()
        meta["cpus_pinned"] = pinned is not None
        rows = run_all(settings, meta, progress=lambda s: print(s, file=sys.stderr, flush=True))
        meta["max_rss_mb"] = round(machine.max_rss_mb(), 1)
        print(report.table(rows, meta), flush=True)
        if args.json:
            report.write_json(args.json, rows, meta, settings)
        if args.csv:
            report.write_csv(args.csv, rows, meta)
        if args.plot:
            report.plot(args.plot, rows, meta)
    except KeyboardInterrupt:
        print("nnx-bench: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("nnx-bench: error: out of memory; use smaller --batch-sizes", file=sys.stderr)
        return 1
    except Exception as e:               # never a traceback: one line, naming the cause
        print(f"nnx-bench: error: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
