from .. import _checks
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
    ``check_labels=False`` skips it (``fit`` checks the first example up front instead).
    """

    classifies = True           # fit reports accuracy and test errors

    def __init__(self, eps=1e-12):
        self.eps = _checks.positive_number("CrossEntropy", "eps", eps)

    def fprop(self, x, t):
        xp = self._check_z(x)
        t = self._targets(xp, x, t)
        if self.check_labels and bool(xp.any(~(x >= 0.0) | (x > 1.0))):       # ~(x >= 0) also catches NaN
            raise ArgumentError(f"{self!r}.fprop: inputs must be probabilities in [0, 1], got "
                                f"values from {float(xp.min(x)):g} to {float(xp.max(x)):g}; "
                                f"for scores (logits) use SoftmaxCrossEntropy, which is stable")
        clamped = xp.maximum(x, self.eps)
        n = float(x.shape[0])
        self._grad = xp.where(x > self.eps, -t / clamped / n, 0.0)
        return -self._mean(xp, t * xp.log(clamped), n)
