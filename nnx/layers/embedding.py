import math
import weakref

import array_api_compat

from nnx import backends

from .. import _checks, _deferred
from ..device import check_same_device, index_dtype, namespace, short_dtype
from ..errors import ArgumentTypeError, DTypeError, LabelError, ShapeError
from ..module import Module


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``dim``, looked up by integer index.

    ::

        fprop:  y[n, t] = W[k[n, t]]            k: integer indices (N, T) (any shape), W: (V, dim)
        bprop:  dW = onehot(k)ᵀ·g  (V, N·T)·(N·T, dim): one matmul, no scatter; the indices have
                no gradient (bprop returns None)

    W ~ N(0, 1) drawn on the host, as torch.nn.Embedding.  Indices must be integers in
    [0, V); the range is read back once per index array (``check_indices = False`` skips it,
    for a caller that has checked all its indices up front, as ``fit`` does;
    ``check_indices = "deferred"`` keeps each batch's min and max on the device and verifies
    them at the next readback nnx makes, or at ``nnx.check_deferred()``: no synchronisation
    per step).
    """

    param_names = ("W",)
    check_indices = True

    def __init__(self, num_embeddings, dim, *, dtype=None, device=None):
        self.num_embeddings = _checks.positive_int("Embedding", "num_embeddings", num_embeddings)
        self.dim = _checks.positive_int("Embedding", "dim", dim)
        self.init_params(dtype, device,
                          W=backends.host.normal((self.num_embeddings, self.dim), 1.0,
                                                 "float64"))
        self._checked = None

    def config(self):
        return {"_num_embeddings": self.num_embeddings, "_dim": self.dim}

    def check(self, k):
        """Raise LabelError unless every index in ``k`` lies in [0, num_embeddings): one
        readback."""
        xp = self._check_indices(k)
        wide = index_dtype(xp)      # narrow ints compared with V wrap around (torch uint8)
        k = k if k.dtype == wide else xp.astype(k, wide)
        if math.prod(k.shape) and bool(xp.any((k < 0) | (k >= self.num_embeddings))):
            raise self._range_error(int(xp.min(k)), int(xp.max(k)))

    def _range_error(self, low, high):
        """The LabelError for indices from ``low`` to ``high``; None inside [0, V)."""
        if 0 <= low and high < self.num_embeddings:
            return None
        return LabelError(f"{self!r}: indices must lie in [0, {self.num_embeddings}), got "
                          f"values from {low} to {high}; the table has one row per index "
                          f"(raise num_embeddings or fix the data)")

    def _check_indices(self, k):
        if not hasattr(k, "dtype") or not hasattr(k, "shape"):
            raise ArgumentTypeError(f"{self!r}.fprop: indices must be an integer array, got "
                                    f"{type(k).__name__}; convert with nnx.asarray(k)")
        xp = namespace(k)
        if k.dtype == xp.bool or not xp.isdtype(k.dtype, "integral"):
            got = short_dtype(k.dtype)
            raise DTypeError(f"{self!r}.fprop: indices must be integers, got {got}; "
                             f"convert with nnx.asarray(k, dtype='int64') (float indices are "
                             f"refused: 2.7 has no row)")
        check_same_device(f"{self!r}.fprop", k, self.W, "indices")
        return xp

    def check_once(self, k, wide=None):
        """The check ``check_indices`` asks for, once per index array ``k`` (``wide``: k as
        index_dtype): at once (one readback), or deferred (its min and max kept on the
        device).  Returns whether it is deferred.  nnx.compile_step and compile_fprop call
        it before their program, which cannot read a value back."""
        deferred = _deferred.deferring(self, "check_indices", k)
        if self.check_indices:
            seen = self._checked() if self._checked is not None else None
            if seen is not k:
                if not deferred:
                    self.check(k)
                elif math.prod(tuple(k.shape)):     # the min and max wait on the device
                    xp = namespace(k)
                    wide = k if wide is None else wide
                    _deferred.pending(self).record("range", (xp.min(wide), xp.max(wide)),
                                                   lambda v: self._range_error(*v))
                try:
                    self._checked = weakref.ref(k)
                except TypeError:
                    self._checked = None
        return deferred

    def fprop(self, k):
        xp = self._check_indices(k)
        shape = tuple(k.shape)
        if len(shape) < 1:
            raise ShapeError(f"{self!r}.fprop: indices have shape (), expected (batch, time)")
        wide = index_dtype(xp)
        self.k = k if k.dtype == wide else xp.astype(k, wide)
        deferred = self.check_once(k, self.k)
        try:
            y = xp.take(self.W, xp.reshape(self.k, (-1,)), axis=0)
        except (IndexError, RuntimeError, ValueError):
            if deferred:                # the gather met an index out of range: say which
                _deferred.pending(self).forget_last()   # told now, not again later
                self.check(k)
            raise
        y = xp.reshape(y, shape + (self.dim,))
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        rows = xp.arange(self.num_embeddings, dtype=self.k.dtype,
                         device=array_api_compat.device(self.W))
        onehot = xp.astype(xp.reshape(self.k, (-1, 1)) == rows, self.W.dtype)   # (N·T, V)
        self.dW = xp.matrix_transpose(onehot) @ xp.reshape(grad_output, (-1, self.dim))
        return None


def first_embedding(net):
    """The Embedding that reads ``net``'s input directly (net itself, or the first module of
    nested Sequentials), else None: its input is indices, not floats."""
    from ..sequential import Sequential
    while isinstance(net, Sequential) and net.children():
        net = net.children()[0]
    return net if isinstance(net, Embedding) else None
