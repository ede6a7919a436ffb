"""Synchronous data-parallel training across processes: MPI on CPUs, NCCL on GPUs::

    # mpirun -n 2 python -m mpi4py train.py
    import nnx, nnx.distributed as dist
    nnx.seed(0)                                    # the same shuffles on every rank
    net, loss = ..., nnx.SoftmaxCrossEntropy()
    opt = dist.DataParallel(nnx.SGD(net, lr=0.1))  # rank 0's parameters on every rank
    for idx in global_batches:                     # the same index batches on every rank
        x, t = dist.shard((X[idx], T[idx]))        # this rank's rows
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop())
        opt.step(count=x.shape[0])                 # average gradients over ranks, then step
    errors = dist.all_sum(local_errors)            # evaluation: sum over ranks

Every step packs all gradients into one flat buffer (``xp.concat`` of the flattened
arrays, times this rank's example count, plus the count itself), sums it over the ranks
and unpacks ``sum / total count``: the gradient of one process on the whole global batch.
Every rank then applies the same update, so the parameters stay identical.

Launch with ``python -m mpi4py``: then an uncaught exception on one rank aborts the job
instead of leaving the others waiting.  A collective that outlives ``timeout`` seconds
(a rank died or hangs) aborts the job with a message (see backends/mpi.py).
Dropout draws its masks from the host generator: with the same seed everywhere the ranks
draw the same masks for their different rows, which differs from one process's draw.
mpi4py, NCCL and NumPy are only named in backends/; mpi4py is imported on first use.
"""

import math
import os

from nnx import backends

from . import _checks
from .device import namespace
from .errors import NNXError


class DistributedError(NNXError, RuntimeError):
    """The ranks disagree (model layout, transport) or cannot split the data."""


def _world():
    from nnx.backends import mpi
    return mpi.world()


def rank():
    """This process's rank, 0 to size() - 1 (0 outside an MPI job)."""
    return _world().rank


def size():
    """The number of processes in the job (1 outside an MPI job)."""
    return _world().size


def local_rank():
    """This process's rank among those on its machine (to pick its GPU), from the launcher."""
    for name in ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK",
                 "SLURM_LOCALID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return rank()


def abort(code=1):
    """End every rank of the job now (after an error on this one), not leave them waiting."""
    _world().abort(code)


def shard(batch, *, rank=None, size=None):
    """This rank's contiguous part of ``batch`` along its first axis.

    ``batch`` is an array, a range or list of indices, or a tuple of them split alike
    (``x, t = shard((x, t))``).  Rank r of s gets rows ``[r·n//s, (r+1)·n//s)``.
    """
    world = _world() if rank is None or size is None else None
    r = world.rank if rank is None else int(rank)
    s = world.size if size is None else int(size)
    if isinstance(batch, tuple):
        return tuple(shard(b, rank=r, size=s) for b in batch)
    n = batch.shape[0] if hasattr(batch, "shape") else len(batch)
    if n < s:
        raise DistributedError(f"shard: a batch of {_checks.count(n, 'example')} cannot feed {s} ranks; "
                               f"use global batches of at least {s} (drop a short last batch)")
    rows = slice(r * n // s, (r + 1) * n // s)
    return batch[rows, ...] if hasattr(batch, "shape") else batch[rows]


def all_sum(value, *, timeout=300.0):
    """The sum over ranks of a number or a small array (error counts, loss sums).

    Numbers come back as Python numbers; arrays as arrays on their own device.  The job is
    aborted if some rank has not joined within ``timeout`` seconds (None: wait forever).
    """
    world = _world()
    with world.guard("all_sum", timeout):
        if not hasattr(value, "shape"):
            return world.allreduce_sum(value)
        device = backends.device_of(value)
        total = world.allreduce_sum(backends.to_host(value))
    return backends.from_host(total, device)


class DataParallel:
    """Wrap any nnx optimiser for synchronous data-parallel training.

    At construction every rank checks that all ranks hold the same parameter names, shapes
    and dtypes (else a ``DistributedError`` on every rank) and takes rank ``root``'s
    parameters.  ``step(count)`` averages the gradients over the ranks, weighting each by
    ``count`` (its number of examples; equal weights if omitted), then steps.

    ``transport``: 'mpi' (host buffers; copies to and from GPUs), 'nccl' or 'cuda-mpi'
    (CuPy only), or None: NCCL for CuPy when available, else MPI.  ``timeout``: seconds a
    collective may take before the job is aborted (None or 0: wait forever).

    Buffers (BatchNorm's running statistics) are updated by each rank from its own rows;
    ``sync_buffers()`` replaces them by their mean over the ranks, and ``fit(...,
    distributed=True)`` calls it after every epoch, so that each rank's evaluation and
    checkpoint hold the same statistics.  running_mean is then exactly the running mean of
    the global batches' means (when the shards are equal); running_var is the mean of the
    ranks' variances: the spread within each rank's rows, without the (small, for shuffled
    data) spread between the ranks' means.
    """

    def __init__(self, optimizer, *, transport=None, timeout=300.0, root=0):
        from nnx.backends import mpi
        self.optimizer, self.module = optimizer, optimizer.module
        self.world, self.timeout, self.root = _world(), timeout, int(root)
        params = self.module.params()
        if not params:
            raise DistributedError("DataParallel: the module has no parameters to train")
        if any(s is not None for s in getattr(optimizer, "state", ())):
            raise DistributedError("DataParallel: wrap the optimiser before its first step, "
                                   "so that its state starts equal on every rank")
        self.device = backends.device_of(params[0])
        self.xp = namespace(params[0])
        self.shapes = [tuple(p.shape) for p in params]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.transport = None
        chosen = mpi.choose_transport(transport, self.device)
        if self.world.size == 1:
            return
        self._check_same_everywhere(chosen)
        with self._guard(f"setting up the '{chosen}' transport"):
            self.transport = mpi.transport(chosen, self.world, self.device)
        self.broadcast_params()
        self.broadcast_buffers()

    # -- the optimiser interface ---------------------------------------------------------
    def __getattr__(self, name):                 # momentum, state, t, ...: the inner one's
        if name == "optimizer":
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    @property
    def lr(self):
        return self.optimizer.lr

    @lr.setter
    def lr(self, value):
        self.optimizer.lr = value

    def step(self, count=None):
        """All-reduce the gradients, then the inner step.

        ``count``: this rank's number of examples in the step; give it when shards can
        differ in size (a global batch not divisible by the ranks), for an exact mean.
        """
        self.allreduce_grads(count)
        self.optimizer.step()

    # -- collectives ---------------------------------------------------------------------
    def allreduce_grads(self, count=None):
        """Replace every rank's gradients by their (``count``-weighted) mean over ranks."""
        if self.transport is None:
            return
        with self._context():
            xp = self.xp
            grads = self.module.grads()
            flat = self._pack(grads + [xp.ones((1,), dtype=grads[0].dtype,
                                               device=_device(grads[0]))])
            if getattr(xp, "float16", None) == flat.dtype:   # count × grad may overflow
                flat = xp.astype(flat, xp.float32)
            if count is not None:
                flat = flat * float(count)
            with self._guard(f"the gradient all-reduce ({flat.shape[0]} values)"):
                flat = self.transport.allreduce_sum(flat)
                self._wait()
            flat = flat[:-1] / flat[-1:]
            _set_grads(self.module, self._unpack(flat, grads))

    def sync_buffers(self):
        """Replace every rank's buffers (BatchNorm's running statistics) by their mean
        over the ranks: one collective; nothing to do without buffers or other ranks."""
        if self.transport is None:
            return
        named = self.module.named_buffers()
        if not named:
            return
        with self._context():
            xp = self.xp
            buffers = [b for _, b in named]
            flat = xp.concat([xp.reshape(b, (-1,)) for b in buffers])
            with self._guard(f"the buffer all-reduce ({flat.shape[0]} values)"):
                flat = self.transport.allreduce_sum(flat)
                self._wait()
            flat = flat / float(self.world.size)
            out, start = [], 0
            for b in buffers:
                n = math.prod(b.shape)
                out.append(xp.astype(xp.reshape(flat[start:start + n], tuple(b.shape)), b.dtype))
                start += n
            self.module.set_buffers(out)

    def broadcast_params(self):
        """Copy rank ``root``'s parameters to every rank."""
        if self.transport is None:
            return
        with self._context():
            params = self.module.params()
            with self._guard("the parameter broadcast"):
                flat = self.transport.broadcast(self._pack(params), root=self.root)
                self._wait()
            self.module.set_params(self._unpack(flat, params))

    def broadcast_buffers(self):
        """Copy rank ``root``'s buffers to every rank (at construction, like the weights)."""
        if self.transport is None or not self.module.named_buffers():
            return
        with self._context():
            xp = self.xp
            buffers = self.module.buffers()
            flat = xp.concat([xp.reshape(b, (-1,)) for b in buffers])
            with self._guard("the buffer broadcast"):
                flat = self.transport.broadcast(flat, root=self.root)
                self._wait()
            out, start = [], 0
            for b in buffers:
                n = math.prod(b.shape)
                out.append(xp.reshape(flat[start:start + n], tuple(b.shape)))
                start += n
            self.module.set_buffers(out)

    # -- helpers -------------------------------------------------------------------------
    def _check_same_everywhere(self, transport):
        mine = {"params": [(n, tuple(p.shape), str(p.dtype).rsplit(".", 1)[-1])
                           for n, p in self.module.named_params()],
                "backend": self.device.backend.name, "transport": transport}
        with self._guard("the check that all ranks built the same model"):
            everyone = self.world.allgather(mine)
        ref = everyone[self.root]
        for r, theirs in enumerate(everyone):
            problem = _difference(ref, theirs)
            if problem:
                raise DistributedError(
                    f"DataParallel: rank {r} differs from rank {self.root}: {problem}; "
                    f"every rank must build the same model on the same kind of device "
                    f"(this is rank {self.world.rank})")

    def _pack(self, arrays):
        xp = self.xp
        return xp.concat([xp.reshape(a, (-1,)) for a in arrays])

    def _unpack(self, flat, like):
        xp, out, start = self.xp, [], 0
        for shape, n, a in zip(self.shapes, self.sizes, like):
            piece = xp.reshape(flat[start:start + n], shape)
            out.append(piece if piece.dtype == a.dtype else xp.astype(piece, a.dtype))
            start += n
        return out

    def _guard(self, what):
        return self.world.guard(what, self.timeout)

    def _wait(self):
        """Let the watchdog see asynchronous (NCCL) collectives finish."""
        if self.timeout and hasattr(self.transport, "synchronize"):
            self.transport.synchronize()

    def _context(self):
        return self.device.backend.context(self.device.native)


def _device(x):
    import array_api_compat
    return array_api_compat.device(x)


def _difference(ref, theirs):
    """What differs between two ranks' descriptions, in words (None if nothing)."""
    if theirs["backend"] != ref["backend"]:
        return f"its parameters are {theirs['backend']} arrays, not {ref['backend']}"
    if theirs["transport"] != ref["transport"]:
        return f"it chose transport '{theirs['transport']}', not '{ref['transport']}'"
    a, b = ref["params"], theirs["params"]
    if len(a) != len(b):
        return f"it has {len(b)} parameter arrays, not {len(a)}"
    for (name_a, shape_a, dt_a), (name_b, shape_b, dt_b) in zip(a, b):
        if (name_a, shape_a, dt_a) != (name_b, shape_b, dt_b):
            return (f"parameter '{name_b}' is {dt_b} {shape_b} there, "
                    f"but '{name_a}' is {dt_a} {shape_a}")
    return None


def _set_grads(module, arrays):
    """Rebind gradients (``d`` + parameter name) in the order of ``module.grads()``."""
    arrays = list(arrays)
    for n in module.param_names:
        setattr(module, "d" + n, arrays.pop(0))
    for child in module.children():
        k = len(child.params())
        _set_grads(child, arrays[:k])
        arrays = arrays[k:]


__all__ = ["DataParallel", "DistributedError", "rank", "size", "shard", "all_sum"]
