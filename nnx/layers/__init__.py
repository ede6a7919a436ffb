"""Layers: one small class a file, fprop and bprop side by side."""

from .avg_pool2d import AvgPool2D
from .batch_norm import BatchNorm
from .conv2d import Conv2D
from .dropout import Dropout
from .embedding import Embedding
from .flatten import Flatten
from .gelu import GELU
from .gru import GRU
from .l2_normalize import L2Normalize
from .layer_norm import LayerNorm
from .leaky_relu import LeakyReLU
from .linear import Linear
from .log_softmax import LogSoftmax
from .lstm import LSTM
from .max_pool2d import MaxPool2D
from .mean_over_time import MeanOverTime
from .multi_head_attention import MultiHeadAttention
from .positional_embedding import PositionalEmbedding
from .prelu import PReLU
from .relu import ReLU
from .reshape import Reshape
from .rnn import RNN
from .sigmoid import Sigmoid
from .softmax import Softmax
from .softplus import Softplus
from .tanh import Tanh
from .time_step import TimeStep
from .transformer_block import TransformerBlock

__all__ = ["Dropout", "L2Normalize", "LeakyReLU", "Linear", "LogSoftmax", "PReLU", "ReLU",
           "Sigmoid", "Softmax", "Softplus", "Tanh",
           "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "Reshape", "BatchNorm",
           "LayerNorm", "GELU", "PositionalEmbedding", "MultiHeadAttention", "TransformerBlock",
           "MeanOverTime", "Embedding", "RNN", "LSTM", "GRU", "TimeStep"]
