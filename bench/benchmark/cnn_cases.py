"""The small MNIST CNN of ``nnx train --model cnn`` (nnx.models.cnn), beside PyTorch eager
and the step a JAX user writes (jax.jit(grad)), with the same architecture and weights, and
the matmul floor of its im2col formulation."""

import itertools

import numpy as np

from nnx import backends, models
import nnx

from .cases import Case, _syncer, nnx_net_case, torch_net_case

# (c_in, c_out, k·k, OH·OW) of its two 5x5 convolutions on 28x28 images; then Linear(256, 10)
CONVS = [(1, 8, 25, 24 * 24), (8, 16, 200, 8 * 8)]
LINEAR = (256, 10)


def matmul_flops(batch, train=True):
    """FLOPs of the step's matmuls: W₂·cols per convolution (and in training dW₂ = g·colsᵀ,
    and W₂ᵀ·g but for the first layer), the same three for the Linear layer."""
    total = 0
    for i, (_, c_out, k, l) in enumerate(CONVS):
        total += 2 * batch * c_out * k * l * ((2 if i == 0 else 3) if train else 1)
    return total + 2 * batch * LINEAR[0] * LINEAR[1] * (3 if train else 1)


def build_net(dtype, device):
    nnx.seed(0)
    return models.cnn().to(device, dtype)


def nnx_case(spec, data, dtype):
    device = backends.resolve(spec)
    return nnx_net_case(build_net(dtype, device), device, data, dtype)


def torch_case(data, dtype, device="cpu"):
    """PyTorch eager: Conv2d, BatchNorm2d, MaxPool2d, ReLU, ..., Linear, with nnx's weights."""
    import torch
    ours = build_net(dtype, "cpu")
    layers = []
    for m in ours:
        name = type(m).__name__
        if name == "Reshape":
            layers.append(torch.nn.Unflatten(1, m.shape))
        elif name == "Conv2D":
            layers.append(torch.nn.Conv2d(m.c_in, m.c_out, m.kernel_size, m.stride, m.padding))
            weights = [m.W, m.b]
        elif name == "BatchNorm":
            layers.append(torch.nn.BatchNorm2d(m.n_features, eps=m.eps, momentum=m.momentum))
            weights = [m.gamma, m.beta]
        elif name == "ReLU":
            layers.append(torch.nn.ReLU())
        elif name == "MaxPool2D":
            layers.append(torch.nn.MaxPool2d(m.kernel_size, m.stride))
        elif name == "Flatten":
            layers.append(torch.nn.Flatten())
        elif name == "Linear":
            layers.append(torch.nn.Linear(m.n_in, m.n_out))
            weights = [m.W.T, m.b]
        if name in ("Conv2D", "BatchNorm", "Linear"):
            with torch.no_grad():
                for p, w in zip(layers[-1].parameters(), weights):
                    p.copy_(torch.from_numpy(np.ascontiguousarray(nnx.to_numpy(w))))
    return torch_net_case(torch.nn.Sequential(*layers), data, dtype, device)


def floor_case(spec, data, dtype):
    """The im2col formulation's matmuls alone (W₂·cols, g·colsᵀ, W₂ᵀ·g; the Linear's), on
    pre-made columns: no im2col, col2im, pooling, normalisation or update."""
    device = backends.resolve(spec)
    rng = np.random.default_rng(1)
    batch = data[0][0].shape[0]

    def put(shape):
        return nnx.asarray(rng.random(shape, dtype=np.dtype(dtype)), device=device, dtype=dtype)

    layers = [(put((o, k)), put((batch, k, l)), put((batch, o, l))) for _, o, k, l in CONVS]
    W, h, g = put(LINEAR), put((batch, LINEAR[0])), put((batch, LINEAR[1]))
    xp = device.xp
    out = []

    def train():
        out.clear()
        for i, (W2, cols, gc) in enumerate(layers):
            out.extend((W2 @ cols, gc @ xp.matrix_transpose(cols))
                       + ((xp.matrix_transpose(W2) @ gc,) if i else ()))
        out.extend((h @ W, h.T @ g, g @ W.T))

    def infer():
        out[:] = [W2 @ cols for W2, cols, _ in layers] + [h @ W]

    return Case("matmul floor", device.spec, train, infer, _syncer(device, lambda: out),
                device.backend.name in ("numpy", "strict"))


def jax_case(data, dtype, spec="jax:cpu"):
    """The CNN step a JAX user writes, with nnx's weights: ``lax.conv_general_dilated``,
    BatchNorm on the batch statistics (the running averages updated as nnx and torch do),
    ``lax.reduce_window`` max pooling, ReLU, jax.jit of jax.value_and_grad of the mean
    cross-entropy plus the SGD update; the parameter and statistic buffers donated.
    Inference: a jitted predict on the running statistics."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from .cases import LR
    device = backends.resolve(spec)
    if dtype == "float64":
        device.backend.has_float64(device.native)           # the x64 switch, as nnx does
    ours = build_net(dtype, "cpu")
    put = lambda a: jax.device_put(np.ascontiguousarray(nnx.to_numpy(a)), device.native)  # noqa: E731
    blocks, stats = [], []
    for m in ours:
        name = type(m).__name__
        if name == "Conv2D":
            blocks.append([put(m.W), put(m.b)])
        elif name == "BatchNorm":
            blocks[-1] += [put(m.gamma), put(m.beta)]
            stats.append([put(m.running_mean), put(m.running_var)])
            eps, momentum = m.eps, m.momentum
        elif name == "Linear":
            linear = [put(m.W), put(m.b)]
    image = next(m.shape for m in ours if type(m).__name__ == "Reshape")

    def features(params, stats, x, training):
        h, new = jnp.reshape(x, (x.shape[0],) + tuple(image)), []
        for (W, b, gamma, beta), (mean, var) in zip(params[:-1], stats):
            h = lax.conv_general_dilated(h, W, (1, 1), "VALID",
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
            h = h + b[None, :, None, None]
            if training:
                mu, sigma2 = jnp.mean(h, (0, 2, 3)), jnp.var(h, (0, 2, 3))
                m = h.size // h.shape[1]
                new.append([(1 - momentum) * mean + momentum * mu,
                            (1 - momentum) * var + momentum * sigma2 * m / (m - 1)])
            else:
                mu, sigma2 = mean, var
            h = (h - mu[None, :, None, None]) * lax.rsqrt(sigma2 + eps)[None, :, None, None]
            h = h * gamma[None, :, None, None] + beta[None, :, None, None]
            h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
            h = jnp.maximum(h, 0)
        W, b = params[-1]
        return jnp.reshape(h, (h.shape[0], -1)) @ W + b, new

    def loss_fn(params, stats, x, t):
        z, new = features(params, stats, x, True)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), t[:, None], axis=1)), new

    def sgd(params, stats, x, t):
        (value, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x, t)
        return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads), new

    step = jax.jit(sgd, donate_argnums=(0, 1))
    predict = jax.jit(lambda params, stats, x: features(params, stats, x, False)[0])
    batches = itertools.cycle([(jax.device_put(x, device.native), jax.device_put(t, device.native))
                               for x, t in zip(*data)])
    state = {"params": blocks + [linear], "stats": stats, "out": None}

    def train():
        state["out"], state["params"], state["stats"] = step(state["params"], state["stats"],
                                                             *next(batches))

    def infer():
        state["out"] = predict(state["params"], state["stats"], next(batches)[0])

    return Case("jax.jit(grad)", spec, train, infer,
                _syncer(device, lambda: [state["out"], state["params"][0][0]]), False)
