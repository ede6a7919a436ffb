"""The seeds' models by name: ``linear`` (784-10) and ``mlp`` (784-200-10 with tanh)."""

from .layers import LeakyReLU, Linear, ReLU, Sigmoid, Softplus, Tanh
from .sequential import Sequential

ACTIVATIONS = {"tanh": Tanh, "relu": ReLU, "sigmoid": Sigmoid, "softplus": Softplus,
               "leaky_relu": LeakyReLU}


def mlp(n_in, n_out, hidden=(), activation="tanh"):
    """Sequential(Linear, act, Linear, act, ..., Linear) with the given hidden widths.

    No softmax at the end: train it with SoftmaxCrossEntropy on the scores.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: use one of "
                         f"{', '.join(ACTIVATIONS)}")
    sizes = [n_in, *hidden, n_out]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(*layers)


def residual_mlp(n_in, n_out, hidden=200, blocks=1, activation="tanh"):
    """Linear(n_in, h), act, then ``blocks`` times Residual(Linear(h, h), act), Linear(h, n_out).

    Each block computes y = x + act(x·W + b): its gradient has an identity path.
    """
    from .graph import Residual
    act = ACTIVATIONS[activation]
    return Sequential(Linear(n_in, hidden), act(),
                      *[Residual(Sequential(Linear(hidden, hidden), act()))
                        for _ in range(blocks)],
                      Linear(hidden, n_out))
