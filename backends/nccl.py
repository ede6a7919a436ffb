"""NCCL collectives for CuPy arrays; the NCCL unique id travels over MPI.

Untested here: the development machine has no GPU.  The calls follow CuPy's
``cupy.cuda.nccl.NcclCommunicator`` (allReduce, bcast on the current stream).
"""

_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}


def unavailable_reason():
    """None when CuPy was built with NCCL, else why not."""
    try:
        from cupy.cuda import nccl
    except Exception as e:
        return f"cupy.cuda.nccl cannot be imported ({type(e).__name__}: {e})"
    if not getattr(nccl, "available", True):
        return "CuPy was built without NCCL"
    return None


class NcclTransport:
    """Sum-all-reduce and broadcast of flat CuPy arrays on one GPU per process."""

    name = "nccl"

    def __init__(self, comm, device):
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(f"transport='nccl' is unavailable: {reason}; "
                               f"use transport='mpi'")
        from cupy.cuda import nccl
        self.nccl, self.device = nccl, device
        uid = comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None, root=0)
        with device.native:
            self.communicator = nccl.NcclCommunicator(comm.size, uid, comm.rank)

    def _call(self, flat):
        import cupy
        flat = cupy.ascontiguousarray(flat)
        name = str(flat.dtype)
        if name not in _DTYPES:
            raise TypeError(f"NCCL transport: unsupported dtype {name}; use float16/32/64")
        return flat, getattr(self.nccl, _DTYPES[name]), cupy.cuda.get_current_stream()

    def allreduce_sum(self, flat):
        with self.device.native:
            flat, dtype, stream = self._call(flat)
            ptr = flat.data.ptr
            self.communicator.allReduce(ptr, ptr, flat.size, dtype, self.nccl.NCCL_SUM,
                                        stream.ptr)
        return flat

    def broadcast(self, flat, root=0):
        with self.device.native:
            flat, dtype, stream = self._call(flat)
            self.communicator.bcast(flat.data.ptr, flat.size, dtype, root, stream.ptr)
        return flat

    def synchronize(self):
        """Wait for the queued collective (so a watchdog can see it finish)."""
        with self.device.native:
            import cupy
            cupy.cuda.get_current_stream().synchronize()
