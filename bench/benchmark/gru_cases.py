"""The row-by-row MNIST GRU of ``nnx train --model gru`` (nnx.models.gru: the LSTM model's
sizes with a GRU(28, 128)), beside PyTorch eager with its nn.GRU and the same weights: the
LSTM's cases (lstm_cases.py) with ``kind="gru"``."""

import functools

from . import lstm_cases

matmul_flops = functools.partial(lstm_cases.matmul_flops, kind="gru")
build_net = functools.partial(lstm_cases.build_net, kind="gru")
nnx_case = functools.partial(lstm_cases.nnx_case, kind="gru")
torch_case = functools.partial(lstm_cases.torch_case, kind="gru")
torch_model = functools.partial(lstm_cases.torch_model, kind="gru")
