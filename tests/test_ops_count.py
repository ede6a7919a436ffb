"""Each layer's fprop + bprop issues a fixed, small number of array operations on the
portable path (each one a kernel launch on a GPU) and no readback: independent of the kernel
size, the image size and how many calls came before.  Counted on array-api-strict with
nnx.testing._count; a rise here is a regression for GPUs."""
import numpy as np
import pytest

import nnx
from nnx import models

pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
from nnx.testing._count import count_strict  # noqa: E402

DEV = "strict"


def put(shape, seed=0):
    return nnx.asarray(np.random.default_rng(seed).standard_normal(shape), device=DEV,
                       dtype="float64")


def layer_counts(make, shape, need_input_grad=True):
    """(fprop count, bprop count) of the third call (two before warm the caches); the
    second and third call must cost the same."""
    layer = make()
    x = put(shape)
    got = []
    for _ in range(3):
        out = []
        f = count_strict(lambda: out.append(layer.fprop(x)))
        g = put(tuple(out[0].shape), 1)
        b = count_strict(lambda: layer.bprop(g, need_input_grad=need_input_grad))
        got.append((f, b))
    (f2, b2), (f3, b3) = got[1], got[2]
    assert (f2.ops, b2.ops) == (f3.ops, b3.ops), "the count changes from call to call"
    assert f3.readbacks == b3.readbacks == 0, (f3, b3)
    return f3.ops, b3.ops


# (fprop, bprop) operations; the comments say where they go
LAYERS = {
    # take, matmul, += b  |  db: sum; dW: one matmul (the batch laid out last: no sum over
    # it); dx: zero row concat, matmul, take, sum
    "Conv2D 5x5": (lambda: nnx.Conv2D(3, 4, 5, device=DEV, dtype="float64"), (2, 3, 12, 12),
                   (3, 6)),
    "Conv2D 3x3": (lambda: nnx.Conv2D(3, 4, 3, device=DEV, dtype="float64"), (2, 3, 12, 12),
                   (3, 6)),
    "Conv2D 7x7 stride 2 pad 3": (lambda: nnx.Conv2D(3, 4, 7, stride=2, padding=3, device=DEV,
                                                     dtype="float64"), (2, 3, 15, 15), (4, 6)),
    # take, argmax, ==, max  |  where, take (side-by-side windows: one gather, no sum)
    "MaxPool2D 2": (lambda: nnx.MaxPool2D(2), (2, 3, 8, 8), (4, 2)),
    # overlapping windows: concat of a zero, take, sum in bprop
    "MaxPool2D 3 stride 1": (lambda: nnx.MaxPool2D(3, stride=1), (2, 3, 8, 8), (4, 4)),
    "MaxPool2D 3 stride 2 pad 1 ceil": (lambda: nnx.MaxPool2D(3, stride=2, padding=1,
                                                              ceil_mode=True), (2, 3, 8, 8),
                                        (5, 4)),
    "AvgPool2D 2": (lambda: nnx.AvgPool2D(2), (2, 3, 8, 8), (2, 2)),
    "AvgPool2D 3 stride 2 ceil": (lambda: nnx.AvgPool2D(3, stride=2, ceil_mode=True),
                                  (2, 3, 8, 8), (4, 4)),
    # mean, var, x − μ, +eps, ^−½, ·inv, ·γ, +β (the running statistics fold every 16th
    # step, test below)  |  Σg, g·x̂, Σ, x̂·dγ, +dβ, ·(−1/m), +g, γ·inv, ·
    "BatchNorm images": (lambda: nnx.BatchNorm(3, device=DEV, dtype="float64"),
                         (4, 3, 5, 5), (8, 9)),
    "BatchNorm rows": (lambda: nnx.BatchNorm(3, device=DEV, dtype="float64"), (4, 3), (8, 9)),
    # clip, sign (a float mask)  |  one product
    "ReLU": (lambda: nnx.ReLU(), (2, 3, 4, 4), (2, 1)),
    "Flatten": (lambda: nnx.Flatten(), (2, 3, 4, 4), (0, 0)),
    "Reshape": (lambda: nnx.Reshape((3, 4)), (2, 12), (0, 0)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_costs_a_fixed_number_of_operations(name):
    make, shape, want = LAYERS[name]
    assert layer_counts(make, shape) == want


def test_batch_norm_folds_its_running_statistics_every_16th_step():
    """A training step records its statistics; every 16th folds all 16 into the running
    buffers in 4 operations (stack, matmul, scale, add), and so does a read."""
    bn = nnx.BatchNorm(3, device=DEV, dtype="float64")
    x = put((4, 3, 5, 5))
    for _ in range(16):                 # the first fold of 16 places its weights once
        bn.fprop(x)
    counts = [count_strict(lambda: bn.fprop(x)).ops for _ in range(16)]
    assert counts == [8] * 15 + [12]
    bn.fprop(x)
    bn.running_var
    bn.fprop(x)
    assert count_strict(lambda: bn.running_var).ops == 4
    assert count_strict(lambda: bn.running_var).ops == 0


def test_conv_cost_does_not_grow_with_the_kernel_or_the_image():
    counts = {layer_counts(lambda: nnx.Conv2D(2, 3, k, padding=p, device=DEV,
                                              dtype="float64"), (2, 2, h, h))
              for k, p, h in [(3, 1, 9), (5, 2, 9), (5, 2, 20), (7, 3, 12)]}
    assert counts == {(4, 6)}


def test_first_layer_skips_the_input_gradient():
    make = lambda: nnx.Conv2D(1, 4, 5, device=DEV, dtype="float64")  # noqa: E731
    assert layer_counts(make, (2, 1, 12, 12), need_input_grad=False) == (3, 2)


def loss_counts(loss, z, t):
    loss.fprop(z, t)
    c = count_strict(lambda: (loss.fprop(z, t), loss.bprop()))
    return c.ops, c.readbacks


def test_softmax_cross_entropy_with_labels_costs_12_operations_and_no_readback():
    """Checked once: the second call with the same label array reads nothing back."""
    z, t = put((6, 5)), nnx.asarray(np.arange(6) % 5, device=DEV)
    assert loss_counts(nnx.SoftmaxCrossEntropy(), z, t) == (12, 0)
    z3, t3 = put((2, 3, 5)), nnx.asarray((np.arange(6) % 5).reshape(2, 3), device=DEV)
    assert loss_counts(nnx.SoftmaxCrossEntropy(), z3, t3) == (12, 0)


@pytest.mark.parametrize("make", [nnx.Hinge, nnx.CrossEntropy, nnx.SoftmaxCrossEntropy],
                         ids=["Hinge", "CrossEntropy", "SoftmaxCrossEntropy"])
def test_a_label_array_is_checked_once(make):
    loss = make()
    z = nnx.asarray(np.full((4, 3), 0.3), device=DEV)
    t = nnx.asarray(np.array([0, 1, 2, 0]), device=DEV)
    loss.check_labels = True
    first = count_strict(lambda: loss.fprop(z, t)).readbacks
    again = count_strict(lambda: loss.fprop(z, t)).readbacks
    if make is nnx.CrossEntropy:        # its [0, 1] check reads the inputs, new every step
        assert (first, again) == (2, 1)
    else:
        assert first == 1 and again == 0


def step_count(net, batch=8):
    """Operations of fprop + loss + bprop (no optimiser) at the third step; readbacks."""
    loss = nnx.SoftmaxCrossEntropy()            # checks on: the same labels are checked once
    x = nnx.asarray(np.random.default_rng(0).random((batch, 784)), device=DEV,
                    dtype="float32")
    t = nnx.asarray(np.arange(batch) % 10, device=DEV)

    def step():
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop(), need_input_grad=False)
    step()
    step()
    c = count_strict(step)
    return c.ops, c.readbacks


@pytest.mark.parametrize("name, make, want", [
    ("mlp", lambda: models.mlp(784, 10, (200,)), 25),
    ("deep", lambda: models.mlp(784, 10, (1024, 1024)), 34),
    ("cnn", lambda: models.cnn(), 83),
    ("lstm", lambda: models.lstm(), 28 * 24 + 40)], ids=["mlp", "deep", "cnn", "lstm"])
def test_whole_training_step_counts(name, make, want):
    nnx.seed(0)
    net = make().to(DEV, "float32")
    assert step_count(net) == (want, 0)
    assert step_count(net, batch=32) == (want, 0)       # independent of the batch size


def test_cnn_training_step_on_torch_cpu_stays_within_three_times_torch_eager():
    """nnx.models.cnn's whole step (fprop, loss, bprop, SGD) on torch CPU tensors: 82 aten
    operations, within 3 times torch eager's 29 (the bench's ops column)."""
    pytest.importorskip("torch", reason="torch is not installed")
    from nnx.testing._count import count_torch
    nnx.seed(0)
    net = models.cnn().to("torch:cpu", "float32")
    loss, opt = nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.01)
    x = nnx.asarray(np.random.default_rng(0).random((8, 784)), device="torch:cpu",
                    dtype="float32")
    t = nnx.asarray(np.arange(8) % 10, device="torch:cpu")

    def step():
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
    step()
    step()
    c = count_torch(step)
    assert (c.ops, c.readbacks) == (82, 0), c


def test_hinge_one_hot_targets_are_checked_once():
    loss = nnx.Hinge()
    z = put((4, 3))
    t = nnx.asarray(np.eye(3)[[0, 1, 2, 0]], device=DEV, dtype="float64")
    assert count_strict(lambda: loss.fprop(z, t)).readbacks == 1
    assert count_strict(lambda: loss.fprop(z, t)).readbacks == 0


@pytest.mark.parametrize("name, want", [("BatchNorm images", (8, 7)), ("MaxPool2D 2", (7, 2)),
                                        ("ReLU", (2, 1))])
def test_torch_fuses_multiply_add_and_max_with_argmax(name, want):
    """On torch tensors (CPU or CUDA) backends.fused issues a·b + c as one addcmul and the
    window maximum with its position as one max, g + k·dx as one add: one operation fewer
    for each pair (BatchNorm on torch CPU spends one more on its variance: backends.fast
    squares and averages, torch.var being slow there).  MaxPool2D on torch's CPU: the copy
    of this contiguous (N, C, H, W) input into the batch-last layout its gather reads (in a
    net the layer before hands it over batch-last: no copy), the gather, then the maximum
    and a float mask of its first place in five simple passes (amax, ==, ·ranks, amax, ==;
    fused.max_first_mask), 4 times faster there than torch's max with positions and its
    mask (2 operations; CUDA keeps those)."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from nnx.testing._count import count_torch
    make, shape, _ = LAYERS[name]
    layer = make().to("torch:cpu")
    x = nnx.asarray(np.random.default_rng(0).standard_normal(shape), device="torch:cpu",
                    dtype="float64")
    g = None
    for _ in range(3):
        out = []
        f = count_torch(lambda: out.append(layer.fprop(x)))
        g = torch.ones_like(out[0]) if g is None else g
        b = count_torch(lambda: layer.bprop(g))
    assert (f.ops, b.ops) == want and f.readbacks == b.readbacks == 0


def recurrent_counts(name, steps, need_input_grad=True):
    """(fprop, bprop) counts of an RNN/LSTM/GRU(3, 4) over ``steps`` time steps."""
    layer = getattr(nnx, name)(3, 4, device=DEV, dtype="float64")
    x, g = put((2, steps, 3)), put((2, steps, 4), 1)
    for _ in range(2):
        layer.fprop(x)
        layer.bprop(g, need_input_grad=need_input_grad)
    f = count_strict(lambda: layer.fprop(x))
    b = count_strict(lambda: layer.bprop(g, need_input_grad=need_input_grad))
    assert f.readbacks == b.readbacks == 0, (f, b)
    return f.ops, b.ops


# (forward, backward) per time step; (forward, backward) per call, with the input gradient.
# LSTM step, forward: matmul, + x·W_ihᵀ, tanh (all four gates), ·½ + ½ (σ), c: 3, tanh c,
# h = o·tanh c.  Backward: dh_t: 1, dc_t: 5, da_t: 2 concats, 1 − u², 2 products,
# dh = da_t·W_hh, dc = dc_t·f.  Per call, the weight gradients are one stack and ONE matmul
# dAᵀ·[x | h_{t−1} | 1] (with the stack of h_{t−1}, a ones column and their concat).
RECURRENT = {"RNN": ((3, 3), (5, 10)), "LSTM": ((10, 14), (9, 13)), "GRU": ((12, 9), (12, 25))}


@pytest.mark.parametrize("name", list(RECURRENT))
def test_recurrent_layers_cost_a_fixed_number_of_operations_per_time_step(name):
    per_step, per_call = RECURRENT[name]
    (f2, b2), (f7, b7) = recurrent_counts(name, 2), recurrent_counts(name, 7)
    assert ((f7 - f2) / 5, (b7 - b2) / 5) == per_step
    assert (f2 - 2 * per_step[0], b2 - 2 * per_step[1]) == per_call
    # without dx: one matmul fewer (two for the LSTM, which also scales W_ih for it)
    skipped = recurrent_counts(name, 2, need_input_grad=False)[1]
    assert b2 - skipped == (2 if name == "LSTM" else 1)
