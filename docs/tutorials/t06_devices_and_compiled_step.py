"""
Devices, operations per step and the compiled step
==================================================

nnx's layers are written once against the Python Array API standard, so the same network
runs on NumPy, PyTorch tensors, JAX arrays and CuPy (NVIDIA GPUs).  This page trains one
small network on every device available where it is built, checks that they agree, then
looks at what decides speed on a GPU — how many array operations a training step issues,
each of them a kernel launch — counts them, and ends with :func:`nnx.compile_step`, which
turns the whole step into one compiled program where the device can compile it (JAX).

Devices that are not installed here are skipped with the reason nnx gives.
"""

# %%
# Which devices are there?
# ------------------------
#
# :func:`nnx.devices` lists every device string nnx knows, with ``None`` for those usable
# here and a one-line reason for the others.  ``cpu`` is NumPy; ``torch:cpu`` and
# ``jax:cpu`` are PyTorch and JAX on the processor; ``cuda`` is CuPy, ``torch:cuda`` and
# ``jax:cuda`` the same libraries on a GPU; ``strict`` is array-api-strict, a library that
# implements the standard and nothing more (it catches code that relies on one library's
# extras).

import time

import matplotlib.pyplot as plt
import numpy as np

import nnx
from nnx.testing import count_ops

for name, reason in nnx.devices().items():
    print(f"{name:18} {'usable' if reason is None else 'not usable: ' + reason}")

# %%
# The same network everywhere
# ---------------------------
#
# A device is chosen for a block with ``with nnx.device(...)`` (or for the rest of the
# session with :func:`nnx.set_device`): new modules put their parameters there, and
# :func:`nnx.asarray` moves data there.  Initial weights come from one host generator
# (:func:`nnx.seed`), so the same seed gives the same weights on every device.
#
# Train the same 20-32-3 network for 30 steps of SGD with momentum on the same data on each
# device, in float32, and compare the final loss and the trained weights with NumPy's.
# (JAX needs a process-wide switch for float64, so this page stays in float32 everywhere.)

rng = np.random.default_rng(0)
x_host = rng.normal(size=(64, 20)).astype(np.float32)
t_host = (x_host[:, :3] @ np.array([1.0, -1.0, 0.5]) > 0).astype(np.int64) \
    + (x_host[:, 3] > 1.0).astype(np.int64)          # three classes, 0 1 2


def make_net():
    nnx.seed(0)
    return nnx.Sequential(nnx.Linear(20, 32), nnx.Tanh(), nnx.Linear(32, 3))


def train_on(spec, steps=30):
    """(loss per step, trained weights on the host) after training on ``spec``."""
    with nnx.device(spec):
        net = make_net()
        loss, opt = nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1, momentum=0.9)
        x, t = nnx.asarray(x_host), nnx.asarray(t_host)
        values = []
        for _ in range(steps):
            values.append(loss.fprop(net.fprop(x), t))
            net.bprop(loss.bprop(), need_input_grad=False)
            opt.step()
        return [float(v) for v in values], [nnx.to_numpy(p) for p in net.params()]


candidates = ["cpu", "torch:cpu", "jax:cpu", "strict", "cuda", "torch:cuda", "jax:cuda"]
results = {}
for spec in candidates:
    try:
        results[spec] = train_on(spec)
    except nnx.DeviceError as e:
        print(f"{spec:11} skipped: {e}")
reference_losses, reference_params = results["cpu"]
for spec, (losses, params) in results.items():
    worst = max(np.abs(p - q).max() for p, q in zip(params, reference_params))
    print(f"{spec:11} loss {losses[0]:.4f} -> {losses[-1]:.4f}   "
          f"largest weight difference from cpu {worst:.1e}")
print("the current device is still", nnx.get_device())

# %%
# The weights agree to float32 rounding (about 1e-7 relative, a little more after 30 steps
# of accumulating different rounding in different matrix-multiply kernels; on a GPU the
# gap can be larger, since some libraries multiply float32 matrices at a reduced internal
# precision, TF32, by default).  Since every backend runs the same layer code, a layer
# proven on one (:func:`nnx.gradcheck`, :func:`nnx.testing.check_module`) is the same
# formula on all of them.

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
styles = ["-", "--", ":", "-."]
for k, (spec, (losses, _)) in enumerate(results.items()):
    ax.plot(losses, label=spec, lw=1.5, ls=styles[k % 4], color=f"C{k}")
    gap = np.abs(np.array(losses) - np.array(reference_losses))
    if spec != "cpu":
        ax2.semilogy(np.where(gap > 0, gap, np.nan), label=spec, lw=1.5, ls=styles[k % 4],
                     marker=".", color=f"C{k}")
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy")
ax.set_title("the same training run on every device")
ax.legend(fontsize=8)
ax2.set_xlabel("step")
ax2.set_ylabel("|loss − loss on cpu|")
ax2.set_title("difference from NumPy (float32)")
if ax2.lines:
    ax2.legend(fontsize=8)
plt.show()

# %%
# On the right, the gaps in a line are steps where the two losses are exactly equal; the
# others differ in the last bits of float32 (whose spacing near 1 is 1.2e-7).

# %%
# Why the number of operations matters on a GPU
# ---------------------------------------------
#
# On a GPU every array operation (a matrix product, an elementwise ``tanh``, a sum) is a
# *kernel* that the processor asks the GPU to run.  Each launch costs a few microseconds
# however little work the kernel does, and a Python framework adds its own dispatch time on
# top.  For small layers the arithmetic takes less time than that, so a training step
# costs roughly *(number of operations) × (cost of one launch)*, whatever the batch size.
# Reading a value back to the host (``float(loss)``) costs more: the host waits until all
# the queued work is done, and the GPU then idles until the host queues more.
#
# nnx counts the operations a call issues by running it on array-api-strict arrays and
# counting every call into the namespace and every array operator (views — reshape,
# transpose, slicing — are free and listed apart).  The helper is
# :func:`nnx.testing.count_ops`, the counter nnx's own tests use to keep these numbers
# from creeping up.  One SGD step of the 784-200-10 MLP, fprop, loss, bprop and the update:


def one_step_count(make, batch, read_loss=False):
    with nnx.device("strict"):
        net = make()
        loss, opt = nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.01, momentum=0.9)
        loss.check_labels = False           # labels checked once, as nnx.fit does
        x = nnx.asarray(np.random.default_rng(0).random((batch, 784), dtype=np.float32))
        t = nnx.asarray(np.arange(batch) % 10)

        def step():
            value = loss.fprop(net.fprop(x), t)
            net.bprop(loss.bprop(), need_input_grad=False)
            opt.step()
            if read_loss:
                float(value)

        step()
        step()                              # the first steps build cached index tables
        return count_ops(step)


mlp = lambda: nnx.models.mlp(784, 10, (200,))
for batch in (100, 1000):
    c = one_step_count(mlp, batch)
    print(f"mlp, batch {batch:4}: {c.ops} operations, {c.views} views, "
          f"{c.readbacks} readbacks")
print("by name:", dict(c.by_name.most_common()))
c = one_step_count(mlp, 100, read_loss=True)
print(f"with float(loss) in every step: {c.ops} operations, {c.readbacks} readback")

# %%
# The count does not depend on the batch size: a batch of 1000 costs the same number of
# launches as a batch of 100, so on a GPU the larger batch is nearly free until the
# arithmetic itself dominates.  And the step reads nothing back, unless you ask for the
# loss: keep the 0-d loss arrays and read them when you need them (once per epoch), as
# :func:`nnx.fit` does.
#
# A convolutional network issues more operations per layer (im2col and col2im are gathers;
# batch normalisation is about a dozen elementwise operations each way).  Counting each
# layer's fprop and bprop of :func:`nnx.models.cnn` shows where they go:

with nnx.device("strict"):
    cnn = nnx.models.cnn()
    h = nnx.asarray(np.random.default_rng(0).random((50, 784), dtype=np.float32))
    rows = []
    for layer in cnn.children():
        for _ in range(2):                  # warm the caches, then count
            out = []
            f = count_ops(lambda: out.append(layer.fprop(h)))
            g = nnx.asarray(np.ones(tuple(out[0].shape), dtype=np.float32))
            b = count_ops(lambda: layer.bprop(g))
        rows.append((type(layer).__name__, f.ops, b.ops))
        h = out[0]
for name, f_ops, b_ops in rows:
    print(f"{name:10} fprop {f_ops:3}  bprop {b_ops:3}")
print("whole step of the cnn:", one_step_count(nnx.models.cnn, 100).ops, "operations")

# %%
# (Here every bprop also computes its input's gradient, which a training step skips for
# the first convolution with ``need_input_grad=False``; the whole step adds the loss and
# the optimiser's update, a handful of operations for all parameters together.)  These
# counts are what nnx keeps small: ``bench/ops_per_step.py`` in the repository prints them
# beside PyTorch eager's for the same models.
#
# The compiled step
# -----------------
#
# A compiler can remove the launch cost altogether: JAX's ``jax.jit`` traces a function
# once, fuses its operations and runs the whole thing as one program.
# :func:`nnx.compile_step` applies it to the whole training step — fprop, loss, bprop and
# the optimiser's update — with the parameters and the optimiser's state passed in and
# returned.  ``step(x, t)`` returns the batch loss as a 0-d array (not read back), and
# afterwards the modules hold the new parameters exactly as after an eager step.  On
# PyTorch's CPU the step is traced once by torch.fx into one graph and compiled by
# ``torch.compile`` (Inductor, a few seconds at the first call of each batch shape).  Where
# the device cannot compile (NumPy, CuPy, array-api-strict) it runs the same step eagerly,
# and ``step.mode`` and ``step.reason`` say so:

with nnx.device("cpu"):
    net = make_net()
    loss, opt = nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1, momentum=0.9)
    step = nnx.compile_step(net, loss, opt)
    print("cpu:", step.mode, "-", step.reason)

# %%
# On JAX the same call gives one jitted program, compiled at its first call for each batch
# shape (``step.compile_seconds``).  Compare 30 compiled steps with the 30 NumPy steps from
# above, and time a step both ways:

try:
    with nnx.device("jax:cpu"):
        net = make_net()
        loss, opt = nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1, momentum=0.9)
        step = nnx.compile_step(net, loss, opt)
        print("jax:cpu:", step.mode, "-", step.reason)
        x, t = nnx.asarray(x_host), nnx.asarray(t_host)
        values = [step(x, t) for _ in range(30)]
        compiled_losses = [float(v) for v in values]
        worst = max(np.abs(nnx.to_numpy(p) - q).max()
                    for p, q in zip(net.params(), reference_params))
        print(f"compiled on jax:cpu: loss {compiled_losses[0]:.4f} -> "
              f"{compiled_losses[-1]:.4f}, largest weight difference from the eager "
              f"NumPy run {worst:.1e}")
        print("compiled once per batch shape:", list(step.compile_seconds))

        eager_net = make_net()
        eager_loss = nnx.SoftmaxCrossEntropy()
        eager_opt = nnx.SGD(eager_net, lr=0.1, momentum=0.9)
        eager = nnx.compile_step(eager_net, eager_loss, eager_opt, mode="eager")
        for name, s in (("eager", eager), ("jit", step)):
            s(x, t)
            nnx.synchronize()
            start = time.perf_counter()
            for _ in range(20):
                s(x, t)
            nnx.synchronize()
            ms = (time.perf_counter() - start) / 20 * 1e3
            print(f"jax:cpu {name:5}: {ms:.2f} ms per step")

        drop = nnx.Sequential(nnx.Linear(20, 32), nnx.Tanh(), nnx.Dropout(0.5),
                              nnx.Linear(32, 3))
        s = nnx.compile_step(drop, nnx.SoftmaxCrossEntropy(), nnx.SGD(drop, lr=0.1))
        print("with Dropout:", s.mode, "-", s.reason)
except nnx.DeviceError as e:
    print("jax:cpu skipped:", e)
print("the current device is still", nnx.get_device())

# %%
# The timings depend on the machine (and on this page they were measured while the
# documentation was being built), but the order is the point: eager JAX pays Python
# dispatch for each of the step's operations, the jitted step pays it once.  A network
# with active :class:`nnx.Dropout` is jitted too: its masks are drawn from nnx's host
# generator (``nnx.seed``) in the eager step's order and passed into the program, so it
# trains exactly as the eager step does; the first step of each batch shape runs eagerly
# to learn the masks' shapes.  :func:`nnx.fit` takes ``compile=True`` and
# ``nnx train --compile`` does the same on the command line.
