"""pytest-benchmark setup for bench/: thread count and machine details in the saved JSON.

    .venv/bin/python -m pytest bench --benchmark-only [--bench-threads 1]
"""

import pytest


def pytest_addoption(parser):
    parser.addoption("--bench-threads", type=int, default=None,
                     help="BLAS threads for NumPy, PyTorch's thread count and (Linux) the CPUs "
                          "the run may use, as nnx-bench --threads (default: as is)")


def pytest_configure(config):
    threads = config.getoption("--bench-threads")
    if threads:
        from threadpoolctl import threadpool_limits
        from nnx.benchmark.machine import pin_cpus
        pin_cpus(threads)           # XLA's pool would otherwise use every core
        threadpool_limits(threads, user_api="blas")
    try:
        import torch
        from nnx.benchmark.machine import blas_threads
        torch.set_num_threads(blas_threads())       # the same count as NumPy's BLAS
    except ImportError:
        pass


def pytest_benchmark_update_machine_info(config, machine_info):
    from nnx.benchmark import machine
    info = machine.describe()
    machine_info.update({k: info[k] for k in ("cpu", "cpus", "blas", "blas_env", "malloc",
                                              "gpu", "versions")})


@pytest.fixture(autouse=True)
def _seeded():
    import nnx
    nnx.seed(0)
