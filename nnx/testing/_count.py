"""How many array operations (and readbacks) a call issues: see ``nnx.backends.count``
(it names torch and array-api-strict, so it lives with the backends)."""

from nnx.backends.count import (STRICT_VIEWS, TORCH_READBACKS, TORCH_VIEWS, Count,  # noqa: F401
                                count_strict, count_torch)

COUNTERS = {"strict": count_strict, "torch": count_torch}


def count_ops(fn, *, on="strict"):
    """The array operations and device-to-host readbacks ``fn()`` issues, as a ``Count``
    (``.ops``, ``.views``, ``.readbacks``, ``.by_name``; ``print`` it for one line).

    Each operation is at least one kernel launch on a GPU and each readback a
    synchronisation, so this is what a GPU would be made to do, counted on the CPU.
    ``on="strict"``: run ``fn`` on array-api-strict arrays (e.g. inside
    ``with nnx.device("strict"):``); every namespace call and array operator counts once,
    views (reshape, transpose, basic slicing) are counted apart.  ``on="torch"``: run it on
    torch tensors; the top-level aten operators that ``torch.profiler`` records count, views
    left out.  Arrays of another library are not counted (they give 0).

        c = nnx.testing.count_ops(lambda: net.bprop(net.fprop(x)))
        print(c.ops, c.readbacks)
    """
    from .._checks import ArgumentError, ArgumentTypeError
    if not callable(fn):
        raise ArgumentTypeError(f"count_ops: fn must be a callable run with no arguments "
                                f"(e.g. lambda: net.fprop(x)), got {type(fn).__name__}")
    if on not in COUNTERS:
        raise ArgumentError(f"count_ops: on must be one of {', '.join(map(repr, COUNTERS))}, "
                            f"got {on!r}")
    library = {"strict": "array_api_strict", "torch": "torch"}[on]
    try:
        __import__(library)
    except ImportError:
        raise ArgumentError(f"count_ops: on={on!r} needs {library} installed "
                            f"(pip install {library.replace('_', '-')})") from None
    return COUNTERS[on](fn)
