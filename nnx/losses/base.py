import math
import weakref

from nnx import backends

from .. import _deferred
from ..device import check_same_device, dtype_name, index_dtype, namespace, short_dtype
from ..errors import DTypeError, LabelError, ShapeError, StateError




class Loss:
    """``fprop(z, t)`` returns the batch mean (a 0-d array: ``float(loss)`` reads it);
    ``bprop()`` returns dL/dz, already divided by the batch size.

    Integer labels are checked (range [0, classes)) once per label array: the loss
    remembers the last arrays it checked, and the same array again costs no readback (a
    synchronisation on a GPU), so a loop over fixed batches never syncs; a new array is
    checked once (one flag read back); an array changed in place after its check is not
    checked again.  ``check_labels=False`` skips the checks that read
    values back: the label range, CrossEntropy's [0, 1] inputs, Hinge's one-hot targets;
    ``fit`` checks them once up front instead.

    ``check_labels = "deferred"`` checks every batch without reading anything back inside
    the step: fprop keeps the reductions the check needs (the labels' min and max, or one
    flag) on the device, and the verdict comes at the next readback nnx makes itself
    (``evaluate``, ``save``, the start of ``fit``) or at ``nnx.check_deferred()``, as a
    LabelError naming the calls that had bad values: the loop a GPU wants (two array
    operations per batch, no synchronisation).  On NumPy, where nothing needs reading
    back, bad labels raise at once.
    """

    check_labels = True
    # Whether the outputs are class scores: fit then reports accuracy and test errors (argmax
    # against the labels); False: the test loss only.  None (your own loss): integer labels
    # of shape (N,) mean classification.
    classifies = None
    _REMEMBERED = 8                 # label arrays remembered as checked

    def _seen(self, t, what):
        """Whether ``t`` (the very array object) passed check ``what`` before."""
        for ref, key in getattr(self, "_checked", ()):
            if key == what and ref() is t:
                return True
        return False

    def _remember(self, t, what):
        try:
            ref = weakref.ref(t)
        except TypeError:               # an array type without weak references: keep it
            ref = (lambda a: lambda: a)(t)
        checked = [(r, k) for r, k in getattr(self, "_checked", ()) if r() is not None]
        self._checked = ([(ref, what)] + checked)[:self._REMEMBERED]

    def _check_range(self, xp, t, c, name, given):
        """LabelError unless the integer labels ``t`` (``given``, widened) lie in [0, c):
        one readback per new label array, none for an array checked before (or with
        ``check_labels`` off)."""
        deferring = self._deferring(t)
        if not self.check_labels or self._seen(given, ("range", c)):
            return
        if deferring:
            if math.prod(t.shape):
                _deferred.pending(self).record(("range", c), (xp.min(t), xp.max(t)),
                                               lambda v: _range_error(name, c, *v))
            return
        self._raise_out_of_range(xp, t, c, name)
        self._remember(given, ("range", c))

    @staticmethod
    def _raise_out_of_range(xp, t, c, name):
        """LabelError now (one readback) unless the labels ``t`` lie in [0, c)."""
        if bool(xp.any((t < 0) | (t >= c))):
            raise _range_error(name, c, int(xp.min(t)), int(xp.max(t)))

    def _deferring(self, x):
        """Whether the checks of ``x`` wait for a later readback (``check_labels =
        "deferred"``, on arrays that live away from the host, NumPy's excepted)."""
        return _deferred.deferring(self, "check_labels", x)

    def __call__(self, z, t):
        return self.fprop(z, t)

    def fprop(self, z, t):
        raise NotImplementedError

    def _value_checks(self, xp, z, t):
        """The check of the inputs' or targets' values that fprop reads back (with
        ``check_labels`` on), for a compiled step, whose program cannot read back: (key,
        0-d arrays, a 0-d flag that is True where the check fails, verdict(values of the
        arrays) -> the error or None); None for a loss with no such check (the label range
        is guarded for every loss by the step itself)."""
        return None

    def bprop(self):
        if getattr(self, "_grad", None) is None:
            raise StateError(f"{type(self).__name__}.bprop called before fprop: "
                             f"run fprop(z, t) first")
        return self._grad

    def __repr__(self):
        return f"{type(self).__name__}()"

    @staticmethod
    def _mean(xp, terms, n):
        """Σ terms / n as a 0-d array of terms' dtype; float16 terms are summed in float32
        (a float16 sum overflows past 65504: a batch of 5000 losses of 15).  An empty batch
        (n = 0) has a NaN mean, as in torch, without NumPy's divide-by-zero warning."""
        if not n:
            return xp.sum(terms) * math.nan
        if dtype_name(terms.dtype) != "float16":
            return xp.sum(terms) / n
        return xp.astype(xp.sum(xp.astype(terms, xp.float32)) / n, terms.dtype)

    @staticmethod
    def _classes(xp, z, c, dtype):
        """arange(c) in ``dtype`` on z's device, made once per (c, dtype, device)."""
        from .._constants import on_device
        name = short_dtype(dtype).replace("dtype(", "").strip("')")     # 'int64', 'uint8'
        return on_device(("classes", c, name), z, lambda: (backends.host.scale(
            backends.host.as_array(range(c)), 1, name),))[0]

    # -- target handling shared by the losses --------------------------------------------
    def _check_z(self, z, ndim=2):
        xp = namespace(z)
        if ndim is not None and z.ndim != ndim:
            raise ShapeError(f"{self!r}.fprop: scores have shape {tuple(z.shape)}, expected "
                             f"(batch, classes)")
        if not xp.isdtype(z.dtype, "real floating"):
            raise DTypeError(f"{self!r}.fprop: scores must be floating point, got {short_dtype(z.dtype)}")
        return xp

    def _check_like(self, z, t):
        """Targets of exactly z's shape, dtype and device (regression-style losses)."""
        name = f"{self!r}.fprop"
        shape = tuple(getattr(t, "shape", ()))
        if shape != tuple(z.shape):
            raise ShapeError(f"{name}: targets have shape {shape}, expected {tuple(z.shape)} "
                             f"like the predictions")
        check_same_device(name, t, z, "targets", "predictions")
        if t.dtype != z.dtype:
            raise DTypeError(f"{name}: targets dtype {short_dtype(t.dtype)} differs from "
                             f"the predictions' {short_dtype(z.dtype)}; convert with nnx.asarray(t, dtype=...)")

    def _targets(self, xp, z, t, labels=False):
        """One-hot (or probability) targets of z's shape and dtype, from labels or one-hot;
        ``labels=True``: integer labels come back as they are (widened), after the checks."""
        name = f"{self!r}.fprop"
        if not hasattr(t, "shape"):
            raise TypeError(f"{name}: targets must be an array, got {type(t).__name__}; "
                            f"use nnx.asarray(t)")
        check_same_device(name, t, z, "targets", "scores")
        n, c = z.shape
        if t.dtype == xp.bool:
            raise DTypeError(f"{name}: targets are booleans; give integer labels of shape "
                             f"({n},) or one-hot floats of shape {tuple(z.shape)}")
        if xp.isdtype(t.dtype, "integral"):
            if tuple(t.shape) != (n,):
                raise ShapeError(f"{name}: integer labels have shape {tuple(t.shape)}, "
                                 f"expected ({n},) for scores of shape {tuple(z.shape)}")
            given = t
            wide = index_dtype(xp)      # int64 (int32 on JAX without its x64 switch)
            if t.dtype != wide:         # narrow or unsigned labels: compare them as wide ints
                t = xp.astype(t, wide)
            self._check_range(xp, t, c, name, given)
            if labels:
                return t
            return xp.astype(t[:, None] == self._classes(xp, z, c, wide), z.dtype)
        if tuple(t.shape) != tuple(z.shape):
            raise ShapeError(f"{name}: targets have shape {tuple(t.shape)}; give integer "
                             f"labels of shape ({n},) or one-hot of shape {tuple(z.shape)}")
        if t.dtype != z.dtype:
            raise DTypeError(f"{name}: targets dtype {t.dtype} differs from scores' "
                             f"{z.dtype}; convert with nnx.asarray(t, dtype=...)")
        return t


def _range_error(name, c, low, high):
    """The LabelError for labels from ``low`` to ``high``, or None when they lie in [0, c)."""
    if 0 <= low and high < c:
        return None
    return LabelError(f"{name}: labels must lie in [0, {c}) for {c} classes, got values "
                      f"from {low} to {high}")
