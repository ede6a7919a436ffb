"""Data-parallel MNIST: the 784-200-10 tanh MLP trained by plain SGD on every rank's shard.

    mpirun -n 2 python -m mpi4py examples/mnist_distributed.py --data ../shared/data/mnist
    python examples/mnist_distributed.py --data ...          # one process, same result

The same training from the command line: ``mpirun -n 2 nnx train --distributed``.

Every rank reads the whole data set, draws the same shuffle (same seed), takes its rows of
each global batch, and DataParallel averages the gradients: the run is the same training
as one process on the same global batches, up to float32 rounding.
"""

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import nnx  # noqa: E402
import nnx.distributed as dist  # noqa: E402


def errors(net, x, t):
    """Misclassified examples of this rank's shard of (x, t), summed over ranks."""
    xs, ts = dist.shard((x, t))
    net.eval()
    guess = np.argmax(nnx.to_numpy(net.fprop(nnx.asarray(xs))), axis=1)
    net.train()
    return dist.all_sum(int(np.sum(guess != ts)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="MNIST folder (else $NNX_DATA or the cache)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=100, help="global batch (all ranks)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    x_train, t_train, x_test, t_test = nnx.datasets.load_mnist(args.data)
    nnx.seed(args.seed)
    net = nnx.Sequential(nnx.Linear(784, 200), nnx.Tanh(), nnx.Linear(200, 10))
    loss = nnx.SoftmaxCrossEntropy()
    opt = dist.DataParallel(nnx.SGD(net, lr=args.lr))
    shuffle = np.random.default_rng(args.seed)          # the same on every rank
    say = print if dist.rank() == 0 else (lambda *a, **k: None)
    say(f"{dist.size()} process{'es' if dist.size() != 1 else ''}, global batch "
        f"{args.batch_size}, {args.batch_size // dist.size()}+ examples per rank")

    n = len(x_train) - len(x_train) % args.batch_size  # drop the short last batch
    for epoch in range(1, args.epochs + 1):
        start, total = time.perf_counter(), 0.0
        order = shuffle.permutation(len(x_train))[:n]
        for i in range(0, n, args.batch_size):
            idx = dist.shard(order[i:i + args.batch_size])
            x, t = nnx.asarray(x_train[idx]), nnx.asarray(t_train[idx])
            total += float(loss.fprop(net.fprop(x), t)) * len(idx)
            net.bprop(loss.bprop(), need_input_grad=False)
            opt.step(count=len(idx))
        mean_loss = dist.all_sum(total) / n
        wrong = errors(net, x_test, t_test)
        say(f"epoch {epoch}: train loss {mean_loss:.4f}  test errors {wrong} / {len(t_test)} "
            f"({100 * wrong / len(t_test):.2f}%)  {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
