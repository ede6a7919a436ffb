"""Array operations per training step: nnx's portable path (on torch:cpu tensors and on
array-api-strict) beside PyTorch eager with the same layers, SGD with momentum 0.9
(torch: foreach=True, as it runs on a GPU).  Counts are deterministic (no timing):

    .venv/bin/python bench/ops_per_step.py > bench/results/ops-per-step.md

torch: top-level aten ops in torch.profiler, views left out; strict: namespace calls and
array operators, views left out (nnx.testing._count).  "opt" is the optimiser's share.
"""
import numpy as np
import torch

import nnx
from nnx import models
from nnx.testing._count import count_strict, count_torch

BATCHES = (100, 1000)


def build(model, device):
    nnx.seed(0)
    net = {"mlp": lambda: models.mlp(784, 10, (200,)),
           "deep": lambda: models.mlp(784, 10, (1024, 1024)),
           "cnn": models.cnn}[model]()
    return net.to(device, "float32")


def nnx_steps(model, device, batch):
    net = build(model, device)
    loss = nnx.SoftmaxCrossEntropy()
    opt = nnx.SGD(net, lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = nnx.asarray(rng.random((batch, 784), dtype=np.float32), device=device)
    t = nnx.asarray(rng.integers(0, 10, batch), device=device)

    def step():
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()

    def infer():
        net.fprop(x)
    return step, opt.step, infer, net


def torch_steps(model, batch):
    tn, F = torch.nn, torch.nn.functional
    net = {"mlp": lambda: tn.Sequential(tn.Linear(784, 200), tn.Tanh(), tn.Linear(200, 10)),
           "deep": lambda: tn.Sequential(tn.Linear(784, 1024), tn.Tanh(), tn.Linear(1024, 1024),
                                         tn.Tanh(), tn.Linear(1024, 10)),
           "cnn": lambda: tn.Sequential(
               tn.Unflatten(1, (1, 28, 28)), tn.Conv2d(1, 8, 5), tn.BatchNorm2d(8),
               tn.MaxPool2d(2), tn.ReLU(), tn.Conv2d(8, 16, 5), tn.BatchNorm2d(16),
               tn.MaxPool2d(2), tn.ReLU(), tn.Flatten(), tn.Linear(256, 10))}[model]()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, foreach=True)
    x, t = torch.rand(batch, 784), torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), t).backward()
        opt.step()

    def infer():
        net.eval()
        with torch.inference_mode():
            net(x)
        net.train()
    return step, infer


def warm(*fns):
    for f in fns:
        f()
        f()


def main():
    print("| model | batch | nnx torch:cpu ops/step (opt) | nnx strict ops/step (opt) | "
          "torch eager ops/step | ratio | ratio without opt | syncs/step | inference nnx / torch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in ("mlp", "deep", "cnn"):
        for batch in BATCHES:
            step, ostep, infer, net = nnx_steps(model, "torch:cpu", batch)
            warm(step)
            c, co = count_torch(step), count_torch(ostep)
            net.eval()
            warm(infer)
            ci = count_torch(infer)
            s_step, s_ostep, _, _ = nnx_steps(model, "strict", batch)
            warm(s_step)
            cs, cso = count_strict(s_step), count_strict(s_ostep)
            t_step, t_infer = torch_steps(model, batch)
            warm(t_step, t_infer)
            ct, cti = count_torch(t_step), count_torch(t_infer)
            print(f"| {model} | {batch} | {c.ops} ({co.ops}) | {cs.ops} ({cso.ops}) | {ct.ops} | "
                  f"{c.ops / ct.ops:.2f} | {(c.ops - co.ops) / ct.ops:.2f} | "
                  f"{c.readbacks + cs.readbacks} | {ci.ops} / {cti.ops} |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
