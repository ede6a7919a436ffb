from .base import Loss


class CrossEntropy(Loss):
    """Cross-entropy of probabilities x (e.g. after Softmax), as the seeds write it.

    L = -(1/N) Σ t·log max(x, eps);   dL/dx = -t / x / N where x > eps, else 0
    (the clamp keeps log 0 away, and the loss is flat where it acts); prefer
    SoftmaxCrossEntropy on scores, which is stable.
    """

    def __init__(self, eps=1e-12):
        self.eps = float(eps)

    def fprop(self, x, t):
        xp = self._check_z(x)
        t = self._targets(xp, x, t)
        clamped = xp.maximum(x, self.eps)
        n = float(x.shape[0])
        self._grad = xp.where(x > self.eps, -t / clamped / n, 0.0)
        return -self._mean(xp, t * xp.log(clamped), n)
