from .base import Loss


class CrossEntropy(Loss):
    """Cross-entropy of probabilities x (e.g. after Softmax), as the seeds write it.

    L = -(1/N) Σ t·log max(x, eps);   dL/dx = -t / max(x, eps) / N
    The clamp keeps log 0 away; prefer SoftmaxCrossEntropy on scores, which is stable.
    """

    def __init__(self, eps=1e-12):
        self.eps = float(eps)

    def fprop(self, x, t):
        xp = self._check_z(x)
        t = self._targets(xp, x, t)
        clamped = xp.maximum(x, self.eps)
        n = float(x.shape[0])
        self._grad = -t / clamped / n
        return -xp.sum(t * xp.log(clamped)) / n
