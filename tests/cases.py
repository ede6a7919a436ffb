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




def distinct(shape, rng):
    """Values 0.1 apart in random order: no ties within a max-pool window, and no finite
    step (h <= 3e-3 in float32) can change which entry is the maximum."""
    size = int(np.prod(shape))
    return ((rng.permutation(size) - size / 2) * 0.1).reshape(shape)


def batch_norm_eval(c):
    """A BatchNorm in eval mode with running statistics away from (0, 1)."""
    bn = nnx.BatchNorm(c, momentum=0.5)
    bn.fprop(nnx.asarray(3 + 2 * np.random.default_rng(11).standard_normal((6, c, 2, 2))))
    return bn.eval()


MODULES.update({      # convolutional networks; their inputs are in INPUTS
    "Conv2D": lambda: nnx.Conv2D(2, 3, 3),
    "Conv2D-stride-pad-rect": lambda: nnx.Conv2D(2, 3, (3, 2), stride=(2, 1), padding=(1, 2)),
    "Conv2D-1x1-stride": lambda: nnx.Conv2D(2, 3, 1, stride=2),
    "Conv2D-kernel-as-input": lambda: nnx.Conv2D(2, 3, (4, 3)),       # output 1x1
    "MaxPool2D": lambda: nnx.MaxPool2D(2),
    "MaxPool2D-overlap-rect": lambda: nnx.MaxPool2D((3, 2), stride=(1, 2)),
    "MaxPool2D-whole": lambda: nnx.MaxPool2D((4, 3)),                 # output 1x1
    "AvgPool2D": lambda: nnx.AvgPool2D(2),
    "AvgPool2D-overlap-rect": lambda: nnx.AvgPool2D((2, 3), stride=1),
    "PReLU-per-channel": lambda: nnx.PReLU(2, init=0.2),             # axis 1 of images
    "MaxPool2D-pad-ceil": lambda: nnx.MaxPool2D(3, stride=2, padding=1, ceil_mode=True),
    "AvgPool2D-pad-ceil": lambda: nnx.AvgPool2D((3, 2), stride=2, padding=(1, 0),
                                                ceil_mode=True),
    "Flatten": nnx.Flatten,
    "Reshape": lambda: nnx.Reshape((3, 2, 2)),
    "BatchNorm-rows": lambda: nnx.BatchNorm(WIDTH),
    "BatchNorm-images": lambda: nnx.BatchNorm(2),
    "BatchNorm-eval": lambda: batch_norm_eval(2),
    "CNN-small": lambda: nnx.Sequential(
        nnx.Conv2D(1, 2, 3, padding=1), nnx.Tanh(), nnx.AvgPool2D(2), nnx.Conv2D(2, 3, 2),
        nnx.BatchNorm(3), nnx.Flatten(), nnx.Linear(3, CLASSES)),
})

MODULES.update({      # sequence models on (N, T, features); their inputs are in INPUTS
    "Linear-sequence": lambda: nnx.Linear(WIDTH, CLASSES),
    "Softmax-axis1": lambda: nnx.Softmax(axis=1),
    "Dropout-sequence": lambda: nnx.Dropout(0.3),
    "LayerNorm": lambda: nnx.LayerNorm(WIDTH),
    "LayerNorm-rows": lambda: nnx.LayerNorm(WIDTH, eps=1e-3),
    "GELU": nnx.GELU,
    "PositionalEmbedding": lambda: nnx.PositionalEmbedding(5, WIDTH),
    "MultiHeadAttention": lambda: nnx.MultiHeadAttention(6, 2),
    "MultiHeadAttention-causal": lambda: nnx.MultiHeadAttention(6, 3, causal=True),
    "MultiHeadAttention-causal-T1": lambda: nnx.MultiHeadAttention(6, 2, causal=True),
    "TransformerBlock": lambda: nnx.TransformerBlock(6, 2, 8),
    "TransformerBlock-causal": lambda: nnx.TransformerBlock(6, 3, 7, causal=True),
    "MeanOverTime": nnx.MeanOverTime,
})
SEQUENCES = (2, 3, WIDTH)
MODULES.update({      # sequence models: batch-first (N, T, features) inputs in INPUTS
    "Embedding": lambda: nnx.Embedding(7, 3),
    "RNN": lambda: nnx.RNN(3, 4),
    "LSTM": lambda: nnx.LSTM(3, 4),
    "GRU": lambda: nnx.GRU(3, 4),
    "LSTM-T1": lambda: nnx.LSTM(3, 2),
    "TimeStep": nnx.TimeStep,
    "LSTM-classifier": lambda: nnx.Sequential(nnx.LSTM(3, 4), nnx.TimeStep(0),
                                              nnx.Linear(4, CLASSES)),
    "Embedding-GRU": lambda: nnx.Sequential(nnx.Embedding(6, 3), nnx.GRU(3, 2)),
})

IMAGES = (2, 2, 4, 4)
INPUTS = {   # name: host input maker (default: away_from_zero((BATCH, WIDTH)))
    "Conv2D": lambda r: r.standard_normal((2, 2, 5, 5)),
    "Conv2D-stride-pad-rect": lambda r: r.standard_normal((2, 2, 5, 4)),
    "Conv2D-1x1-stride": lambda r: r.standard_normal((2, 2, 5, 3)),
    "Conv2D-kernel-as-input": lambda r: r.standard_normal((2, 2, 4, 3)),
    "MaxPool2D": lambda r: distinct(IMAGES, r),
    "MaxPool2D-overlap-rect": lambda r: distinct((2, 2, 5, 4), r),
    "MaxPool2D-whole": lambda r: distinct((2, 2, 4, 3), r),
    "AvgPool2D": lambda r: r.standard_normal(IMAGES),
    "AvgPool2D-overlap-rect": lambda r: r.standard_normal((2, 2, 4, 5)),
    "PReLU-per-channel": lambda r: away_from_zero((2, 2, 3, 3), r),
    "MaxPool2D-pad-ceil": lambda r: distinct((2, 2, 6, 5), r),
    "AvgPool2D-pad-ceil": lambda r: r.standard_normal((2, 2, 6, 5)),
    "Flatten": lambda r: r.standard_normal((2, 2, 3, 3)),
    "Reshape": lambda r: r.standard_normal((2, 12)),
    "BatchNorm-images": lambda r: 1 + 2 * r.standard_normal((3, 2, 2, 3)),
    "BatchNorm-eval": lambda r: 1 + 2 * r.standard_normal((3, 2, 2, 3)),
    "CNN-small": lambda r: r.standard_normal((3, 1, 4, 4)),
    "Linear-sequence": lambda r: r.standard_normal(SEQUENCES),
    "Softmax-axis1": lambda r: r.standard_normal(SEQUENCES),
    "Dropout-sequence": lambda r: r.standard_normal(SEQUENCES),
    "LayerNorm": lambda r: r.standard_normal(SEQUENCES),
    "GELU": lambda r: 2 * r.standard_normal(SEQUENCES),
    "PositionalEmbedding": lambda r: r.standard_normal(SEQUENCES),
    "MultiHeadAttention": lambda r: r.standard_normal((2, 3, 6)),
    "MultiHeadAttention-causal": lambda r: r.standard_normal((2, 4, 6)),
    "MultiHeadAttention-causal-T1": lambda r: r.standard_normal((3, 1, 6)),
    "TransformerBlock": lambda r: r.standard_normal((2, 3, 6)),
    "TransformerBlock-causal": lambda r: r.standard_normal((2, 3, 6)),
    "MeanOverTime": lambda r: r.standard_normal(SEQUENCES),
    "Embedding": lambda r: r.integers(0, 7, (2, 3)),
    "RNN": lambda r: r.standard_normal((2, 3, 3)),
    "LSTM": lambda r: r.standard_normal((2, 3, 3)),
    "GRU": lambda r: r.standard_normal((2, 3, 3)),
    "LSTM-T1": lambda r: r.standard_normal((2, 1, 3)),
    "TimeStep": lambda r: r.standard_normal((2, 3, 2)),
    "LSTM-classifier": lambda r: r.standard_normal((2, 3, 3)),
    "Embedding-GRU": lambda r: r.integers(0, 6, (2, 4)),
}


def module_input(name, rng):
    """The host input that MODULES[name] is checked on."""
    make = INPUTS.get(name)
    return make(rng) if make is not None else away_from_zero((BATCH, WIDTH), rng)


def labels(rng):
    return rng.integers(0, CLASSES, BATCH)


def onehot(rng):
    return np.eye(CLASSES)[labels(rng)]


LOSSES = {   # name: (loss factory, scores maker, targets maker)
    "SoftmaxCrossEntropy-labels": (nnx.SoftmaxCrossEntropy,
                                   lambda r: r.standard_normal((BATCH, CLASSES)), labels),
    "SoftmaxCrossEntropy-sequence": (nnx.SoftmaxCrossEntropy,        # (N, T, V) scores
                                     lambda r: r.standard_normal((BATCH, 3, CLASSES)),
                                     lambda r: r.integers(0, CLASSES, (BATCH, 3))),
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


def compiled_mode(device):
    """What nnx.compile_step and compile_fprop do by default on ``device``: one jax.jit
    program on JAX, one torch.compile program on torch's CPU, eagerly elsewhere."""
    return "jit" if device.startswith("jax") else \
        "compiled" if device == "torch:cpu" else "eager"
