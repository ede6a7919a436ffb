"""MPI for nnx.distributed: the communicator, a hang watchdog and host-buffer all-reduce.

mpi4py is imported on first use, and only in a process that an MPI launcher started (or
with NNX_MPI=1): any other process is a world of one without MPI at all, so it neither
needs mpi4py nor pays for MPI_Init.  A launched process without mpi4py gets an error.

What MPI does when a rank fails (Open MPI 4.1, measured):
  * killed, or ``os._exit(n != 0)``: mpirun notices and kills every other rank (~1 s);
  * an uncaught exception or ``sys.exit`` in plain ``python script.py``: the rank waits in
    MPI_Finalize and the others wait in their next collective, forever.  Launch with
    ``python -m mpi4py script.py``: that turns an uncaught exception into MPI_Abort;
  * a rank that hangs (deadlock, lost node without a kill): MPI has no timeout at all.
The ``Watchdog`` covers the last two: a collective that takes longer than ``timeout``
seconds prints why on stderr and aborts the whole job.
"""

import os
import sys
import threading
import time

import numpy as np

_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK",
                  "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_PROCID")
_world = None


def launched_by_mpi():
    """True when an MPI launcher (mpirun, mpiexec, srun) started this process, or NNX_MPI=1."""
    if os.environ.get("NNX_MPI") in ("0", "1"):
        return os.environ["NNX_MPI"] == "1"
    return any(v in os.environ for v in _LAUNCHER_VARS)


def world():
    """The ``Communicator`` over every process of the job (a world of one without MPI)."""
    global _world
    if _world is None:
        if not launched_by_mpi():
            _world = SingleProcess()
            return _world
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise ImportError(f"this process was started by an MPI launcher but mpi4py "
                              f"cannot be imported ({e}); install it: "
                              f"pip install 'nnx-backprop[mpi]'") from None
        _world = Communicator(MPI.COMM_WORLD)
    return _world


class SingleProcess:
    """The world of one process: every collective is the identity."""

    rank, size = 0, 1

    def allgather(self, obj):
        return [obj]

    def bcast(self, obj, root=0):
        return obj

    def allreduce_sum(self, value):
        return value

    def barrier(self):
        pass

    def guard(self, what, timeout):
        return _NoGuard()

    def abort(self, code=1):
        os._exit(code)


class Communicator:
    """An mpi4py communicator with the few collectives nnx.distributed needs."""

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._watchdog = None

    def allgather(self, obj):
        return self.comm.allgather(obj)

    def bcast(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def allreduce_sum(self, value):
        """Sum of a Python number over the ranks."""
        return self.comm.allreduce(value)

    def barrier(self):
        self.comm.Barrier()

    def Allreduce_sum(self, buf):
        """In-place sum of a contiguous buffer over the ranks (host, or device memory
        with a CUDA-aware MPI)."""
        from mpi4py import MPI
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    def Bcast(self, buf, root=0):
        self.comm.Bcast(buf, root=root)

    def guard(self, what, timeout):
        """``with comm.guard('all-reduce', 300):`` aborts the job if the block hangs."""
        if not timeout:
            return _NoGuard()
        if self._watchdog is None:
            self._watchdog = Watchdog(self)
        return self._watchdog.arm(what, float(timeout))

    def abort(self, code=1):
        self.comm.Abort(code)
        os._exit(code)                          # not reached: MPI_Abort does not return


class _NoGuard:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Watchdog:
    """One daemon thread that aborts the job when a guarded collective outlives its timeout.

    Arming and disarming are two attribute writes, so guarding every step costs nothing;
    the thread wakes at most every 0.5 s.  MPI_Abort is called from that thread, which
    mpi4py's default MPI_THREAD_MULTIPLE allows.
    """

    def __init__(self, comm):
        self.comm = comm
        self.deadline, self.what, self.timeout = None, "", 0.0
        threading.Thread(target=self._watch, name="nnx-mpi-watchdog", daemon=True).start()

    def arm(self, what, timeout):
        self.what, self.timeout = what, timeout
        self.deadline = time.monotonic() + timeout
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.deadline = None
        return False

    def _watch(self):
        while True:
            deadline = self.deadline
            now = time.monotonic()
            if deadline is not None and now > deadline:
                sys.stderr.write(
                    f"nnx.distributed: rank {self.comm.rank} of {self.comm.size} waited more "
                    f"than {self.timeout:g} s in {self.what}: another rank has died or hangs "
                    f"(or is slower than the timeout; raise it with DataParallel(..., "
                    f"timeout=...)). Aborting the job.\n")
                sys.stderr.flush()
                self.comm.abort(75)
            wait = 0.5 if deadline is None else min(0.5, max(deadline - now, 0.0) + 0.01)
            time.sleep(wait)


class HostTransport:
    """Collectives on flat device arrays through MPI on host (NumPy) buffers.

    NumPy arrays are reduced in place; other backends' arrays are copied to the host and
    back (``device`` is the ``backends.Device`` they live on).
    """

    name = "mpi"

    def __init__(self, comm, device):
        self.comm, self.device = comm, device
        self.on_host = device.backend.name == "numpy"

    def _run(self, flat, collective):
        host = flat if self.on_host else self.device.backend.to_host(flat)
        dtype = host.dtype                      # MPI has no float16: reduce in float32
        buf = np.ascontiguousarray(host, dtype=np.float32 if dtype == np.float16 else dtype)
        collective(buf)
        buf = buf.astype(dtype, copy=False)
        return buf if self.on_host else self.device.backend.from_host(buf, self.device.native)

    def allreduce_sum(self, flat):
        return self._run(flat, self.comm.Allreduce_sum)

    def broadcast(self, flat, root=0):
        return self._run(flat, lambda buf: self.comm.Bcast(buf, root=root))


class CudaAwareTransport:
    """Collectives on CuPy arrays handed to a CUDA-aware MPI as device buffers."""

    name = "cuda-mpi"

    def __init__(self, comm, device):
        self.comm, self.device = comm, device

    def _ready(self, flat):
        import cupy
        flat = cupy.ascontiguousarray(flat)
        cupy.cuda.get_current_stream().synchronize()   # MPI does not know CUDA streams
        return flat

    def allreduce_sum(self, flat):
        with self.device.native:
            flat = self._ready(flat)
            self.comm.Allreduce_sum(flat)
        return flat

    def broadcast(self, flat, root=0):
        with self.device.native:
            flat = self._ready(flat)
            self.comm.Bcast(flat, root=root)
        return flat


TRANSPORTS = ("mpi", "cuda-mpi", "nccl")


def choose_transport(name, device):
    """Check ``name`` ('mpi', 'cuda-mpi', 'nccl'), or choose one from the device for None."""
    backend = device.backend.name
    if name is None:
        if backend != "cupy":
            return "mpi"
        from . import nccl
        return "nccl" if nccl.unavailable_reason() is None else "mpi"
    if name not in TRANSPORTS:
        raise ValueError(f"unknown transport {name!r}: use one of {', '.join(TRANSPORTS)} "
                         f"(or None to choose from the device)")
    if name != "mpi" and backend != "cupy":
        raise ValueError(f"transport {name!r} needs CuPy arrays, but the parameters are on "
                         f"{device}; use transport='mpi'")
    return name


def transport(name, comm, device):
    """The transport object for a name from ``choose_transport``."""
    if name == "nccl":
        from . import nccl
        return nccl.NcclTransport(comm, device)
    if name == "cuda-mpi":
        return CudaAwareTransport(comm, device)
    return HostTransport(comm, device)
