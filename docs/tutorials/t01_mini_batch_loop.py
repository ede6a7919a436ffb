"""
The mini-batch loop on MNIST
============================

Training a network is one loop: draw a mini-batch, run the network forward
(:meth:`nnx.Module.fprop`), measure the loss, run it backward
(:meth:`nnx.Module.bprop`) and let the optimiser move every parameter a little
against its gradient.  This tutorial writes that loop by hand on a small part of
MNIST, then runs the same training with :func:`nnx.fit`, and plots the loss and
the test error of both, epoch by epoch.
"""

# %%
# The data
# --------
#
# :func:`nnx.datasets.load_mnist` reads the four MNIST files from ``$NNX_DATA``,
# else from ``~/.cache/nnx/mnist`` (downloading them there on first use), and
# checks them.  Images come as float32 rows of 784 pixels in [0, 1], labels as
# integers 0..9.  To keep this page quick we train on the first 5000 training
# images and test on the first 1000 test images.

import matplotlib.pyplot as plt

import nnx
from nnx import datasets

data = datasets.load_mnist()
x_train, t_train = nnx.asarray(data.x_train[:5000]), nnx.asarray(data.y_train[:5000])
x_test, t_test = nnx.asarray(data.x_test[:1000]), nnx.asarray(data.y_test[:1000])
print("train", tuple(x_train.shape), x_train.dtype, " test", tuple(x_test.shape))

# %%
# The network, the loss and the optimiser
# ---------------------------------------
#
# A 784-200-10 multi-layer perceptron with a tanh hidden layer.  Its output is
# ten scores per image; :class:`nnx.SoftmaxCrossEntropy` turns them into
# probabilities :math:`p = \mathrm{softmax}(z)` and measures the mean
# cross-entropy over the batch of :math:`N` images,
#
# .. math::
#
#    L = -\frac{1}{N}\sum_{n=1}^{N} \log p_{n, t_n},
#    \qquad
#    \frac{\partial L}{\partial z_n} = \frac{p_n - \mathrm{onehot}(t_n)}{N}.
#
# :class:`nnx.SGD` with momentum :math:`\mu` keeps a velocity per parameter:
# :math:`v \leftarrow \mu v + g`, then :math:`w \leftarrow w - \eta v`.

EPOCHS, BATCH = 8, 100


def new_model():
    nnx.seed(0)                                  # the same initial weights every time
    net = nnx.Sequential(nnx.Linear(784, 200), nnx.Tanh(), nnx.Linear(200, 10))
    return net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1, momentum=0.9)


net, loss, opt = new_model()
print(net)

# %%
# The loop by hand
# ----------------
#
# Each epoch visits the training set once in a new random order
# (:func:`nnx.permutation`).  For each batch of 100 rows:
#
# 1. ``net.fprop(x)`` computes the scores and caches what bprop needs;
# 2. ``loss.fprop(z, t)`` returns the batch's mean loss (a 0-d array, still on the
#    device: reading it every step would force the device to wait);
# 3. ``loss.bprop()`` returns :math:`\partial L / \partial z`, already divided by
#    the batch size, and ``net.bprop`` carries it back through the layers, leaving
#    each parameter's gradient beside it (``dW`` beside ``W``);
# 4. ``opt.step()`` updates the parameters in place.  Nothing needs zeroing: the
#    next bprop writes fresh gradients.
#
# We add the batch losses up on the device and read the sum once per epoch.

xp = nnx.device_of(x_train).xp                   # the Array API namespace of the arrays
n = x_train.shape[0]
by_hand = []                                     # (mean training loss, test errors)
for epoch in range(1, EPOCHS + 1):
    order = nnx.permutation(n)
    total = 0.0
    for i in range(0, n, BATCH):
        idx = order[i:i + BATCH]
        z = net.fprop(xp.take(x_train, idx, axis=0))
        total = total + loss.fprop(z, xp.take(t_train, idx, axis=0))
        net.bprop(loss.bprop(), need_input_grad=False)   # the data needs no gradient
        opt.step()
    errors = nnx.evaluate(net, x_test, t_test)           # misclassified test images
    by_hand.append((float(total) / (n // BATCH), errors))
    print(f"epoch {epoch}: loss {by_hand[-1][0]:.4f}, test errors {errors} / 1000")

# %%
# The same training with ``fit``
# ------------------------------
#
# :func:`nnx.fit` is this loop with the bookkeeping: the per-epoch loss, train
# accuracy and test errors, learning-rate schedules, and a check that stops with
# an error naming the epoch and step if the loss turns NaN or explodes.  It
# returns one :class:`nnx.EpochStats` per epoch.  ``verbose=2`` prints a row per
# epoch without a progress bar.

net, loss, opt = new_model()
history = nnx.fit(net, loss, opt, x_train, t_train, epochs=EPOCHS, batch_size=BATCH,
                  x_test=x_test, t_test=t_test, verbose=2)

# %%
# The two tables agree to the last digit: both runs start from the same weights and
# draw the same shuffles from the host generator that ``nnx.seed(0)`` seeded, and
# ``fit`` runs exactly the loop above.  The curves lie on top of each other.

epochs = range(1, EPOCHS + 1)
fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(9, 3.5))
ax_loss.plot(epochs, [l for l, _ in by_hand], "o-", lw=4, ms=10, alpha=0.4, label="by hand")
ax_loss.plot(epochs, [s.train_loss for s in history], "s--", label="nnx.fit")
ax_loss.set(xlabel="epoch", ylabel="mean training loss", title="loss")
ax_err.plot(epochs, [e / 10 for _, e in by_hand], "o-", lw=4, ms=10, alpha=0.4, label="by hand")
ax_err.plot(epochs, [s.test_errors / 10 for s in history], "s--", label="nnx.fit")
ax_err.set(xlabel="epoch", ylabel="test error (%)", title="error on 1000 test images")
for ax in (ax_loss, ax_err):
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()
plt.show()

# %%
# With 5000 training images the network ends near 8% test error, and the gap
# between the training loss and the test error says it is starting to memorise
# them: more data is the cure.  ``nnx train --model mlp`` trains the same network
# on all 60000 images from the command line (:doc:`../guide/cli`);
# :doc:`../guide/training` lists the options of ``fit``.
