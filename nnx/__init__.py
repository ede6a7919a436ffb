"""nnx: a small deep-learning framework with explicit fprop/bprop on any Array API library.

    net = nnx.Sequential(nnx.Linear(784, 200), nnx.Tanh(), nnx.Linear(200, 10))
    loss = nnx.SoftmaxCrossEntropy()
    opt = nnx.SGD(net, lr=0.1)
    for x, t in batches:
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop())
        opt.step()
"""

from . import backends as _backends

from .device import (Device, asarray, device, device_of, devices, get_default_dtype,
                     get_device, permutation, set_default_dtype, set_device, synchronize,
                     to_numpy)
from .errors import (ArgumentError, ArgumentTypeError, DeviceError, DTypeError,
                     GradcheckError, LabelError, NNXError, NonFiniteError, ShapeError,
                     StateError)
from .gradcheck import GradcheckResult, gradcheck
from .layers import (Dropout, L2Normalize, LeakyReLU, Linear, LogSoftmax, PReLU, ReLU,
                     Sigmoid, Softmax, Softplus, Tanh)
from .layers import AvgPool2D, BatchNorm, Conv2D, Flatten, MaxPool2D, Reshape
from .layers import (GELU, LayerNorm, MeanOverTime, MultiHeadAttention, PositionalEmbedding,
                     TransformerBlock)
from .layers import GRU, LSTM, RNN, Embedding, TimeStep
from .losses import MSE, BCEWithLogits, CrossEntropy, Hinge, Loss, SoftmaxCrossEntropy
from .module import Module
from .optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm
from .sequential import Sequential
from . import datasets
from .checkpoint import CheckpointError, load, save
from .datasets import DatasetError
from .compile import compile_fprop, compile_step
from .train import EpochStats, TrainingDiverged, evaluate, fit
from ._deferred import check_deferred

__version__ = "0.1.0"


def tune_malloc():
    """Opt in to keeping freed memory for reuse between training steps (glibc malloc:
    M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 128 MiB, and M_MMAP_MAX 0, so that even blocks
    above 32 MiB come from the heap and are reused; the process's resident memory then stays
    near its peak).  It changes the whole process, so
    importing nnx never does it; ``nnx train`` and ``nnx-bench`` do unless given
    ``--no-malloc-tuning``.  Returns a line describing the setting in force."""
    from .backends import malloc
    return malloc.tune_malloc()


def seed(value):
    """Seed the host generator behind initial weights, dropout masks and shuffling."""
    from ._checks import non_negative_int
    _backends.host.seed(non_negative_int("seed", "value", value))


__all__ = [
    "Device", "asarray", "device", "device_of", "devices", "get_default_dtype", "get_device",
    "set_default_dtype", "set_device", "synchronize", "to_numpy", "seed", "permutation",
    "tune_malloc",
    "NNXError", "DeviceError", "DTypeError", "GradcheckError", "LabelError", "ShapeError",
    "StateError", "ArgumentError", "ArgumentTypeError", "NonFiniteError",
    "GradcheckResult", "gradcheck",
    "Module", "Sequential", "Linear", "Tanh", "Sigmoid", "ReLU", "LeakyReLU", "PReLU",
    "Softplus", "Softmax", "LogSoftmax", "Dropout", "L2Normalize",
    "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "Reshape", "BatchNorm",
    "LayerNorm", "GELU", "PositionalEmbedding", "MultiHeadAttention", "TransformerBlock",
    "MeanOverTime", "Embedding", "RNN", "LSTM", "GRU", "TimeStep",
    "Loss", "SoftmaxCrossEntropy", "CrossEntropy", "MSE", "BCEWithLogits", "Hinge",
    "Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm",
    "datasets", "DatasetError", "save", "load", "CheckpointError",
    "compile_step", "fit", "evaluate", "check_deferred", "EpochStats", "TrainingDiverged",
    "compile_fprop",
]

from .graph import (Add, Concat, Cos, Exp, Gaussian, Graph, Log, Multiply, RBFNetwork,
                    Residual, Scale, Sin, Split, Square, SquaredDistance, WeightedSum, summary)

__all__ += ["Graph", "Add", "Multiply", "Concat", "Split", "Residual", "Square", "Exp", "Log",
            "Sin", "Cos", "Scale", "SquaredDistance", "Gaussian", "WeightedSum", "RBFNetwork",
            "summary"]

# Submodules that are not part of the core import load on first attribute access
# (``nnx.models.cnn()`` after a plain ``import nnx``), so ``import nnx`` stays light.
_LAZY = ("models", "distributed", "testing")


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
