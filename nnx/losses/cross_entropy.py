import math

from .. import _checks, _deferred
from ..errors import ArgumentError
from .base import Loss


class CrossEntropy(Loss):
    """Cross-entropy of probabilities x (e.g. after Softmax) against one-hot or soft targets t.

    ::

        L = -(1/N) Σ t·log max(x, eps);   dL/dx = -t / x / N where x > eps, else 0

    (the clamp keeps log 0 away, and the loss is flat where it acts); prefer
    SoftmaxCrossEntropy on scores, which is stable.

    Inputs outside [0, 1] (or NaN) raise ArgumentError: scores belong in
    SoftmaxCrossEntropy.  The check reads one flag back per call (a sync on a GPU);
    ``check_labels=False`` skips it (``fit`` checks the first example up front instead);
    ``check_labels = "deferred"`` keeps the inputs' min and max on the device and verifies
    them later (see Loss).
    """

    classifies = True           # fit reports accuracy and test errors

    def __init__(self, eps=1e-12):
        self.eps = _checks.positive_number("CrossEntropy", "eps", eps)

    def fprop(self, x, t):
        xp = self._check_z(x)
        t = self._targets(xp, x, t)
        if not self.check_labels or not math.prod(x.shape):
            pass
        elif self._deferring(x):
            _deferred.pending(self).record("probabilities", (xp.min(x), xp.max(x)),
                                           lambda v: self._range_error(*v))
        elif bool(xp.any(~(x >= 0.0) | (x > 1.0))):       # ~(x >= 0) also catches NaN
            raise self._range_error(float(xp.min(x)), float(xp.max(x)))
        clamped = xp.maximum(x, self.eps)
        n = float(x.shape[0])
        self._grad = xp.where(x > self.eps, -t / clamped / n, 0.0)
        return -self._mean(xp, t * xp.log(clamped), n)

    def _value_checks(self, xp, x, t):
        if not math.prod(x.shape):
            return None
        low, high = xp.min(x), xp.max(x)
        return ("probabilities", (low, high), ~(low >= 0.0) | (high > 1.0),  # NaN: bad
                lambda v: self._range_error(*v))

    def _range_error(self, low, high):
        """The ArgumentError for inputs from ``low`` to ``high`` (None inside [0, 1]; NaN,
        which the minimum or maximum carries, is outside)."""
        if low >= 0.0 and high <= 1.0:
            return None
        return ArgumentError(f"{self!r}.fprop: inputs must be probabilities in [0, 1], got "
                             f"values from {low:g} to {high:g}; for scores (logits) use "
                             f"SoftmaxCrossEntropy, which is stable")
