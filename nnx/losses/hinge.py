from .. import _checks, _deferred
from ..errors import LabelError
from .base import Loss


class Hinge(Loss):
    """Multiclass hinge (Weston-Watkins) on scores z with true class y.

    ::

        m_j = max(0, margin + z_j - z_y) for j ≠ y;   L = (1/N) Σ_j m_j;
        dL/dz_j = [m_j > 0] / N  (j ≠ y),   dL/dz_y = -Σ_j [m_j > 0] / N

    Targets are integer labels or one-hot rows; float targets that are not one-hot raise
    LabelError (the check reads one flag back per new target array, none for an array
    checked before; ``check_labels=False`` skips it, as it skips the label-range check;
    ``check_labels = "deferred"`` verifies it later, see Loss).
    """

    classifies = True           # fit reports accuracy and test errors

    def __init__(self, margin=1.0):
        self.margin = _checks.finite_number("Hinge", "margin", margin)

    def fprop(self, z, t):
        xp = self._check_z(z)
        onehot = self._targets(xp, z, t)
        if onehot is t and self.check_labels and not self._seen(t, "one-hot"):
            if self._deferring(t):
                _deferred.pending(self).record("one-hot", (self._not_one_hot(xp, t),),
                                               lambda v: self._one_hot_error() if v[0] else None)
            else:
                self._check_one_hot(xp, t)
                self._remember(t, "one-hot")
        is_true = onehot > 0
        z_true = xp.sum(z * onehot, axis=1, keepdims=True)
        margins = xp.where(is_true, 0.0, z - z_true + self.margin)
        active = xp.astype(margins > 0, z.dtype)
        n = float(z.shape[0])
        grad = active - onehot * xp.sum(active, axis=1, keepdims=True)
        grad /= n
        self._grad = grad
        return self._mean(xp, xp.maximum(margins, 0.0), n)

    def _value_checks(self, xp, z, t):
        if not xp.isdtype(t.dtype, "real floating"):
            return None                         # integer labels: the step guards their range
        flag = self._not_one_hot(xp, t)
        return "one-hot", (flag,), flag, lambda v: self._one_hot_error() if v[0] else None

    @staticmethod
    def _not_one_hot(xp, t):
        """A 0-d flag: True unless every row of ``t`` is one-hot."""
        return xp.any((t != 0.0) & (t != 1.0)) | xp.any(xp.sum(t, axis=1) != 1.0)

    def _check_one_hot(self, xp, t):
        if bool(self._not_one_hot(xp, t)):
            raise self._one_hot_error()

    def _one_hot_error(self):
        return LabelError(f"{self!r}.fprop: targets must be one-hot (one 1 per row, zeros "
                          f"elsewhere) or integer labels; for soft targets use "
                          f"SoftmaxCrossEntropy")
