"""The models ``nnx train --model`` names: ``linear`` (784-10) and ``mlp`` (784-200-10 with tanh);
``resmlp``, ``cnn`` (a small LeNet-like convolutional network for 28x28 images), ``lstm`` and
``gru`` (each image read row by row, as 28 steps of 28 pixels) and ``transformer`` (the same
28 rows as a sequence); ``char_transformer`` for text."""

from .layers import (GRU, LSTM, BatchNorm, Conv2D, Flatten, LeakyReLU, Linear, MaxPool2D, ReLU,
                     Reshape, Sigmoid, Softplus, Tanh, TimeStep)
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


def cnn(n_out=10, channels=(8, 16), image=(1, 28, 28), batch_norm=True):
    """Reshape rows to images, then twice [Conv2D 5x5, (BatchNorm), MaxPool2D 2, ReLU],
    Flatten, Linear(·, n_out).  Pooling before ReLU is the same function as after it (max and
    ReLU commute: ReLU is monotone) and the same gradient, with ReLU on a quarter of the
    values.  For MNIST (N, 784) → (N, 1, 28, 28) → (N, 8, 12, 12) →
    (N, 16, 4, 4) → (N, 256) → (N, 10) scores."""
    layers, c, h, w = [Reshape(image)], image[0], image[1], image[2]
    for width in channels:
        layers += [Conv2D(c, width, 5)] + ([BatchNorm(width)] if batch_norm else []) + \
                  [MaxPool2D(2), ReLU()]
        c, h, w = width, (h - 4) // 2, (w - 4) // 2
    return Sequential(*layers, Flatten(), Linear(c * h * w, n_out))


def transformer(n_out=10, steps=28, features=28, d_model=64, heads=4, d_ff=128, blocks=2):
    """A small transformer classifier of sequences, for MNIST read row by row: Reshape rows
    (N, steps·features) to sequences (N, steps, features), Linear to d_model,
    PositionalEmbedding, ``blocks`` pre-LN TransformerBlocks, LayerNorm, the mean over the
    steps, Linear(d_model, n_out) scores.  For MNIST (N, 784) → (N, 28, 28) → (N, 28, 64)
    → (N, 64) → (N, 10)."""
    from .layers import LayerNorm, MeanOverTime, PositionalEmbedding, TransformerBlock
    return Sequential(Reshape((steps, features)), Linear(features, d_model),
                      PositionalEmbedding(steps, d_model),
                      *[TransformerBlock(d_model, heads, d_ff) for _ in range(blocks)],
                      LayerNorm(d_model), MeanOverTime(), Linear(d_model, n_out))


def char_transformer(vocab, max_len=128, d_model=128, heads=4, d_ff=512, blocks=2):
    """A small causal transformer language model over characters: one-hot rows
    (N, T, vocab) → Linear(vocab, d_model) (an embedding table: one-hot·W picks a row),
    PositionalEmbedding(max_len), ``blocks`` causal pre-LN TransformerBlocks, LayerNorm,
    Linear(d_model, vocab) scores (N, T, vocab) of the next character at every position."""
    from .layers import LayerNorm, PositionalEmbedding, TransformerBlock
    return Sequential(Linear(vocab, d_model), PositionalEmbedding(max_len, d_model),
                      *[TransformerBlock(d_model, heads, d_ff, causal=True)
                        for _ in range(blocks)],
                      LayerNorm(d_model), Linear(d_model, vocab))


def _sequence_classifier(recurrent, n_out, hidden, steps, features):
    return Sequential(Reshape((steps, features)), recurrent(features, hidden), TimeStep(-1),
                      Linear(hidden, n_out))


def lstm(n_out=10, hidden=128, steps=28, features=28):
    """Sequential MNIST read row by row: Reshape (N, 784) → (N, 28, 28), LSTM(28, hidden),
    its last step (TimeStep(-1)), Linear(hidden, n_out) scores."""
    return _sequence_classifier(LSTM, n_out, hidden, steps, features)


def gru(n_out=10, hidden=128, steps=28, features=28):
    """As ``lstm``, with a GRU(28, hidden)."""
    return _sequence_classifier(GRU, n_out, hidden, steps, features)
