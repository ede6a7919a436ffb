"""How many array operations (and device-to-host readbacks) a call issues (private; used
by tests/test_ops_count.py and nnx-bench through nnx.testing._count).

Every array operation is at least one kernel launch on a GPU, and every readback a
synchronisation, so these counts are what a GPU would be made to do, measured on the CPU:

- ``count_strict(fn)``: on array-api-strict arrays, every call of a namespace function and
  every array operator (``+``, ``@``, ``x[idx]`` ...) made from outside array-api-strict
  counts once; reshapes, transposes, broadcasts and basic slicing are views and are counted
  apart (``views``); readbacks are ``bool()``, ``float()``, ``int()``, ``complex()``,
  ``operator.index()`` and copies to the host (``__array__``, ``__dlpack__``).
- ``count_torch(fn)``: on torch tensors, the top-level aten operators of the call in
  ``torch.profiler`` (an aten op run inside another one is part of it), views left out
  (reshape, view, slice, transpose ...), but a view op that has to copy counts its copy;
  readbacks are ``aten::item`` / ``aten::_local_scalar_dense`` and ``aten::is_nonzero``.

    ops = count_strict(lambda: layer.bprop(layer.fprop(x)))
    ops.ops, ops.readbacks, ops.by_name
"""

import collections
import contextlib
import dataclasses
import threading

# Array API functions that make a view (no kernel): counted as views, not operations.
STRICT_VIEWS = frozenset({"reshape", "permute_dims", "matrix_transpose", "expand_dims",
                          "squeeze", "broadcast_to", "broadcast_arrays", "asarray_view",
                          "mT", "T"})
STRICT_READBACKS = ("__bool__", "__float__", "__int__", "__index__", "__complex__",
                    "__array__", "__dlpack__")
# aten ops that only make a view of their input.
TORCH_VIEWS = frozenset(f"aten::{n}" for n in (
    "reshape", "view", "_reshape_alias", "slice", "transpose", "permute", "expand",
    "expand_as", "detach", "detach_", "as_strided", "t", "unsqueeze", "squeeze", "select",
    "alias", "unflatten", "flatten", "view_as", "numpy_T", "mT", "mH", "adjoint",
    "matrix_H", "unbind", "split", "split_with_sizes", "chunk", "narrow", "diagonal",
    "movedim", "swapaxes", "_unsafe_view", "lift_fresh", "resolve_conj", "resolve_neg",
    "broadcast_to", "contiguous", "_neg_view", "_conj", "real", "imag", "result_type",
    "empty_like_view", "retain_grad", "requires_grad_", "set_", "is_same_size", "dim",
    "size", "stride", "sym_size", "sym_stride", "is_floating_point", "is_complex"))
TORCH_READBACKS = frozenset({"aten::item", "aten::_local_scalar_dense", "aten::is_nonzero"})


@dataclasses.dataclass
class Count:
    ops: int = 0
    views: int = 0
    readbacks: int = 0
    by_name: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def __str__(self):
        top = ", ".join(f"{n} {k}" for n, k in self.by_name.most_common())
        return f"{self.ops} ops, {self.readbacks} readbacks ({top})"


# -- array-api-strict -------------------------------------------------------------------

def _is_view_key(key):
    """x[key] with only slices, ints, None and Ellipsis: a view."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int)) for p in parts)


class _StrictCounter:
    _lock = threading.RLock()         # a count inside a count: both see the operations

    def __init__(self):
        self.count = Count()
        self.depth = 0

    def _wrap(self, name, real, kind):
        counter = self

        def wrapper(*args, **kwargs):
            if counter.depth == 0:
                c = counter.count
                if kind == "readback":
                    c.readbacks += 1
                    c.by_name[name] += 1
                elif kind == "view" or (name == "__getitem__" and _is_view_key(args[1])):
                    c.views += 1
                else:
                    c.ops += 1
                    c.by_name[name] += 1
            counter.depth += 1
            try:
                return real(*args, **kwargs)
            finally:
                counter.depth -= 1
        return wrapper

    @contextlib.contextmanager
    def active(self):
        import array_api_strict as xp
        A = xp._array_object.Array
        patched = []
        with self._lock:
            try:
                for name in dir(xp):
                    obj = getattr(xp, name)
                    if name.startswith("_") or not callable(obj) or isinstance(obj, type) \
                            or name in ("isdtype", "result_type", "can_cast", "finfo",
                                        "iinfo", "get_array_api_strict_flags",
                                        "set_array_api_strict_flags",
                                        "reset_array_api_strict_flags",
                                        "ArrayAPIStrictFlags", "__array_namespace_info__"):
                        continue
                    kind = "view" if name in STRICT_VIEWS else "op"
                    patched.append((xp, name, obj))
                    setattr(xp, name, self._wrap(name, obj, kind))
                for name in dir(A):
                    if name in STRICT_READBACKS:
                        kind = "readback"
                    elif name in ("mT", "T"):
                        prop = getattr(A, name)
                        patched.append((A, name, prop))
                        setattr(A, name, property(self._wrap(name, prop.fget, "view")))
                        continue
                    elif name.startswith("__") and name not in (
                            "__init__", "__new__", "__repr__", "__str__", "__getattribute__",
                            "__setattr__", "__delattr__", "__dir__", "__class__", "__doc__",
                            "__module__", "__slots__", "__hash__", "__reduce__",
                            "__reduce_ex__", "__sizeof__", "__subclasshook__", "__format__",
                            "__init_subclass__", "__getstate__", "__array_namespace__",
                            "__dlpack_device__", "__annotations__", "__weakref__",
                            "__iter__", "__buffer__") and callable(getattr(A, name)):
                        kind = "op"
                    else:
                        continue
                    real = A.__dict__.get(name, getattr(A, name))
                    patched.append((A, name, real))
                    setattr(A, name, self._wrap(name, real, kind))
                yield self.count
            finally:
                for owner, name, obj in reversed(patched):
                    setattr(owner, name, obj)


def count_strict(fn):
    """Count of the array-api-strict operations and readbacks ``fn()`` issues."""
    counter = _StrictCounter()
    with counter.active():
        fn()
    return counter.count


# -- torch --------------------------------------------------------------------------------

def count_torch(fn):
    """Count of the top-level aten operators (views left out) ``fn()`` issues on torch."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    count = Count()
    events = [e for e in prof.events()]

    def under_aten(e):
        p = e.cpu_parent
        while p is not None:
            if p.name.startswith("aten::"):
                return True
            p = p.cpu_parent
        return False

    def visit(e):
        if e.name in TORCH_READBACKS:
            count.readbacks += 1
            count.by_name[e.name] += 1
        elif e.name in TORCH_VIEWS:
            count.views += 1
            for child in e.cpu_children:        # a reshape that has to copy: its copy counts
                if child.name.startswith("aten::"):
                    visit(child)
        else:
            count.ops += 1
            count.by_name[e.name] += 1
            # readbacks inside an op (e.g. is_nonzero -> item) are counted by that op's name

    for e in events:
        if e.name.startswith("aten::") and not under_aten(e):
            visit(e)
    return count
