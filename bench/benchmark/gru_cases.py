"""The row-by-row MNIST GRU of ``nnx train --model gru`` (nnx.models.gru: the LSTM model's
sizes with a GRU(28, 128)), beside PyTorch eager with its nn.GRU and the same weights."""

import numpy as np

from nnx import backends, models
import nnx

from .cases import nnx_net_case, torch_net_case
from .lstm_cases import CLASSES, FEATURES, HIDDEN, STEPS


def matmul_flops(batch, train=True):
    """FLOPs of the step's matmuls: the input projection of all steps, h·W_hhᵀ per step, the
    Linear; in training also dh̃·W_hh per step, dW_ih and dW_hh (all steps at once), the
    Linear's two (the GRU's dx, which no one needs, is not counted)."""
    rows, gates = batch * STEPS, 3 * HIDDEN
    forward = 2 * rows * gates * (FEATURES + HIDDEN) + 2 * batch * HIDDEN * CLASSES
    if not train:
        return forward
    return forward + 2 * rows * gates * (2 * HIDDEN + FEATURES) + 4 * batch * HIDDEN * CLASSES


def build_net(dtype, device):
    nnx.seed(0)
    return models.gru(CLASSES, HIDDEN, STEPS, FEATURES).to(device, dtype)


def nnx_case(spec, data, dtype):
    device = backends.resolve(spec)
    return nnx_net_case(build_net(dtype, device), device, data, dtype)


def torch_case(data, dtype, device="cpu"):
    """PyTorch eager: Unflatten, nn.GRU (batch first), its last step, Linear."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(FEATURES, HIDDEN, batch_first=True)
            self.linear = torch.nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            y, _ = self.gru(x.reshape(x.shape[0], STEPS, FEATURES))
            return self.linear(y[:, -1])

    ours = build_net(dtype, "cpu")
    net = Net()
    weights = ours[1].params() + [ours[3].W.T, ours[3].b]
    with torch.no_grad():
        for p, w in zip(list(net.gru.parameters()) + list(net.linear.parameters()), weights):
            p.copy_(torch.from_numpy(np.ascontiguousarray(nnx.to_numpy(w))))
    return torch_net_case(net, data, dtype, device)
