"""One rank of the tests in test_distributed.py:  mpirun -n 2 python mpi_worker.py MODE OUT DEVICE

MODE  train:     train two small nets (SGD with momentum, Adam) with DataParallel on known
                 global batches (one of odd size) and save each rank's parameters to
                 OUT/rank<r>.npz.  Every rank starts from different weights: the broadcast
                 must make them rank 0's.
      batchnorm: fit(distributed=True) a net with BatchNorm; each rank saves its buffers and
                 parameters to OUT/rank<r>.npz (the ranks' running statistics, averaged).
      mismatch:  rank 1 builds a wider hidden layer; each rank writes the error it got to
                 OUT/rank<r>.txt and exits with status 3.
      hang:      rank 1 sleeps instead of training; rank 0's watchdog (2 s) must abort.
      die, raise: rank 1 exits (os._exit) or raises in the middle of training; mpirun
                 must end the job (with ``python -m mpi4py`` for the exception).
"""

import os
import pathlib
import sys
import time

import numpy as np

import nnx
import nnx.distributed as dist

BATCHES = [(0, 8), (8, 16), (16, 23), (23, 31), (31, 40), (40, 46)]   # 23-16=7 is odd


def data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((46, 20)), rng.integers(0, 5, 46)


def build(hidden=16):
    return nnx.Sequential(nnx.Linear(20, hidden), nnx.Tanh(), nnx.Linear(hidden, 5))


def build_bn():
    return nnx.Sequential(nnx.Linear(20, 6), nnx.BatchNorm(6), nnx.Tanh(), nnx.Linear(6, 5))


def bn_data():
    """48 rows: global batches of 8, 4 rows per rank, shifted so the statistics matter."""
    rng = np.random.default_rng(2)
    return 3 + 2 * rng.standard_normal((48, 20)), rng.integers(0, 5, 48)


def optimisers(net_sgd, net_adam):
    return [nnx.SGD(net_sgd, lr=0.2, momentum=0.9), nnx.Adam(net_adam, lr=0.01)]


def train(nets, opts, x, t, shard):
    """Run the global batches; ``shard`` splits one into this process's part."""
    loss = nnx.SoftmaxCrossEntropy()
    for lo, hi in BATCHES:
        xb, tb = shard((nnx.asarray(x[lo:hi]), nnx.asarray(t[lo:hi])))
        for net, opt in zip(nets, opts):
            loss.fprop(net.fprop(xb), tb)
            net.bprop(loss.bprop(), need_input_grad=False)
            if isinstance(opt, dist.DataParallel):
                opt.step(count=xb.shape[0])
            else:
                opt.step()


def main(mode, out, device):
    out = pathlib.Path(out)
    nnx.set_device(device)
    nnx.set_default_dtype("float64")
    r = dist.rank()
    nnx.seed(100 + r)                             # different initial weights on each rank
    if mode == "train":
        nets = [build(), build()]
        opts = [dist.DataParallel(o) for o in optimisers(*nets)]
        x, t = data()
        train(nets, opts, x, t, dist.shard)
        arrays = {f"{i}.{k}": nnx.to_numpy(p) for i, net in enumerate(nets)
                  for k, p in enumerate(net.params())}
        arrays["all_sum"] = np.asarray(dist.all_sum(r + 1))
        arrays["all_sum_array"] = nnx.to_numpy(dist.all_sum(nnx.asarray([r, 1.0])))
        arrays["size"] = np.asarray(dist.size())
        np.savez(out / f"rank{r}.npz", **arrays)
    elif mode == "batchnorm":
        net = build_bn()
        opt = dist.DataParallel(nnx.SGD(net, lr=0.1, momentum=0.9))
        x, t = bn_data()
        nnx.seed(7)                              # the same shuffles on every rank
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), opt, nnx.asarray(x), nnx.asarray(t),
                epochs=2, batch_size=8, distributed=True, verbose=False)
        arrays = {n: nnx.to_numpy(b) for n, b in net.named_buffers() + net.named_params()}
        net.set_buffers([b * 0 + (r + 1) for b in net.buffers()])     # 1 on rank 0, 2 on 1
        opt.sync_buffers()
        arrays["synced"] = nnx.to_numpy(net.buffers()[0])
        np.savez(out / f"rank{r}.npz", **arrays)
    elif mode == "mismatch":
        net = build(hidden=17 if r == 1 else 16)
        try:
            dist.DataParallel(nnx.SGD(net, lr=0.1), timeout=20)
        except dist.DistributedError as e:
            (out / f"rank{r}.txt").write_text(str(e))
            sys.exit(3)
        (out / f"rank{r}.txt").write_text("no error")
    elif mode == "hang":
        if r == 1:
            time.sleep(60)
        dist.DataParallel(nnx.SGD(build(), lr=0.1), timeout=2)
    elif mode in ("die", "raise"):
        net = build()
        opt = dist.DataParallel(nnx.SGD(net, lr=0.1), timeout=None)    # MPI alone
        x, t = data()

        def shard_or_fail(batch):
            if r == 1 and mode == "die":
                os._exit(4)
            if r == 1:
                raise RuntimeError("rank 1 fails on purpose")
            return dist.shard(batch)
        train([net], [opt], x, t, shard_or_fail)
    else:
        raise SystemExit(f"unknown mode {mode!r}: use train, batchnorm, mismatch, hang, die "
                         f"or raise")


if __name__ == "__main__":
    main(*sys.argv[1:4])
