"""
Backpropagation through time
============================

A recurrent network applies the same cell at every time step, feeding each step's state
into the next.  Unrolled over T steps it is an ordinary deep network whose T layers share
their weights, so its gradient is ordinary backpropagation through that unrolled network:
*backpropagation through time* (BPTT).  This page derives BPTT for a tanh RNN and for an
LSTM, writes the RNN's version by hand and compares it with :class:`nnx.RNN`, proves both
layers with :func:`nnx.gradcheck`, shows why gradients vanish or explode over many steps
and how clipping by the global norm (:func:`nnx.clip_grad_norm`) bounds a step, and trains
a small LSTM that reads MNIST digits row by row.

Sequences are batch first: (N, T, features).  Everything runs on NumPy (the ``cpu``
device), in float64 where hand-written code is compared with the layers.
"""

# %%
# The RNN and its unrolled graph
# ------------------------------
#
# A tanh RNN with H hidden units reads inputs :math:`x_1, \dots, x_T` and keeps a state
# :math:`h_t` (row vectors, one row per example; :math:`h_0 = 0`):
#
# .. math::
#
#    a_t = x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b, \qquad h_t = \tanh(a_t)
#
# :class:`nnx.RNN` returns every :math:`h_t`, as an (N, T, H) array; what follows it (a
# loss on every step, or only on the last one) sends back :math:`g_t = \partial L/\partial h_t`
# for each step, from outside the recurrence.
#
# Backward through time
# ---------------------
#
# :math:`h_t` reaches the loss in two ways: directly (through :math:`g_t`) and through
# :math:`h_{t+1}`, which it feeds.  So its total gradient is
#
# .. math::
#
#    \delta h_t = g_t + \delta a_{t+1} W_{hh}, \qquad
#    \delta a_t = \delta h_t \odot (1 - h_t^2)
#
# using :math:`\tanh' = 1 - \tanh^2`.  This is a recurrence that runs *backwards*: start
# at t = T with :math:`\delta h_T = g_T` (nothing comes after the last step), and step down
# to t = 1.  Because the weights are shared, each weight's gradient is the sum of its
# gradients at every step:
#
# .. math::
#
#    \frac{\partial L}{\partial W_{ih}} = \sum_t \delta a_t^\top x_t, \qquad
#    \frac{\partial L}{\partial W_{hh}} = \sum_t \delta a_t^\top h_{t-1}
#
# .. math::
#
#    \frac{\partial L}{\partial b} = \sum_t \delta a_t, \qquad
#    \frac{\partial L}{\partial x_t} = \delta a_t W_{ih}
#
# Here are both passes in NumPy, for a batch of N sequences:

import matplotlib.pyplot as plt
import numpy as np

import nnx

nnx.seed(0)
rng = np.random.default_rng(0)


def rnn_forward(x, W_ih, W_hh, b):
    n, steps, _ = x.shape
    h = np.zeros((n, W_hh.shape[0]))
    hs = []
    for t in range(steps):
        h = np.tanh(x[:, t] @ W_ih.T + h @ W_hh.T + b)
        hs.append(h)
    return np.stack(hs, axis=1)                       # (N, T, H)


def rnn_backward(x, hs, g, W_ih, W_hh):
    n, steps, _ = x.shape
    h_prev = np.concatenate([np.zeros_like(hs[:, :1]), hs[:, :-1]], axis=1)
    dW_ih, dW_hh, db = np.zeros_like(W_ih), np.zeros_like(W_hh), 0.0
    dx = np.zeros_like(x)
    carried = np.zeros_like(hs[:, 0])                 # delta a_{t+1} W_hh; zero after T
    for t in reversed(range(steps)):
        da = (g[:, t] + carried) * (1 - hs[:, t] ** 2)
        dW_ih += da.T @ x[:, t]
        dW_hh += da.T @ h_prev[:, t]
        db = db + da.sum(axis=0)
        dx[:, t] = da @ W_ih
        carried = da @ W_hh
    return dx, dW_ih, dW_hh, db


# %%
# :class:`nnx.RNN` keeps its weights in PyTorch's layout, ``weight_ih`` (H, n_in),
# ``weight_hh`` (H, H) and two biases ``bias_ih`` and ``bias_hh`` (which add up to b).  Give
# it the same weights and compare the outputs and every gradient:

N, T, n_in, H = 3, 6, 4, 5
rnn = nnx.RNN(n_in, H, dtype="float64")
W_ih, W_hh, b_ih, b_hh = (nnx.to_numpy(p) for p in rnn.params())
x = rng.normal(size=(N, T, n_in))
g = rng.normal(size=(N, T, H))                        # dL/dh_t from outside, every step

hs = rnn_forward(x, W_ih, W_hh, b_ih + b_hh)
dx, dW_ih, dW_hh, db = rnn_backward(x, hs, g, W_ih, W_hh)

y = rnn.fprop(nnx.asarray(x, dtype="float64"))
dx_nnx = rnn.bprop(nnx.asarray(g, dtype="float64"))
print(f"outputs: {y.shape} largest difference {np.abs(nnx.to_numpy(y) - hs).max():.1e}")
for name, mine, theirs in (("dx", dx, dx_nnx), ("dW_ih", dW_ih, rnn.dweight_ih),
                           ("dW_hh", dW_hh, rnn.dweight_hh),
                           ("db_ih", db, rnn.dbias_ih), ("db_hh", db, rnn.dbias_hh)):
    print(f"{name}: largest difference {np.abs(nnx.to_numpy(theirs) - mine).max():.1e}")

# %%
# And finite differences agree with the layer for the input and all four weights:

print(nnx.gradcheck(rnn, nnx.asarray(x, dtype="float64")))

# %%
# Why gradients vanish or explode
# -------------------------------
#
# Unroll the recurrence for a loss that looks only at the last step (:math:`g_t = 0` for
# t < T).  Each step back multiplies the gradient by the same kind of matrix:
#
# .. math::
#
#    \delta h_{t-1} = \delta h_t \, D_t W_{hh}, \qquad D_t = \operatorname{diag}(1 - h_t^2)
#
# so that
#
# .. math::
#
#    \delta h_{t-k} = \delta h_t \, D_t W_{hh}\, D_{t-1} W_{hh} \cdots D_{t-k+1} W_{hh}
#
# a product of k matrices.  The entries of D lie in (0, 1].  If :math:`W_{hh}` shrinks the
# vectors it multiplies (its largest singular value below 1), the product shrinks
# geometrically with k: the first steps barely influence the gradient (**vanishing**).
# If it stretches them by more than 1 and the units are not saturated (:math:`D \approx I`),
# the product grows geometrically (**exploding**): one step of gradient descent can then
# throw the weights far away.
#
# To see it, set :math:`W_{hh} = \rho Q` with Q orthogonal (it keeps lengths, so ρ is the
# stretch of each step), keep the inputs tiny so that the units stay near 0 where
# :math:`\tanh' \approx 1`, put the loss on the last step only, and measure
# :math:`\lVert \partial L / \partial x_t \rVert` at each step t.

T_long, H = 40, 16
Q, _ = np.linalg.qr(rng.normal(size=(H, H)))
x_tiny = nnx.asarray(1e-4 * rng.normal(size=(1, T_long, 8)), dtype="float64")
g_last = np.zeros((1, T_long, H))
g_last[:, -1] = rng.normal(size=H)                    # only the last step has a loss
g_last = nnx.asarray(g_last, dtype="float64")


def input_grad_norms(layer):
    layer.fprop(x_tiny)
    dx = nnx.to_numpy(layer.bprop(g_last))
    return np.linalg.norm(dx[0], axis=1)              # one norm per time step


curves = {}
for rho in (0.8, 1.0, 1.2):
    layer = nnx.RNN(8, H, dtype="float64")
    w_ih, _, b1, b2 = layer.params()
    layer.set_params([w_ih, rho * Q, 0 * b1, 0 * b2])
    curves[f"RNN, ρ = {rho}"] = norms = input_grad_norms(layer)
    print(f"RNN rho={rho}: |dL/dx_t| at the last step {norms[-1]:.2e}, "
          f"{T_long - 1} steps earlier {norms[0]:.2e}")

# %%
# With ρ = 0.8 the gradient loses a factor of about 0.8 per step
# (:math:`0.8^{39} \approx 2\cdot 10^{-4}`), with ρ = 1.2 it gains one
# (:math:`1.2^{39} \approx 10^{3}`).  Real networks sit somewhere in this range and their
# units saturate (D ≪ 1), so vanishing is the common case for long sequences.
#
# The LSTM: a path that is not multiplied by a matrix
# ---------------------------------------------------
#
# An LSTM keeps a second state, the cell :math:`c_t`, and four gates computed from the same
# kind of affine map (in PyTorch's order i, f, g, o):
#
# .. math::
#
#    [a_i, a_f, a_g, a_o] = x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b
#
# .. math::
#
#    i, f, o = \sigma(a_i), \sigma(a_f), \sigma(a_o), \qquad g = \tanh(a_g)
#
# .. math::
#
#    c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t)
#
# Backwards, with :math:`\delta h_t = g^{\mathrm{out}}_t + (\text{what } h_t \text{ fed at } t+1)`
# and :math:`\delta c_t` carried likewise, the chain rule through these two lines gives
#
# .. math::
#
#    \delta c_t \mathrel{+}= \delta h_t \odot o \odot (1 - \tanh^2 c_t)
#
# .. math::
#
#    \delta a_i = \delta c_t \odot g \odot i(1-i), \qquad
#    \delta a_f = \delta c_t \odot c_{t-1} \odot f(1-f),
#
# .. math::
#
#    \delta a_g = \delta c_t \odot i \odot (1-g^2), \qquad
#    \delta a_o = \delta h_t \odot \tanh c_t \odot o(1-o),
#
# and what is carried to step t − 1:
#
# .. math::
#
#    \delta h_{t-1} \mathrel{+}= [\delta a_i, \delta a_f, \delta a_g, \delta a_o]\, W_{hh},
#    \qquad \delta c_{t-1} = \delta c_t \odot f
#
# (the weight gradients are sums over t as for the RNN).  The last line is the point: along
# the cell the gradient is multiplied **elementwise by the forget gate** — no matrix, no
# tanh derivative.  Where the network keeps f close to 1, the gradient travels many steps
# almost unchanged.  :class:`nnx.LSTM` implements exactly these lines; gradcheck proves it
# for the input and all four weight arrays:

lstm = nnx.LSTM(n_in, 5, dtype="float64")
print(nnx.gradcheck(lstm, nnx.asarray(x, dtype="float64")))

# %%
# The same measurement as for the RNN, on an LSTM with its initial weights (the gates start
# near σ(0) = ½, so f ≈ ½ forgets half the cell per step) and on one whose forget-gate
# bias is raised to 3 (f ≈ σ(3) ≈ 0.95):

for forget_bias in (0.0, 3.0):
    layer = nnx.LSTM(8, H, dtype="float64")
    w_ih, w_hh, b_ih, b_hh = layer.params()
    bias = np.zeros(4 * H)
    bias[H:2 * H] = forget_bias                       # the f block of the 4H rows
    layer.set_params([w_ih, w_hh, nnx.asarray(bias, dtype="float64"), 0 * b_hh])
    curves[f"LSTM, forget bias {forget_bias:g}"] = norms = input_grad_norms(layer)
    print(f"LSTM forget bias {forget_bias:g}: |dL/dx_t| at the last step "
          f"{norms[-1]:.2e}, "
          f"{T_long - 1} steps earlier {norms[0]:.2e}")

fig, ax = plt.subplots(figsize=(7, 3.8))
for label, norms in curves.items():
    ax.semilogy(np.arange(T_long), norms, label=label,
                ls="-" if label.startswith("RNN") else "--")
ax.set_xlabel("time step t (the loss is on the last step)")
ax.set_ylabel("‖∂L/∂x_t‖")
ax.set_title("how far back the gradient reaches")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
# With the initial weights the LSTM forgets fast (each step back multiplies the cell's
# gradient by f ≈ ½); with f ≈ 0.95 the gradient 40 steps back is still of the same order
# as at the last step.  That is why a larger forget-gate bias at initialisation is a common
# choice for long sequences (nnx's LSTM starts from PyTorch's initialisation; set the bias
# yourself, as here, to change it).
#
# Clipping by the global norm
# ---------------------------
#
# Vanishing gradients are a matter of architecture (LSTM, GRU, attention).  Exploding ones
# are usually tamed by a simple rule applied to each step's gradient: treat all gradients of
# the network as one long vector g, and if its length exceeds a threshold c, scale it down
# to length c:
#
# .. math::
#
#    \lVert g \rVert = \sqrt{\textstyle\sum_{\text{all parameters } p} \sum (\partial L/\partial p)^2},
#    \qquad g \leftarrow g \cdot \min\!\left(1, \frac{c}{\lVert g \rVert + 10^{-6}}\right)
#
# The direction is kept, only the length is bounded.  :func:`nnx.clip_grad_norm` does this
# to a module's gradients after ``bprop`` (on the device, returning the norm before
# clipping); the optimisers' ``clip_norm=`` does the same inside ``step()``.  On the ρ =
# 1.2 RNN from above, with a loss on the last step:

layer = nnx.RNN(8, H, dtype="float64")
w_ih, _, b1, b2 = layer.params()
layer.set_params([w_ih, 1.2 * Q, 0 * b1, 0 * b2])
layer.fprop(x_tiny)
layer.bprop(g_last)


def global_norm(module):
    return float(np.sqrt(sum((nnx.to_numpy(gr) ** 2).sum() for gr in module.grads())))


before = nnx.clip_grad_norm(layer, 1.0)     # a 0-d array: the norm before clipping
print(f"global gradient norm: {float(before):.3f} before, "
      f"{global_norm(layer):.3f} after clip_grad_norm(layer, 1.0)")

# %%
# Training a small LSTM on MNIST, row by row
# ------------------------------------------
#
# :func:`nnx.models.lstm` reads each 28 × 28 digit as a sequence of 28 rows of 28 pixels,
# keeps the LSTM's last state (:class:`nnx.TimeStep`) and maps it to 10 class scores with a
# :class:`nnx.Linear`: the label is only known after the last row, so the gradient must
# travel back through all 28 steps.  A small one (32 hidden units), 3000 training digits,
# three passes with Adam and ``clip_norm=1``; ``opt.grad_norm`` keeps each step's norm
# before clipping (a 0-d array on the device, read once at the end).

data = nnx.datasets.load_mnist()
x_train, t_train = nnx.asarray(data.x_train[:3000]), nnx.asarray(data.y_train[:3000])
x_test, t_test = nnx.asarray(data.x_test[:1000]), nnx.asarray(data.y_test[:1000])
xp = nnx.device_of(x_train).xp

nnx.seed(0)
net = nnx.models.lstm(hidden=32)
print(net)
loss = nnx.SoftmaxCrossEntropy()
opt = nnx.Adam(net, lr=0.01, clip_norm=1.0)
losses, norms = [], []
for epoch in range(3):
    order = nnx.permutation(3000)
    for i in range(0, 3000, 50):
        idx = order[i:i + 50]
        losses.append(loss.fprop(net.fprop(xp.take(x_train, idx, axis=0)),
                                 xp.take(t_train, idx, axis=0)))
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
        norms.append(opt.grad_norm)
losses = np.array([float(v) for v in losses])
norms = np.array([float(v) for v in norms])
print(f"steps {len(losses)}; loss {losses[:10].mean():.2f} (first 10) -> "
      f"{losses[-10:].mean():.2f} (last 10); "
      f"clipped in {(norms > 1.0).mean():.0%} of the steps")
print("test errors:", nnx.evaluate(net, x_test, t_test), "/ 1000")

fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
a1.plot(losses, lw=1)
a1.set_xlabel("step")
a1.set_ylabel("cross-entropy")
a1.set_title("training loss")
a2.plot(norms, lw=1)
a2.axhline(1.0, color="k", ls=":", lw=1, label="clip_norm")
a2.set_xlabel("step")
a2.set_ylabel("‖g‖ before clipping")
a2.set_title("global gradient norm")
a2.legend(fontsize=8)
fig.tight_layout()
plt.show()
