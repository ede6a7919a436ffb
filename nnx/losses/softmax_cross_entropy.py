from nnx.backends import fast

from .base import Loss


class SoftmaxCrossEntropy(Loss):
    """Softmax and cross-entropy fused, stable for any scores z.

    log p = z - m - log Σ_j e^(z_j - m);   L = -(1/N) Σ t·log p;
    dL/dz = (p·Σ_j t_j - t) / N   (= (p - t)/N for one-hot t or integer labels)

    Integer labels on NumPy skip the one-hot matrix (backends.fast); same formula.
    """

    classifies = True           # fit reports accuracy and test errors

    def fprop(self, z, t):
        fused = fast.softmax_cross_entropy_labels(z, t, self.check_labels)
        if fused is not None:               # NumPy floats and valid integer labels
            loss, self._grad = fused
            return loss
        xp = self._check_z(z)
        given = t
        t = self._targets(xp, z, t)             # checks t's type and device first
        is_labels = xp.isdtype(given.dtype, "integral")
        n = float(z.shape[0])
        shifted = z - xp.max(z, axis=1, keepdims=True)
        p = xp.exp(shifted)
        s = xp.sum(p, axis=1, keepdims=True)
        logp = shifted - xp.log(s)
        p /= s                                          # softmax
        if not is_labels:
            p *= xp.sum(t, axis=1, keepdims=True)       # 1 for one-hot targets
        p -= t
        p /= n
        self._grad = p
        return -self._mean(xp, t * logp, n)
