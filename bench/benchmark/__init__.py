"""``nnx-bench``: training-step and inference throughput of nnx on every backend, beside a
hand-written NumPy step, PyTorch eager and the step's matmuls alone (the floor)."""

from .cli import main

__all__ = ["main"]
