"""Where a benchmark ran: CPU, BLAS and its threads, library versions, GPU."""

import datetime
import importlib.metadata
import os
import platform
import resource
import subprocess

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "XLA_FLAGS", "NNX_MALLOC_TUNING")
PACKAGES = ("numpy", "array-api-compat", "array-api-strict", "torch", "cupy-cuda12x",
            "cupy-cuda13x", "jax", "jaxlib", "threadpoolctl")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_pools():
    """threadpoolctl's view of the BLAS and OpenMP libraries loaded (kernel, threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "num_threads", "architecture",
            "threading_layer", "filepath")
    return [{k: p[k] for k in keep if k in p} for p in threadpool_info()]


def blas_threads():
    """Threads of NumPy's BLAS (the count PyTorch is given too), or the CPU count."""
    for p in blas_pools():
        if p.get("user_api") == "blas" and "numpy" in p.get("filepath", ""):
            return int(p["num_threads"])
    return os.cpu_count() or 1


def pin_cpus(n):
    """Confine this process to ``n`` of the CPUs it may use now: every thread it has and every
    thread it starts later (a library's own pool: XLA runs independent parts of a compiled
    program on its pool's threads at once, beside any BLAS limit).  Returns the CPUs, or None
    where the OS has no CPU affinity (macOS, Windows)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))[:n]
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:     # a thread that ended meanwhile
            pass
    return cpus


def versions():
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def gpu_name():
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:
        return None


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, cwd=os.path.dirname(__file__)).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def describe():
    from nnx.backends import malloc
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "blas": blas_pools(),
        "blas_env": {k: os.environ[k] for k in BLAS_ENV if k in os.environ},
        "malloc": malloc.malloc_setting(),
        "gpu": gpu_name(),
        "versions": versions(),
        "git_commit": git_commit(),
    }


def max_rss_mb():
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
