import math

from nnx import backends
from nnx.backends import fast, gather

from .. import _deferred
from ..device import check_same_device, dtype_name, index_dtype
from ..errors import DTypeError, ShapeError
from ..layers._im2col import fill, take
from .base import Loss

_EYE_ENTRIES = 2 ** 18        # eye(C)/N is cached for C <= 512 classes


class SoftmaxCrossEntropy(Loss):
    """Softmax and cross-entropy fused, stable for any scores z.

    ::

        log p = z - m - log Σ_j e^(z_j - m);   L = -(1/N) Σ t·log p;
        dL/dz = (p·Σ_j t_j - t) / N   (= (p - t)/N for one-hot t or integer labels)


    Scores (N, C) take integer labels (N,) or targets of z's shape.  Scores of a sequence
    model (N, T, V) take integer labels (N, T): L is the mean over all N·T positions, and
    dL/dz = (p - onehot)/(N·T).

    Integer labels on NumPy skip the one-hot matrix (backends.fast); same formula.
    Elsewhere integer labels cost 12 array operations for fprop and bprop together: the
    label's log-probability is gathered (take_along_axis: a -inf score elsewhere in the row
    stays harmless), and the gradient subtracts onehot/N, rows of a cached eye(C)/N picked
    by the labels (one gather; up to 512 classes, beyond which a comparison with a cached
    arange builds it in two).
    """

    classifies = True           # fit reports accuracy and test errors

    def fprop(self, z, t):
        fused = fast.softmax_cross_entropy_labels(z, t, self.check_labels)
        if fused is not None:               # NumPy floats and valid integer labels
            loss, self._grad = fused
            return loss
        if getattr(z, "ndim", None) == 3:
            return self._sequence(z, t)
        xp = self._check_z(z)
        t = self._targets(xp, z, t, labels=True)    # checks t's type and device first
        if xp.isdtype(t.dtype, "integral"):
            return self._gather(xp, z, t)
        n = float(z.shape[0])
        shifted = z - xp.max(z, axis=1, keepdims=True)
        p = xp.exp(shifted)
        s = xp.sum(p, axis=1, keepdims=True)
        logp = shifted - xp.log(s)
        p /= s                                          # softmax
        p *= xp.sum(t, axis=1, keepdims=True)           # 1 for one-hot targets
        p -= t
        p /= n
        self._grad = p
        return -self._mean(xp, t * logp, n)

    def _labels(self, xp, z, t):
        """Loss and gradient for integer labels ``t`` of shape z.shape[:-1] (checked)."""
        if dtype_name(z.dtype) == "float16":    # float16 sums overflow: work in float32
            loss = self._labels(xp, xp.astype(z, xp.float32), t)
            self._grad = xp.astype(self._grad, xp.float16)
            return xp.astype(loss, xp.float16)
        count, c = math.prod(z.shape[:-1]), z.shape[-1]
        shifted = z - xp.max(z, axis=-1, keepdims=True)
        e = xp.exp(shifted)
        s = xp.sum(e, axis=-1, keepdims=True)
        t = t[..., None]
        picked = gather.take_along_axis(shifted, t, -1)
        if picked is not None:
            pass
        elif hasattr(xp, "take_along_axis"):
            picked = xp.take_along_axis(shifted, t, axis=-1)
        else:                                   # an older namespace: the one-hot product
            picked = xp.sum(xp.where(t == self._classes(xp, z, c, t.dtype), shifted, 0.0),
                            axis=-1, keepdims=True)
        terms = xp.log(s) - picked              # NaN for an empty batch, as torch's (but
        loss = xp.mean(terms) if count else xp.sum(terms) * math.nan   # no NumPy warning)
        # (the label's own log-probability: a one-hot product would turn a -inf score
        # elsewhere in the row into 0·inf = NaN)
        self._grad = e / (s * float(max(count, 1))) - self._one_hot(xp, z, t, count, c)
        return loss

    def _one_hot(self, xp, z, t, count, c):
        """onehot(t)/count in z's dtype and shape: rows of a cached eye(C)/count picked by
        the labels (one gather) where eye(C) is small, else a comparison with a cached
        arange (two operations)."""
        n = max(count, 1)
        if c * c <= _EYE_ENTRIES:
            from .._constants import on_device
            eye = on_device(("eye/n", c, n, dtype_name(z.dtype)), z, lambda: (
                backends.host.scale(backends.host.eye(c), 1.0 / n, dtype_name(z.dtype)),))[0]
            return xp.reshape(take(xp, eye, xp.reshape(t, (-1,)), 0), tuple(z.shape))
        return xp.where(t == self._classes(xp, z, c, t.dtype), fill(z, 1, 1.0 / n), 0.0)

    def _sequence(self, z, t):
        """(N, T, V) scores with (N, T) integer labels: the mean over all N·T positions."""
        xp = self._check_z(z, ndim=None)
        name = f"{self!r}.fprop"
        if hasattr(t, "dtype"):
            check_same_device(name, t, z, "targets", "scores")
        if not hasattr(t, "dtype") or not xp.isdtype(t.dtype, "integral") or t.dtype == xp.bool:
            raise DTypeError(f"{name}: scores of shape {tuple(z.shape)} (batch, time, "
                             f"classes) take integer labels of shape {tuple(z.shape[:2])}, "
                             f"got {getattr(t, 'dtype', type(t).__name__)}")
        if tuple(t.shape) != tuple(z.shape[:2]):
            raise ShapeError(f"{name}: integer labels have shape {tuple(t.shape)}, expected "
                             f"{tuple(z.shape[:2])} for scores of shape {tuple(z.shape)}")
        given, wide = t, index_dtype(xp)
        if t.dtype != wide:
            t = xp.astype(t, wide)
        self._check_range(xp, t, z.shape[2], name, given)
        return self._gather(xp, z, t)

    def _gather(self, xp, z, t):
        """``_labels``; where a deferred check let labels out of range through and the
        gather refuses them (torch, array-api-strict), the LabelError that says so."""
        try:
            return self._labels(xp, z, t)
        except (IndexError, RuntimeError, ValueError):
            if self._deferring(t):
                _deferred.pending(self).forget_last()      # told now, not again later
                self._raise_out_of_range(xp, t, z.shape[-1], f"{self!r}.fprop")
            raise
