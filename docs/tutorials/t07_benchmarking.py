"""
Benchmarking with nnx-bench
===========================

``nnx-bench`` times nnx's training step (fprop, loss, bprop, SGD update) and its
inference on every backend installed here, beside references measured in the same run:
a hand-written NumPy step, PyTorch eager with the same weights, and the *matmul
floor*, the step's matrix products alone.  This tutorial runs a tiny benchmark, reads
its table and its JSON file, and explains the ``ops`` and ``syncs`` columns.

The run here is deliberately tiny (one model, two batch sizes, three short timed
blocks) so that the page builds in seconds; its times are noisy, and it runs on
whatever machine built this site.  **Speed claims come from the full run of the
command line** (``nnx-bench --threads 1 --plot bench.png``, on a quiet machine), and
they are stated as ratios against a reference measured in the same run, never as
absolute times.  ``bench/results/README.md`` in the repository lists the committed
runs and how to reproduce them.
"""

# %%
# Running it
# ----------
#
# ``nnx-bench`` is a command; from Python, run it in a subprocess with the same
# interpreter (``python -m nnx.benchmark`` is the same program).  ``--json`` writes
# every number with the machine's details, ``--plot`` draws throughput against batch
# size.  ``--threads 1`` pins NumPy's BLAS and PyTorch to one thread, so that the
# implementations compete on equal terms.

import importlib.util
import json
import pathlib
import subprocess
import sys
import tempfile

import matplotlib.pyplot as plt

installed = importlib.util.find_spec
backends = "numpy" + (",strict" if installed("array_api_strict") else "") \
    + (",torch:cpu" if installed("torch") else "")
folder = pathlib.Path(tempfile.mkdtemp())
command = [sys.executable, "-m", "nnx.benchmark", "--backends", backends,
           "--models", "mlp", "--batch-sizes", "100,500", "--threads", "1",
           "--repeats", "3", "--min-time", "0.02", "--warmup", "2",
           "--json", str(folder / "bench.json"), "--plot", str(folder / "bench.png")]
print(" ".join(["nnx-bench"] + command[3:]).replace(str(folder) + "/", ""))
run = subprocess.run(command, capture_output=True, text=True)
if run.returncode != 0:                # nnx-bench ends a failure with one line saying why
    raise RuntimeError(run.stderr.strip().splitlines()[-1])
print("exit status", run.returncode)

# %%
# The table
# ---------
#
# Standard output is the table (progress goes to standard error).  The header says
# what the machine is (CPU, BLAS and its threads, malloc settings); then one block per
# model and mode.  Each row is one implementation on one device at one batch size:
# ``samples/s`` and ``ms/step`` are the median over the timed blocks, ``IQR ms`` their
# spread (a warning is printed under the table when it is wide: a busy machine), and
# the ``x``-columns are time ratios against the references of the same run: below 1
# is faster than ``numpy`` (the hand-written step), ``torch`` (PyTorch eager) or
# ``floor``.

print(run.stdout)

# %%
# Operations and synchronisations per step
# ----------------------------------------
#
# Two columns do not depend on how busy the machine is.  ``ops`` counts the array
# operations one step issues: on a GPU each is a kernel launch, whose fixed cost
# dominates small layers.  nnx counts them on the torch device (top-level operators in
# ``torch.profiler``) and on array-api-strict (every namespace call and operator), views
# left out; NumPy rows show ``-``.  ``syncs`` counts the readbacks from device to host
# inside a step (``float()``, ``bool()`` of an array): each makes the host wait for the
# device.  nnx's training step has none.  The JSON file holds the same numbers, one
# record per row; here are the training rows again, narrowed to these columns.

results = json.loads((folder / "bench.json").read_text())
print("format:", results["format"], "- records:", len(results["results"]))


def cell(value):
    return "-" if value is None else value


print(f"{'training step':<28} {'batch':>5} {'ms/step':>8} {'xnumpy':>6} {'xtorch':>6} "
      f"{'xfloor':>6} {'ops':>4} {'syncs':>5}")
for r in results["results"]:
    if r["mode"] == "train":
        print(f"{r['label']:<28} {r['batch']:>5} {r['median_ms']:>8.3f} {cell(r['vs_numpy']):>6} "
              f"{cell(r['vs_torch']):>6} {cell(r['vs_floor']):>6} {cell(r['ops_per_step']):>4} "
              f"{cell(r['syncs_per_step']):>5}")

# %%
# The ratios, read from the JSON
# ------------------------------
#
# A ratio is only meaningful against a reference timed in the same run, on the same
# machine, at the same moment; ``vs_floor`` says how far a step is from the time its
# matrix products alone take.  Here, nnx's training step on NumPy against the
# hand-written NumPy step and against the floor (``infer``: inference):

for r in results["results"]:
    if r["impl"] == "nnx" and r["device"] == "cpu":
        print(f"{r['mode']:<9} batch {r['batch']:>4}: {r['median_ms']:.3f} ms, "
              f"x numpy {r['vs_numpy']}, x floor {r['vs_floor']}")

# %%
# The plot
# --------
#
# ``--plot`` draws samples per second against batch size, one panel per model and
# mode, one line per implementation and device.  This is the file it wrote:

image = plt.imread(folder / "bench.png")
fig, ax = plt.subplots(figsize=(9, 9 * image.shape[0] / image.shape[1]))
ax.imshow(image)
ax.set_axis_off()
fig.tight_layout()
plt.show()

# %%
# For real numbers, run the full benchmark from a shell (every model, batch sizes 100
# to 1000, 15 timed blocks of at least 50 ms each) on a quiet machine, and quote its
# ratios: :doc:`../guide/benchmarks` describes every column and option.
