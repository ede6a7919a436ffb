"""What is timed: the models, their data, and one step function per implementation.

Every implementation starts from the same initial weights (``nnx.seed(0)``, drawn on the
host) and reads the same pre-made batches, rotated so that no cache keeps one batch warm.
A ``Case`` has a training step (fprop, loss, bprop, SGD update), an inference pass and a
``sync`` that waits for asynchronous devices before the clock is read.
"""

import dataclasses
import itertools

import numpy as np

from nnx import backends
import nnx

MODELS = {"linear": (784, 10), "mlp": (784, 200, 10), "deep": (784, 1024, 1024, 10),
          "cnn": "cnn",      # the CNN of nnx train --model cnn: cnn_cases.py
          "transformer": "transformer",    # nnx train --model transformer: transformer_cases.py
          "lstm": "lstm",    # the LSTM of nnx train --model lstm: lstm_cases.py
          "gru": "gru"}      # the GRU of nnx train --model gru: gru_cases.py
LR = 0.01
N_BATCHES = 4           # pre-made batches the steps rotate through


@dataclasses.dataclass
class Case:
    impl: str           # "nnx", "numpy (hand-written)", "torch eager", "matmul floor"
    device: str         # where it runs: "cpu", "torch:cpu", "strict", "cuda:0", ...
    train: object       # callable: one training step
    infer: object       # callable: one inference pass
    sync: object        # callable: wait for queued work
    traced: bool        # its allocations show in tracemalloc (NumPy-based)

    @property
    def label(self):
        return f"nnx {self.device}" if self.impl == "nnx" else f"{self.impl} [{self.device}]"


def matmul_flops(sizes, batch, train=True):
    """FLOPs of the step's matmuls: x@W (and in training xᵀ@g, and g@Wᵀ but for layer 0)."""
    if sizes == "cnn":
        from . import cnn_cases
        return cnn_cases.matmul_flops(batch, train)
    if sizes == "transformer":
        from . import transformer_cases
        return transformer_cases.matmul_flops(batch, train)
    if sizes == "lstm":
        from . import lstm_cases
        return lstm_cases.matmul_flops(batch, train)
    if sizes == "gru":
        from . import gru_cases
        return gru_cases.matmul_flops(batch, train)
    total = 0
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        per = 2 * batch * n_in * n_out
        total += per * ((2 if i == 0 else 3) if train else 1)
    return total


def make_data(batch, dtype, seed=0):
    """N_BATCHES host batches of (pixels in [0, 1), integer labels)."""
    rng = np.random.default_rng(seed)
    xs = [rng.random((batch, 784), dtype=np.dtype(dtype)) for _ in range(N_BATCHES)]
    ts = [rng.integers(0, 10, batch) for _ in range(N_BATCHES)]
    return xs, ts


def build_net(sizes, dtype, device):
    """The nnx model: Linear, then Tanh + Linear for every further layer."""
    nnx.seed(0)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        if i:
            layers.append(nnx.Tanh())
        layers.append(nnx.Linear(n_in, n_out, dtype=dtype, device=device))
    return nnx.Sequential(*layers)


def initial_weights(sizes, dtype):
    """[W0, b0, W1, b1, ...] as host arrays, equal to every nnx model's initial weights."""
    return [nnx.to_numpy(p) for p in build_net(sizes, dtype, "cpu").params()]


def _nosync():
    pass


def _syncer(device, results):
    """Wait for ``device``; on JAX (asynchronous even on the CPU) block on the step's results."""
    if device.backend.name != "jax":
        return lambda: backends.synchronize(device)

    def sync():
        for a in results():
            a.block_until_ready()
    return sync


def nnx_case(sizes, spec, data, dtype):
    device = backends.resolve(spec)
    return nnx_net_case(build_net(sizes, dtype, device), device, data, dtype)


def nnx_net_case(net, device, data, dtype):
    """nnx's training step (SGD) and inference of ``net`` on ``device``; train/eval mode is
    switched only when it changes (BatchNorm, Dropout), so a plain MLP pays nothing for it."""
    loss = nnx.SoftmaxCrossEntropy()
    loss.check_labels = False           # as in the trainer: labels are checked once, up front
    opt = nnx.SGD(net, lr=LR)
    batches = itertools.cycle([(nnx.asarray(x, device=device, dtype=dtype),
                                nnx.asarray(t, device=device)) for x, t in zip(*data)])

    last = [None]

    def train():
        x, t = next(batches)
        if not net.training:
            net.train()
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
        last[0] = None

    def infer():
        if net.training:
            net.eval()
        last[0] = net.fprop(next(batches)[0])

    def results():
        return net.params() if last[0] is None else [last[0]]

    return Case("nnx", device.spec, train, infer, _syncer(device, results),
                device.backend.name in ("numpy", "strict"))


def nnx_compiled_case(net, device, data, dtype):
    """nnx's whole step through ``nnx.compile_step`` (one jax.jit program on JAX, one
    torch.compile program on torch's CPU); None where it would run eagerly (the nnx row
    already times that; torch on CUDA by default).  ``keep_grads=False``:
    like the jax.jit(grad) reference, the program returns no gradients; inference is
    ``nnx.compile_fprop``, like the reference's jitted predict."""
    loss = nnx.SoftmaxCrossEntropy()
    loss.check_labels = False
    opt = nnx.SGD(net, lr=LR)
    step = nnx.compile_step(net, loss, opt, keep_grads=False)
    if step.mode == "eager":
        return None
    predict = nnx.compile_fprop(net)      # inference as one jitted program too
    batches = itertools.cycle([(nnx.asarray(x, device=device, dtype=dtype),
                                nnx.asarray(t, device=device)) for x, t in zip(*data)])
    last = [None]

    def train():
        if not net.training:
            net.train()
        last[0] = step(*next(batches))

    def infer():
        if net.training:
            net.eval()
        last[0] = predict(next(batches)[0])

    return Case("nnx compiled", device.spec, train, infer,
                _syncer(device, lambda: [last[0]] + net.params()[:1]), False)


def jax_case(sizes, data, dtype, spec="jax:cpu"):
    """The step a JAX user writes: jax.jit of jax.value_and_grad of the loss, plus the SGD
    update, over a list of (W, b); the parameter buffers donated."""
    import jax
    import jax.numpy as jnp
    device = backends.resolve(spec)
    if dtype == "float64":
        device.backend.has_float64(device.native)           # the x64 switch, as nnx does
    params = [jax.device_put(w, device.native) for w in initial_weights(sizes, dtype)]

    def forward(params, x):
        h = x
        for i in range(0, len(params), 2):
            if i:
                h = jnp.tanh(h)
            h = h @ params[i] + params[i + 1]
        return h

    def loss_fn(params, x, t):
        z = forward(params, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), t[:, None], axis=1))

    @jax.jit
    def predict(params, x):
        return forward(params, x)

    def sgd(params, x, t):
        value, grads = jax.value_and_grad(loss_fn)(params, x, t)
        return value, [p - LR * g for p, g in zip(params, grads)]

    step = jax.jit(sgd, donate_argnums=0)
    batches = itertools.cycle([(jax.device_put(x, device.native), jax.device_put(t, device.native))
                               for x, t in zip(*data)])
    state = {"params": params, "out": None}

    def train():
        state["out"], state["params"] = step(state["params"], *next(batches))

    def infer():
        state["out"] = predict(state["params"], next(batches)[0])

    return Case("jax.jit(grad)", spec, train, infer,
                _syncer(device, lambda: [state["out"]] + state["params"][:1]), False)


def numpy_case(sizes, data, dtype):
    """The same step written directly in NumPy, as a user would without a framework."""
    params = [p.copy() for p in initial_weights(sizes, dtype)]
    Ws, bs = params[0::2], params[1::2]
    batches = itertools.cycle(list(zip(*data)))
    last = len(Ws) - 1

    def forward(x):
        hs = [x]
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = hs[-1] @ W + b
            hs.append(np.tanh(z) if i < last else z)
        return hs

    def train():
        x, t = next(batches)
        hs = forward(x)
        z = hs.pop()
        n = z.shape[0]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        -np.log(p[rows, t]).mean()                      # the loss, computed as in a step
        p[rows, t] -= 1
        g = p / n
        for i in range(last, -1, -1):
            dW, db = hs[i].T @ g, g.sum(axis=0)
            if i:
                g = (g @ Ws[i].T) * (1 - hs[i] * hs[i])
            Ws[i] -= LR * dW
            bs[i] -= LR * db

    def infer():
        forward(next(batches)[0])

    return Case("numpy (hand-written)", "cpu", train, infer, _nosync, True)


def torch_case(sizes, data, dtype, device="cpu"):
    """PyTorch eager: nn.Sequential, F.cross_entropy, torch.optim.SGD."""
    import torch
    weights = initial_weights(sizes, dtype)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        if i:
            layers.append(torch.nn.Tanh())
        lin = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(weights[2 * i].T.copy()))
            lin.bias.copy_(torch.from_numpy(weights[2 * i + 1]))
        layers.append(lin)
    return torch_net_case(torch.nn.Sequential(*layers), data, dtype, device)


def torch_net_case(net, data, dtype, device="cpu"):
    """PyTorch eager training step (F.cross_entropy, torch.optim.SGD) and inference of a
    torch module; train/eval mode is switched only when it changes."""
    import torch
    import torch.nn.functional as F
    net = net.to(device=device, dtype=getattr(torch, dtype))
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    batches = itertools.cycle([(torch.from_numpy(x).to(device), torch.from_numpy(t).to(device))
                               for x, t in zip(*data)])

    def train():
        x, t = next(batches)
        if not net.training:
            net.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), t).backward()
        opt.step()

    def infer():
        if net.training:
            net.eval()
        with torch.inference_mode():
            net(next(batches)[0])

    cuda = torch.device(device).type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else _nosync
    return Case("torch eager", f"torch:{device}", train, infer, sync, False)


def floor_case(sizes, spec, data, dtype):
    """The step's matmuls alone, on the same backend: the floor nothing can go below."""
    device = backends.resolve(spec)
    rng = np.random.default_rng(1)
    batch = data[0][0].shape[0]

    def put(shape):
        return nnx.asarray(rng.random(shape, dtype=np.dtype(dtype)), device=device, dtype=dtype)

    xs = itertools.cycle([nnx.asarray(x, device=device, dtype=dtype) for x in data[0]])
    hs = [None] + [put((batch, n)) for n in sizes[1:-1]]       # layer inputs (0: the data)
    gs = [put((batch, n)) for n in sizes[1:]]                    # gradients of layer outputs
    Ws = [put((n_in, n_out)) for n_in, n_out in zip(sizes, sizes[1:])]

    out = []

    def train():
        hs[0] = next(xs)
        out.clear()
        for i, (h, g, W) in enumerate(zip(hs, gs, Ws)):
            out.extend((h @ W, h.T @ g) + ((g @ W.T,) if i else ()))

    def infer():
        h = next(xs)
        for W in Ws:
            h = h @ W
        out[:] = [h]

    return Case("matmul floor", device.spec, train, infer, _syncer(device, lambda: out),
                device.backend.name in ("numpy", "strict"))
