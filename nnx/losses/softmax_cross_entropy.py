from .base import Loss


class SoftmaxCrossEntropy(Loss):
    """Softmax and cross-entropy fused, stable for any scores z.

    log p = z - m - log Σ_j e^(z_j - m);   L = -(1/N) Σ t·log p;
    dL/dz = (p·Σ_j t_j - t) / N   (= (p - t)/N for one-hot t or integer labels)
    """

    def fprop(self, z, t):
        xp = self._check_z(z)
        t = self._targets(xp, z, t)
        shifted = z - xp.max(z, axis=1, keepdims=True)
        logp = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
        n = z.shape[0]
        grad = xp.exp(logp)
        grad *= xp.sum(t, axis=1, keepdims=True)
        grad -= t
        grad /= float(n)
        self._grad = grad
        return -xp.sum(t * logp) / float(n)
