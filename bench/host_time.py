"""The host time of one compiled torch step and one compiled inference, beside nnx's eager
step and fprop, on a network so small (Linear(4, 3), Tanh, Linear(3, 2), batch 2) that no
arithmetic counts: what a step costs the Python side, which on a GPU is the floor of a
small step.  Rounds alternate the four cases; each prints its median over the rounds and
its ratio to the eager form.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/host_time.py [--rounds 15] [--calls 500]
"""

import argparse
import statistics
import time

import numpy as np

import nnx


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    import torch
    torch.set_num_threads(1)
    nnx.seed(0)
    net = nnx.Sequential(nnx.Linear(4, 3), nnx.Tanh(), nnx.Linear(3, 2)).to("torch:cpu",
                                                                            "float32")
    x = nnx.asarray(np.ones((2, 4)), device="torch:cpu", dtype="float32")
    t = nnx.asarray(np.array([0, 1]), device="torch:cpu")
    loss = nnx.SoftmaxCrossEntropy()
    loss.check_labels = False
    opt = nnx.SGD(net, lr=0.01)
    step = nnx.compile_step(net, loss, opt, keep_grads=False)
    predict = nnx.compile_fprop(net)

    def eager():
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
    cases = {"compiled step": lambda: step(x, t), "eager step": eager,
             "compiled fprop": lambda: predict(x), "eager fprop": lambda: net.fprop(x)}
    for fn in cases.values():
        for _ in range(5):
            fn()
    times = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                fn()
            times[name].append((time.perf_counter() - start) / args.calls * 1e6)
    median = {name: statistics.median(v) for name, v in times.items()}
    print(f"step mode: {step.mode}; fprop mode: {predict.mode}; torch {torch.__version__}")
    for name in cases:
        eager_name = name.replace("compiled", "eager")
        print(f"{name:15s} {median[name]:8.1f} us   x{median[name] / median[eager_name]:.2f} "
              f"of the {eager_name}")


if __name__ == "__main__":
    main()
