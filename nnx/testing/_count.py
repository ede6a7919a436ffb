"""How many array operations (and readbacks) a call issues: see ``nnx.backends.count``
(it names torch and array-api-strict, so it lives with the backends)."""

from nnx.backends.count import (STRICT_VIEWS, TORCH_READBACKS, TORCH_VIEWS, Count,  # noqa: F401
                                count_strict, count_torch)
