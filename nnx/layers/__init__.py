"""Layers: one small class a file, fprop and bprop side by side."""

from .dropout import Dropout
from .l2_normalize import L2Normalize
from .leaky_relu import LeakyReLU
from .linear import Linear
from .log_softmax import LogSoftmax
from .prelu import PReLU
from .relu import ReLU
from .sigmoid import Sigmoid
from .softmax import Softmax
from .softplus import Softplus
from .tanh import Tanh

__all__ = ["Dropout", "L2Normalize", "LeakyReLU", "Linear", "LogSoftmax", "PReLU", "ReLU",
           "Sigmoid", "Softmax", "Softplus", "Tanh"]
