"""The row-by-row MNIST LSTM of ``nnx train --model lstm`` (nnx.models.lstm: each image as 28
steps of 28 pixels, LSTM(28, 128), the last state, Linear(128, 10)), beside PyTorch eager
with its fused nn.LSTM and the same weights.  ``kind="gru"`` builds the GRU of the same
sizes beside nn.GRU (gru_cases.py)."""

import numpy as np

from nnx import backends, models
import nnx

from .cases import nnx_net_case, torch_net_case

STEPS, FEATURES, HIDDEN, CLASSES = 28, 28, 128, 10
GATES = {"lstm": 4, "gru": 3}       # gate blocks of weight_ih / weight_hh (PyTorch's layout)


def matmul_flops(batch, train=True, kind="lstm"):
    """FLOPs of the step's matmuls: the input projection x·W_ihᵀ of all steps, h·W_hhᵀ per
    step, the Linear; in training also da·W_hh per step, dW_ih, dW_hh (all steps at once),
    the Linear's two (the LSTM's dx, which no one needs, is not counted)."""
    rows, gates = batch * STEPS, GATES[kind] * HIDDEN
    forward = 2 * rows * gates * (FEATURES + HIDDEN) + 2 * batch * HIDDEN * CLASSES
    if not train:
        return forward
    return forward + 2 * rows * gates * (2 * HIDDEN + FEATURES) + 4 * batch * HIDDEN * CLASSES


def build_net(dtype, device, kind="lstm"):
    nnx.seed(0)
    return getattr(models, kind)(CLASSES, HIDDEN, STEPS, FEATURES).to(device, dtype)


def nnx_case(spec, data, dtype, kind="lstm"):
    device = backends.resolve(spec)
    return nnx_net_case(build_net(dtype, device, kind), device, data, dtype)


def torch_model(ours, kind="lstm"):
    """PyTorch eager: Unflatten, the fused nn.LSTM (nn.GRU) batch first, its last step,
    Linear, holding the weights of ``ours`` (a build_net network), in float64."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind.upper())(FEATURES, HIDDEN, batch_first=True,
                                                       dtype=torch.float64)
            self.linear = torch.nn.Linear(HIDDEN, CLASSES, dtype=torch.float64)

        def forward(self, x):
            y, _ = self.rnn(x.reshape(x.shape[0], STEPS, FEATURES))
            return self.linear(y[:, -1])

    net = Net()
    weights = ours[1].params() + [ours[3].W.T, ours[3].b]
    with torch.no_grad():
        for p, w in zip(list(net.rnn.parameters()) + list(net.linear.parameters()), weights):
            p.copy_(torch.from_numpy(np.ascontiguousarray(nnx.to_numpy(w), dtype=np.float64)))
    return net


def torch_case(data, dtype, device="cpu", kind="lstm"):
    """The torch model of torch_model, with the weights nnx's network starts from."""
    return torch_net_case(torch_model(build_net(dtype, "cpu", kind), kind), data, dtype,
                          device)
