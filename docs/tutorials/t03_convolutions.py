"""
Convolutions, pooling and batch normalisation
=============================================

A convolutional layer looks like a new kind of operation, but its forward pass is an
ordinary matrix product once the image has been rearranged, and its backward pass is the
backward pass of that matrix product followed by the reverse rearrangement.  This page
builds that rearrangement (*im2col*) by hand for a tiny image, checks that
:class:`nnx.Conv2D` computes exactly that matrix product, derives the backward pass
(*col2im*), and proves it with :func:`nnx.gradcheck`.  Then it does the same for max and
average pooling and for batch normalisation, and trains a small convolutional network on a
few thousand MNIST digits.

Everything runs on NumPy arrays (the ``cpu`` device) in float64, so the hand-written
formulas and the layers can be compared to the last digit.
"""

# %%
# A tiny image and its windows
# ----------------------------
#
# Images are stored as (N, C, H, W): batch, channels, height, width.  A convolution with a
# (kh, kw) kernel slides a window over the image; with stride 1 and no padding it visits
#
# .. math::
#
#    OH = H - kh + 1, \qquad OW = W - kw + 1
#
# places.  At each place it multiplies the window's values by the kernel and sums them
# (strictly a cross-correlation: the kernel is not flipped, as in PyTorch).
#
# *im2col* copies each window into one column of a matrix.  For one example with C
# channels the matrix has C·kh·kw rows (one per kernel entry) and OH·OW columns (one per
# place):
#
# .. math::
#
#    \mathrm{cols}[(c, i, j), (p, q)] = x[c,\ p + i,\ q + j]
#
# Take a 4 × 4 image with the numbers 0..15 and a 3 × 3 kernel: 2 × 2 places, so the
# matrix is 9 × 4.


import matplotlib.pyplot as plt
import numpy as np

import nnx

nnx.seed(0)
rng = np.random.default_rng(0)

image = np.arange(16.0).reshape(1, 1, 4, 4)       # (N, C, H, W)
print(image[0, 0])


def im2col(x, kh, kw):
    """(N, C·kh·kw, OH·OW): every (kh, kw) window of x (N, C, H, W) as a column."""
    n, c, h, w = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    cols = np.empty((n, c, kh, kw, oh, ow))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i:i + oh, j:j + ow]  # entry (i, j), all windows
    return cols.reshape(n, c * kh * kw, oh * ow)


cols = im2col(image, 3, 3)
print("cols shape:", cols.shape)
print(cols[0])

# %%
# Column 0 is the top-left window (0 1 2 / 4 5 6 / 8 9 10) read row by row, column 1 the
# window one step to the right, and so on.  The loop runs over the kh·kw kernel entries,
# not over the places: each iteration copies a whole shifted slice of the image.
#
# The convolution is one matrix product
# -------------------------------------
#
# Reshape the weights W (c_out, C, kh, kw) into a matrix W₂ of shape (c_out, C·kh·kw).  Row
# o of W₂ times column (p, q) of cols is exactly the sum over the window of kernel o, so
#
# .. math::
#
#    y_n = W_2 \cdot \mathrm{cols}_n + b, \qquad y_n: (c_{out},\ OH \cdot OW)
#
# and reshaping y_n to (c_out, OH, OW) gives the output image.  Check it against
# :class:`nnx.Conv2D` with two input channels and three output channels on a random batch:

conv = nnx.Conv2D(2, 3, 3, dtype="float64")          # c_in 2, c_out 3, 3 x 3 kernel
W, b = nnx.to_numpy(conv.W), rng.normal(size=3)
conv.set_params([W, b])                              # a non-zero bias, to see it added
x = rng.normal(size=(4, 2, 6, 6))                    # 4 images, 2 channels, 6 x 6

cols = im2col(x, 3, 3)                               # (4, 18, 16)
W2 = W.reshape(3, -1)                                # (3, 18)
y_by_hand = (W2 @ cols + b[:, None]).reshape(4, 3, 4, 4)
y = conv.fprop(nnx.asarray(x, dtype="float64"))
print("W2", W2.shape, "@ cols", cols.shape, "->", y_by_hand.shape)
print("largest difference from Conv2D.fprop:",
      np.abs(nnx.to_numpy(y) - y_by_hand).max())

# %%
# Conv2D does the same thing: im2col, then one batched matrix product (on NumPy the
# windows come from a strided view instead of copies, with the same layout).
#
# The backward pass: col2im
# -------------------------
#
# Let g = ∂L/∂y, reshaped to (N, c_out, OH·OW).  The forward pass is a rearrangement
# (im2col) followed by a matrix product, so the backward pass goes back through the matrix
# product first, with the usual rules:
#
# .. math::
#
#    \frac{\partial L}{\partial W_2} = \sum_n g_n \cdot \mathrm{cols}_n^\top, \qquad
#    \frac{\partial L}{\partial b} = \sum_{n, p, q} g, \qquad
#    \frac{\partial L}{\partial \mathrm{cols}_n} = W_2^\top \cdot g_n
#
# What is left is ∂L/∂x.  im2col copies each pixel into every column whose window covers
# it; a value used several times receives the sum of the gradients of its copies.  So the
# gradient of im2col, *col2im*, walks over the same windows and **adds** each column entry
# back onto the pixel it was read from:
#
# .. math::
#
#    \frac{\partial L}{\partial x}[c, h, w] = \sum_{(i, j, p, q):\ p + i = h,\ q + j = w}
#    \frac{\partial L}{\partial \mathrm{cols}}[(c, i, j), (p, q)]


def col2im(dcols, x_shape, kh, kw):
    """The adjoint of im2col: add every column entry back onto its pixel."""
    n, c, h, w = x_shape
    oh, ow = h - kh + 1, w - kw + 1
    dcols = dcols.reshape(n, c, kh, kw, oh, ow)
    dx = np.zeros(x_shape)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + oh, j:j + ow] += dcols[:, :, i, j]
    return dx


g = rng.normal(size=(4, 3, 4, 4))                    # some upstream gradient dL/dy
g2 = g.reshape(4, 3, 16)
dW_by_hand = (g2 @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(W.shape)
db_by_hand = g2.sum(axis=(0, 2))
dx_by_hand = col2im(W2.T @ g2, x.shape, 3, 3)

dx = conv.bprop(nnx.asarray(g, dtype="float64"))
for name, mine, theirs in (("dx", dx_by_hand, dx), ("dW", dW_by_hand, conv.dW),
                           ("db", db_by_hand, conv.db)):
    worst = np.abs(nnx.to_numpy(theirs) - mine).max()
    print(f"{name}: largest difference from Conv2D.bprop {worst:.1e}")

# %%
# A quick picture of col2im: the gradient of the sum of all outputs of a 3 × 3 convolution
# with a kernel of ones, on the 4 × 4 image.  Each pixel receives one unit per window that
# covers it: the corners are in one window, the centre pixels in four.

ones_kernel = np.ones((1, 9))
print(col2im(ones_kernel.T @ np.ones((1, 1, 4)), (1, 1, 4, 4), 3, 3)[0, 0])

# %%
# Finite differences agree
# ------------------------
#
# :func:`nnx.gradcheck` perturbs every entry of the input and of each parameter by a small
# h, takes central differences of ``fprop`` and compares them with the rows of the
# Jacobian that ``bprop`` gives.  Here with stride 2 and padding 1, where the windows
# overlap less and part of them covers the zero border:

small = nnx.asarray(rng.normal(size=(2, 2, 5, 5)), dtype="float64")
print(nnx.gradcheck(nnx.Conv2D(2, 3, 3, stride=2, padding=1, dtype="float64"), small))

# %%
# Pooling
# -------
#
# Pooling summarises each window by one number.  With a 2 × 2 window and stride 2 (windows
# side by side), the output is half the size in each direction.
#
# **Max pooling**: :math:`y[p, q] = \max_{i, j} x[2p + i, 2q + j]`.  In a neighbourhood of
# the input the maximum is one fixed entry of the window, so y is that entry and its
# derivative is 1 for it and 0 for the other three: **the gradient of each window goes to
# its maximum alone**.
#
# **Average pooling**: :math:`y[p, q] = \frac{1}{4}\sum_{i, j} x[2p + i, 2q + j]`, linear, so
# **every pixel of a window receives a quarter of the window's gradient**.
#
# Look at what :meth:`nnx.Module.bprop` routes back for an upstream gradient of ones:

x = nnx.asarray(rng.permutation(16).reshape(1, 1, 4, 4), dtype="float64")
print("input\n", nnx.to_numpy(x)[0, 0])
for pool in (nnx.MaxPool2D(2), nnx.AvgPool2D(2)):
    y = pool.fprop(x)
    dx = pool.bprop(nnx.asarray(np.ones((1, 1, 2, 2)), dtype="float64"))
    print(f"{type(pool).__name__}: output\n", nnx.to_numpy(y)[0, 0],
          "\ngradient routed back\n", nnx.to_numpy(dx)[0, 0])

# %%
# In the max pool each 2 × 2 block of the gradient has a single 1, where its maximum is;
# in the average pool every pixel gets 0.25.  Both pass :func:`nnx.gradcheck`, the second
# with overlapping 3 × 3 windows and a zero border that counts in the divisor (random
# inputs have no ties, so the maximum is well defined):

x = nnx.asarray(rng.normal(size=(2, 3, 6, 6)), dtype="float64")
print(nnx.gradcheck(nnx.MaxPool2D(2), x))
print(nnx.gradcheck(nnx.AvgPool2D(3, stride=2, padding=1), x))

# %%
# Batch normalisation
# -------------------
#
# Batch normalisation standardises each channel over the batch, then rescales it with two
# learned vectors γ and β.  For one channel, over its m values (m = N·H·W for images):
#
# .. math::
#
#    \mu = \frac{1}{m}\sum_k x_k, \qquad
#    \sigma^2 = \frac{1}{m}\sum_k (x_k - \mu)^2
#
# .. math::
#
#    s = (\sigma^2 + \epsilon)^{-1/2}, \qquad
#    \hat x_k = (x_k - \mu)\, s, \qquad
#    y_k = \gamma \hat x_k + \beta
#
# The backward pass is where care is needed: every :math:`\hat x_k` depends on every
# :math:`x_j` through μ and σ².  With :math:`g_k = \partial L / \partial y_k`:
#
# 1. The parameters: :math:`\partial L/\partial\beta = \sum_k g_k`,
#    :math:`\partial L/\partial\gamma = \sum_k g_k \hat x_k`.
# 2. Into x̂: :math:`\partial L/\partial \hat x_k = \gamma g_k`.
# 3. The derivatives of the statistics: :math:`\partial\mu/\partial x_j = 1/m` and
#    :math:`\partial\sigma^2/\partial x_j = \frac{2}{m}(x_j - \mu)` (the term through μ
#    vanishes, since the deviations sum to zero), so
#    :math:`\partial s/\partial x_j = -\frac{1}{2} s^3 \cdot \frac{2}{m}(x_j - \mu) = -\frac{s^2}{m}\hat x_j`.
# 4. Then :math:`\partial \hat x_k / \partial x_j = s(\delta_{kj} - \frac{1}{m}) + (x_k - \mu)\,\partial s/\partial x_j
#    = s\left(\delta_{kj} - \frac{1}{m} - \frac{1}{m}\hat x_k \hat x_j\right)`.
# 5. Summing over k with the weights :math:`\gamma g_k`:
#
# .. math::
#
#    \frac{\partial L}{\partial x_j} = \gamma s \left( g_j - \frac{1}{m}\sum_k g_k
#    - \hat x_j \cdot \frac{1}{m}\sum_k g_k \hat x_k \right)
#    = \gamma s \left( g_j - \frac{\partial L/\partial\beta}{m}
#    - \hat x_j \frac{\partial L/\partial\gamma}{m} \right)
#
# The two sums are the parameter gradients already computed, so the whole backward pass
# costs two reductions.  Written out in NumPy for (N, C, H, W) images:


def batch_norm_by_hand(x, gamma, beta, g, eps=1e-5):
    axes, per = (0, 2, 3), (1, -1, 1, 1)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mu = x.mean(axis=axes, keepdims=True)
    s = (((x - mu) ** 2).mean(axis=axes, keepdims=True) + eps) ** -0.5
    xhat = (x - mu) * s
    y = gamma.reshape(per) * xhat + beta.reshape(per)
    dbeta, dgamma = g.sum(axis=axes), (g * xhat).sum(axis=axes)
    dx = gamma.reshape(per) * s * (g - dbeta.reshape(per) / m
                                   - xhat * dgamma.reshape(per) / m)
    return y, dx, dgamma, dbeta


x = rng.normal(2.0, 3.0, size=(4, 3, 5, 5))     # mean 2, spread 3: far from standard
g = rng.normal(size=x.shape)
bn = nnx.BatchNorm(3, dtype="float64")
gamma, beta = rng.normal(size=3), rng.normal(size=3)
bn.set_params([gamma, beta])
y = bn.fprop(nnx.asarray(x, dtype="float64"))
dx = bn.bprop(nnx.asarray(g, dtype="float64"))
mine = batch_norm_by_hand(x, gamma, beta, g)
for name, theirs, m in zip(("y", "dx", "dgamma", "dbeta"),
                           (y, dx, bn.dgamma, bn.dbeta), mine):
    worst = np.abs(nnx.to_numpy(theirs) - m).max()
    print(f"{name}: largest difference from BatchNorm {worst:.1e}")

# %%
# And the proof of the formula itself, by finite differences through μ and σ² (the module
# is in training mode, so every perturbed fprop recomputes the batch statistics):

print(nnx.gradcheck(bn, nnx.asarray(x, dtype="float64")))

# %%
# ("worst rel" is taken over all entries, including those near zero, where the absolute
# error is what counts; an entry fails only when both are out of tolerance.)
#
# A useful check of understanding: drop the two mean terms and use :math:`\gamma s\, g_j`
# alone, as if μ and σ² were constants.  Written as a module of its own (γ = 1, β = 0), its
# bprop is plausible-looking and wrong, and gradcheck says so, naming the worst entry:


class FrozenStatisticsBatchNorm(nnx.Module):
    """x̂ = (x − μ)·s per channel;  WRONG bprop: dx = s·g (μ, s taken as constants)"""

    def fprop(self, x):
        mu = x.mean(axis=(0, 2, 3), keepdims=True)
        self.s = (((x - mu) ** 2).mean(axis=(0, 2, 3), keepdims=True) + 1e-5) ** -0.5
        y = (x - mu) * self.s
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return grad_output * self.s


result = nnx.gradcheck(FrozenStatisticsBatchNorm(), nnx.asarray(x, dtype="float64"),
                       raise_on_failure=False)
print(result)

# %%
# That simpler formula is the right one in evaluation mode (``bn.eval()``), where μ and σ²
# are the running statistics, fixed numbers that do not depend on the batch.
#
# A small CNN on MNIST
# --------------------
#
# :func:`nnx.models.cnn` stacks two blocks of [5 × 5 convolution, batch normalisation,
# 2 × 2 max pool, ReLU] and a linear layer: (N, 784) → (N, 1, 28, 28) → (N, 8, 12, 12) →
# (N, 16, 4, 4) → (N, 10) class scores.  Train it for two passes over 3000 training
# digits (a few seconds) and test it on 1000 others.  MNIST is read by
# :func:`nnx.datasets.load_mnist` from ``$NNX_DATA`` or the download cache.

data = nnx.datasets.load_mnist()
x_train, t_train = nnx.asarray(data.x_train[:3000]), nnx.asarray(data.y_train[:3000])
x_test, t_test = nnx.asarray(data.x_test[:1000]), nnx.asarray(data.y_test[:1000])

nnx.seed(0)
net = nnx.models.cnn()
print(nnx.summary(net, input_shape=(50, 784)))
loss = nnx.SoftmaxCrossEntropy()
opt = nnx.SGD(net, lr=0.05, momentum=0.9)
xp = nnx.device_of(x_train).xp
print("test errors before training:", nnx.evaluate(net, x_test, t_test), "/ 1000")

losses = []                                          # 0-d arrays, read once at the end
for epoch in range(2):
    order = nnx.permutation(3000)
    for i in range(0, 3000, 50):
        idx = order[i:i + 50]
        losses.append(loss.fprop(net.fprop(xp.take(x_train, idx, axis=0)),
                                 xp.take(t_train, idx, axis=0)))
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
losses = [float(v) for v in losses]
print(f"loss: first step {losses[0]:.3f}, last 20 steps {np.mean(losses[-20:]):.3f}")
print("test errors after training:", nnx.evaluate(net, x_test, t_test), "/ 1000")

# %%
# The loss curve, and the eight 5 × 5 filters the first convolution learned (each is the
# kernel of one output channel; dark is negative, light positive):

filters = nnx.to_numpy(net[1].W)[:, 0]               # (8, 5, 5); net[0] is the Reshape
fig = plt.figure(figsize=(9, 3.2), layout="constrained")
left, right = fig.subfigures(1, 2, width_ratios=[1.7, 1])
ax = left.subplots()
ax.plot(losses, lw=1)
ax.set_xlabel("step (batch of 50)")
ax.set_ylabel("cross-entropy")
ax.set_title("training loss")
for k, a in enumerate(right.subplots(2, 4).flat):
    a.imshow(filters[k], cmap="gray")
    a.set_xticks([])
    a.set_yticks([])
right.suptitle("first-layer filters")
plt.show()

