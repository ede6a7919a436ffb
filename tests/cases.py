"""The modules and losses every backend is checked on, with inputs that avoid kinks."""

import numpy as np

import nnx

WIDTH, BATCH, CLASSES = 5, 4, 3


def away_from_zero(shape, rng):
    """Random values with |x| >= 0.1, so ReLU-like kinks sit far from every finite step."""
    return np.sign(rng.standard_normal(shape)) * (0.1 + np.abs(rng.standard_normal(shape)))


MODULES = {
    "Linear": lambda: nnx.Linear(WIDTH, CLASSES),
    "Tanh": nnx.Tanh,
    "Sigmoid": nnx.Sigmoid,
    "ReLU": nnx.ReLU,
    "LeakyReLU": lambda: nnx.LeakyReLU(0.1),
    "PReLU-shared": nnx.PReLU,
    "PReLU-per-feature": lambda: nnx.PReLU(WIDTH, init=0.2),
    "Softplus": nnx.Softplus,
    "Softmax": nnx.Softmax,
    "LogSoftmax": nnx.LogSoftmax,
    "Dropout": lambda: nnx.Dropout(0.3),
    "L2Normalize": nnx.L2Normalize,
    "MLP-tanh": lambda: nnx.Sequential(nnx.Linear(WIDTH, 7), nnx.Tanh(), nnx.Linear(7, CLASSES)),
    "MLP-deep": lambda: nnx.Sequential(
        # a row of zeros out of ReLU would put the next layer's output at b = 0, exactly on
        # PReLU's kink: Sigmoid sits between them
        nnx.Linear(WIDTH, 6), nnx.ReLU(), nnx.Linear(6, 6), nnx.Sigmoid(), nnx.Linear(6, 4),
        nnx.PReLU(4), nnx.Linear(4, CLASSES), nnx.Softmax()),
    "Sequential-nested": lambda: nnx.Sequential(
        nnx.Sequential(nnx.Linear(WIDTH, 6), nnx.Softplus()), nnx.L2Normalize(),
        nnx.Sequential(nnx.Linear(6, CLASSES), nnx.LogSoftmax())),
}


def labels(rng):
    return rng.integers(0, CLASSES, BATCH)


def onehot(rng):
    return np.eye(CLASSES)[labels(rng)]


LOSSES = {   # name: (loss factory, scores maker, targets maker)
    "SoftmaxCrossEntropy-labels": (nnx.SoftmaxCrossEntropy,
                                   lambda r: r.standard_normal((BATCH, CLASSES)), labels),
    "SoftmaxCrossEntropy-onehot": (nnx.SoftmaxCrossEntropy,
                                   lambda r: r.standard_normal((BATCH, CLASSES)), onehot),
    "CrossEntropy": (nnx.CrossEntropy,
                     lambda r: r.uniform(0.1, 1.0, (BATCH, CLASSES)), onehot),
    "MSE": (nnx.MSE, lambda r: r.standard_normal((BATCH, CLASSES)),
            lambda r: r.standard_normal((BATCH, CLASSES))),
    "BCEWithLogits": (nnx.BCEWithLogits, lambda r: r.standard_normal((BATCH, CLASSES)),
                      lambda r: r.uniform(0, 1, (BATCH, CLASSES))),
    "Hinge": (nnx.Hinge, lambda r: 3 * r.standard_normal((BATCH, CLASSES)), labels),
}


def as_device(host, dtype):
    """Floats take ``dtype``; integer labels stay integers."""
    return nnx.asarray(host, dtype=dtype if host.dtype.kind == "f" else None)
