"""
Attention by hand
=================

Self-attention lets every position of a sequence read from every other position, with
weights it computes itself.  This page writes scaled dot-product attention in a few lines
of NumPy, derives its backward pass (the softmax Jacobian and four matrix products),
checks both against :class:`nnx.MultiHeadAttention` to rounding error, splits it into
heads, adds the causal mask, and trains a one-layer attention model on a small task whose
attention map can be read off a plot.

Sequences are batch first: (N, T, d_model).  Everything runs on NumPy in float64.
"""

# %%
# Scaled dot-product attention
# ----------------------------
#
# Each position t of the input (a row :math:`x_t` of length d) is projected three ways,
# into a *query* :math:`q_t`, a *key* :math:`k_t` and a *value* :math:`v_t` (all of
# length D).  Position t gives position u the score :math:`q_t \cdot k_u / \sqrt{D}`, turns
# its scores into weights that sum to 1 with a softmax, and outputs the weighted mean of the
# values.  For a whole sequence, with Q, K, V the (T, D) matrices of those rows:
#
# .. math::
#
#    S = \frac{Q K^\top}{\sqrt D}, \qquad
#    P_{tu} = \frac{e^{S_{tu}}}{\sum_{u'} e^{S_{tu'}}}, \qquad
#    O = P V
#
# P is the *attention map*: row t says how much position t reads from each position u.  The
# :math:`\sqrt D` keeps the scores of order 1 when the entries of q and k are (dividing a
# sum of D products by its typical size), so the softmax does not start out saturated.
# Subtracting each row's maximum before the exponential changes nothing in P and keeps
# :math:`e^S` from overflowing.  Batched over any leading axes (examples, heads), that is:

import matplotlib.pyplot as plt
import numpy as np

import nnx

nnx.seed(0)
rng = np.random.default_rng(0)


def causal_allowed(T):
    """allowed[t, u] = (u <= t): position t may read positions up to itself."""
    return np.tril(np.ones((T, T), dtype=bool))


def attention(q, k, v, causal=False):
    """O = softmax(Q Kᵀ / √D) V over the last two axes; returns O and the map P."""
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        s = np.where(causal_allowed(s.shape[-1]), s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    return p @ v, p


# %%
# The backward pass
# -----------------
#
# Given :math:`dO = \partial L/\partial O`, go back through the three lines one at a time.
#
# 1. :math:`O = PV` is a matrix product: :math:`dV = P^\top dO` and :math:`dP = dO\, V^\top`.
# 2. The softmax acts on each row separately.  For one row p = softmax(s),
#    :math:`\partial p_j / \partial s_k = p_j(\delta_{jk} - p_k)` (differentiate
#    :math:`e^{s_j} / \sum e^{s}`: the numerator gives :math:`p_j \delta_{jk}`, the
#    denominator :math:`-p_j p_k`).  So
#
#    .. math::
#
#       dS_k = \sum_j dP_j\, p_j (\delta_{jk} - p_k) = p_k \Big(dP_k - \sum_j dP_j\, p_j\Big)
#
#    or, for the whole matrix, :math:`dS = P \odot (dP - \mathrm{rowsum}(dP \odot P))`:
#    the T × T Jacobian of each row is never formed, one product and one row sum do.
#    Masked entries have :math:`P = 0`, so they get :math:`dS = 0` by themselves.
# 3. :math:`S = QK^\top/\sqrt D` is a matrix product again:
#    :math:`dQ = dS\, K / \sqrt D` and :math:`dK = dS^\top Q / \sqrt D`.


def attention_backward(q, k, v, p, do):
    """(dQ, dK, dV) from dO, with the map P saved by the forward pass."""
    dv = np.swapaxes(p, -1, -2) @ do
    dp = do @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    scale = 1.0 / np.sqrt(q.shape[-1])
    return ds @ k * scale, np.swapaxes(ds, -1, -2) @ q * scale, dv


# %%
# Prove it before using it: for :math:`L = \sum O \odot G` with a random G, the derivative
# of L along a random direction E of Q (or K, or V) must equal :math:`\sum dQ \odot E`.
# Central differences, :math:`(L(Q + hE) - L(Q - hE)) / 2h`, give that derivative with
# an error of order :math:`h^2`:

T, D = 5, 4
q, k, v = (rng.normal(size=(T, D)) for _ in range(3))
G = rng.normal(size=(T, D))
o, p = attention(q, k, v)
grads = attention_backward(q, k, v, p, G)
h = 1e-5
for name, i in (("dQ", 0), ("dK", 1), ("dV", 2)):
    E = rng.normal(size=(T, D))
    moved = [[q, k, v], [q, k, v]]
    moved[0][i], moved[1][i] = moved[0][i] + h * E, moved[1][i] - h * E
    plus, minus = (attention(*m)[0] for m in moved)
    numeric = ((plus * G).sum() - (minus * G).sum()) / (2 * h)
    print(f"{name}: backward {np.sum(grads[i] * E):+.10f}, "
          f"finite difference {numeric:+.10f}")
print("each row of P sums to 1:", np.allclose(p.sum(axis=1), 1.0))

# %%
# Multi-head attention
# --------------------
#
# One attention map lets each position read from one mixture of places.  *Multi-head*
# attention runs H attentions side by side on slices of the features: project x to
# [Q | K | V] with one matrix, cut each of Q, K and V into H heads of D = d/H features,
# attend in every head at once (the heads become one more batch axis), glue the heads'
# outputs back together and mix them with an output projection:
#
# .. math::
#
#    [Q\,|\,K\,|\,V] = x W_{qkv} + b_{qkv}, \qquad
#    O_h = \mathrm{attention}(Q_h, K_h, V_h)
#
# .. math::
#
#    y = [O_1 | \dots | O_H]\, W_{out} + b_{out}
#
# Splitting and merging heads are reshapes and transposes, (N, T, d) ↔ (N, H, T, D); their
# backward passes are the reverse reshapes.  The backward pass of the two projections is
# that of :class:`nnx.Linear` (:math:`dW = x^\top dy`, summed over all N·T rows):


def split_heads(a, heads):                 # (N, T, d) -> (N, H, T, D)
    n, t, d = a.shape
    return a.reshape(n, t, heads, d // heads).transpose(0, 2, 1, 3)


def merge_heads(a):                        # (N, H, T, D) -> (N, T, d)
    n, heads, t, d_head = a.shape
    return a.transpose(0, 2, 1, 3).reshape(n, t, heads * d_head)


def mha_forward(x, W_qkv, b_qkv, W_out, b_out, heads, causal=False):
    d = x.shape[-1]
    qkv = x @ W_qkv + b_qkv                                      # (N, T, 3d)
    q, k, v = (split_heads(qkv[..., i * d:(i + 1) * d], heads) for i in range(3))
    o, p = attention(q, k, v, causal)
    o = merge_heads(o)
    return o @ W_out + b_out, (x, q, k, v, p, o)


def mha_backward(dy, cache, W_qkv, W_out, heads):
    x, q, k, v, p, o = cache
    rows = lambda a: a.reshape(-1, a.shape[-1])                 # (N·T, features)
    dW_out, db_out = rows(o).T @ rows(dy), rows(dy).sum(axis=0)
    do = split_heads(dy @ W_out.T, heads)
    dq, dk, dv = attention_backward(q, k, v, p, do)
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)
    dW_qkv, db_qkv = rows(x).T @ rows(dqkv), rows(dqkv).sum(axis=0)
    return dqkv @ W_qkv.T, dW_qkv, db_qkv, dW_out, db_out


# %%
# :class:`nnx.MultiHeadAttention` stores the same four arrays, ``W_qkv`` (d, 3d),
# ``b_qkv``, ``W_out`` (d, d) and ``b_out``, and computes the same lines.  Give the hand
# version its weights (and random biases, so that they are tested too) and compare the
# output and every gradient, with and without the causal mask:

N, T, d, heads = 2, 6, 8, 4
x = rng.normal(size=(N, T, d))
dy = rng.normal(size=(N, T, d))
for causal in (False, True):
    mha = nnx.MultiHeadAttention(d, heads, causal=causal, dtype="float64")
    W_qkv, _, W_out, _ = (nnx.to_numpy(a) for a in mha.params())
    b_qkv, b_out = rng.normal(size=3 * d), rng.normal(size=d)
    mha.set_params([W_qkv, b_qkv, W_out, b_out])
    y_hand, cache = mha_forward(x, W_qkv, b_qkv, W_out, b_out, heads, causal)
    by_hand = mha_backward(dy, cache, W_qkv, W_out, heads)
    y = mha.fprop(nnx.asarray(x, dtype="float64"))
    dx = mha.bprop(nnx.asarray(dy, dtype="float64"))
    theirs = (dx, mha.dW_qkv, mha.db_qkv, mha.dW_out, mha.db_out)
    worst = max(np.abs(nnx.to_numpy(a) - b).max() for a, b in zip(theirs, by_hand))
    print(f"causal={causal}: output differs by "
          f"{np.abs(nnx.to_numpy(y) - y_hand).max():.1e}, "
          f"gradients (dx, dW_qkv, db_qkv, dW_out, db_out) by at most {worst:.1e}")

# %%
# And :func:`nnx.gradcheck` proves the layer itself against finite differences, for the
# input and all four parameter arrays:

print(nnx.gradcheck(mha, nnx.asarray(x[:1], dtype="float64")))

# %%
# The causal mask
# ---------------
#
# A model that predicts the next element of a sequence must not see the future.  The
# causal mask sets :math:`S_{tu} = -\infty` for u > t before the softmax, so that
# :math:`P_{tu} = e^{-\infty} = 0`: each row of P spreads its weight over positions up
# to t only, and P is lower triangular.  The same holds for the gradient: nothing flows
# from position t's output back to later inputs.  Both can be checked directly, by
# changing the last input of the sequence and watching the outputs before it:

print("P of the first head (causal):\n", np.round(cache[4][0, 0], 2))
x2 = x.copy()
x2[:, -1] += 10.0                                # change only the last position
y2 = nnx.to_numpy(mha.fprop(nnx.asarray(x2, dtype="float64")))
y1 = nnx.to_numpy(mha.fprop(nnx.asarray(x, dtype="float64")))
print("largest change at positions 0..T-2:", np.abs(y2[:, :-1] - y1[:, :-1]).max(),
      "  at the last position:", round(float(np.abs(y2[:, -1] - y1[:, -1]).max()), 3))

# %%
# Watching attention learn
# ------------------------
#
# A small task that a single causal attention layer solves by looking in one place: the
# input is a sequence of T = 12 random symbols out of 8 (one-hot rows), and the target at
# position t is the symbol at position t − 2 (the first two positions repeat the first
# symbol).  The network is a :class:`nnx.Linear` embedding, a learned
# :class:`nnx.PositionalEmbedding` (the only way the layer can know *where* a symbol is), a
# one-head causal :class:`nnx.MultiHeadAttention` and a :class:`nnx.Linear` to 8 scores per
# position; :class:`nnx.SoftmaxCrossEntropy` takes (N, T, 8) scores with (N, T) labels.

V, T, d, lag = 8, 12, 16, 2


def symbols_batch(n):
    s = rng.integers(0, V, (n, T))
    target = np.concatenate([s[:, :1].repeat(lag, axis=1), s[:, :-lag]], axis=1)
    return np.eye(V)[s], target


nnx.seed(0)
net = nnx.Sequential(nnx.Linear(V, d), nnx.PositionalEmbedding(T, d),
                     nnx.MultiHeadAttention(d, 1, causal=True), nnx.Linear(d, V))
loss = nnx.SoftmaxCrossEntropy()
opt = nnx.Adam(net, lr=0.02)
x_show, _ = symbols_batch(1)


def attention_map(net, x):
    """The attention map of net's attention layer for input x, from the hand-written
    forward pass and the layer's own weights."""
    h = net[1].fprop(net[0].fprop(nnx.asarray(x)))              # embedding + positions
    W_qkv, b_qkv, W_out, b_out = (nnx.to_numpy(a) for a in net[2].params())
    _, cache = mha_forward(nnx.to_numpy(h), W_qkv, b_qkv, W_out, b_out, 1, causal=True)
    return cache[4][0, 0]                                       # P of example 0


before = attention_map(net, x_show)
losses = []
for step in range(150):
    x_b, t_b = symbols_batch(64)
    losses.append(loss.fprop(net.fprop(nnx.asarray(x_b)), nnx.asarray(t_b)))
    net.bprop(loss.bprop(), need_input_grad=False)
    opt.step()
after = attention_map(net, x_show)
x_test, t_test = symbols_batch(1000)
predicted = nnx.to_numpy(net.fprop(nnx.asarray(x_test))).argmax(axis=-1)
print(f"loss {float(losses[0]):.3f} at the first step, "
      f"{float(losses[-1]):.1e} at step 150; test accuracy at positions 2..11: "
      f"{(predicted == t_test)[:, lag:].mean():.3f}")

fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), layout="constrained")
for ax, m, title in zip(axes, (before, after), ("before training", "after 150 steps")):
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("position u read from")
    ax.set_ylabel("position t")
fig.colorbar(im, ax=axes, shrink=0.8, label="P[t, u]")
plt.show()

# %%
# Before training each row of the map is close to uniform over the positions it may see
# (lower triangle).  After training, row t puts nearly all its weight on u = t − 2: the
# layer learned to look two steps back, through the positional embeddings alone — the
# queries and keys compare positions, and the values carry the symbol.
