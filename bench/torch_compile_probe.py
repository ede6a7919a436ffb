"""What ``torch.compile`` makes of nnx's eager, stateful training step on torch:cpu when
Dynamo traces it directly: the evidence for why ``compile_step`` does not do that (it
recompiles, and gains little), but traces its pure step with torch.fx instead and compiles
that one graph (``nnx.backends._torch.Program``; nnx-bench's "nnx compiled" rows):

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/torch_compile_probe.py > bench/results/torch-compile-probe.txt

For each model (SGD with momentum 0.9, float32, batch 100): the seconds of the first
compiled call, the graphs Dynamo compiled over 8 steps with ``check_labels`` off and with
"deferred", the compiled step's time against the eager one (best of 20, interleaved, so a
ratio from one run), and the largest difference from the eager step after those steps.
Then what a label out of range gives inside the compiled step.
"""
import logging
import sys
import time
import warnings

import numpy as np
import torch

import nnx
from nnx import models

warnings.filterwarnings("ignore")       # array-api-compat's lru_cache notes from Dynamo
logging.disable(logging.WARNING)
torch.set_num_threads(1)
BATCH = 100


def build(model, check):
    nnx.seed(0)
    net = {"mlp": lambda: models.mlp(784, 10, (200,)),
           "deep": lambda: models.mlp(784, 10, (1024, 1024)),
           "cnn": models.cnn}[model]().to("torch:cpu", "float32")
    loss = nnx.SoftmaxCrossEntropy()
    loss.check_labels = check
    opt = nnx.SGD(net, lr=0.01, momentum=0.9)

    def step(x, t):
        value = loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
        return value
    return net, step


def best(f, x, t, n=20):
    out = []
    for _ in range(n):
        start = time.perf_counter()
        f(x, t)
        out.append(time.perf_counter() - start)
    return min(out)


def probe(model, check):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((BATCH, 784), dtype=np.float32))
    t = torch.from_numpy(rng.integers(0, 10, BATCH))
    net_e, eager = build(model, check)
    net_c, plain = build(model, check)
    eager(x, t)
    plain(x, t)                         # the optimiser's flat state exists before tracing
    compiled = torch.compile(plain)
    start = time.perf_counter()
    compiled(x, t)
    first = time.perf_counter() - start
    eager(x, t)
    for _ in range(7):
        eager(x, t)
        compiled(x, t)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    diff = max(float((a - b).abs().max()) for a, b in zip(net_e.params(), net_c.params()))
    ratios = [best(compiled, x, t) / best(eager, x, t) for _ in range(3)]
    nnx.check_deferred()
    return first, graphs, diff, min(ratios), max(ratios), compiled, x, t


def main():
    print(f"# torch {torch.__version__}, nnx {nnx.__version__}, one thread, float32, "
          f"batch {BATCH}, SGD momentum 0.9; {sys.argv[0]}")
    print("model  check_labels  first call s  graphs in 8 steps  compiled/eager (3 runs)"
          "  max |param diff|")
    for model in ("mlp", "deep", "cnn"):
        for check in (False, "deferred"):
            first, graphs, diff, lo, hi, compiled, x, t = probe(model, check)
            print(f"{model:5}  {check!s:12}  {first:12.1f}  {graphs:17}  "
                  f"{lo:.2f}-{hi:.2f}{'':17}  {diff:.1e}")
    bad = t.clone()
    bad[3] = 11
    try:
        compiled(x, bad)
        nnx.check_deferred()
        print("label 11 of 10 classes in the compiled step: no error")
    except Exception as e:      # noqa: BLE001 - the point is which error comes out
        print(f"label 11 of 10 classes in the compiled step: {type(e).__name__}: "
              f"{str(e).splitlines()[0][:160]}")


if __name__ == "__main__":
    main()
