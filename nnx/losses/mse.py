from .base import Loss


class MSE(Loss):
    """Half the squared Euclidean distance:  L = (1/N) Σ_batch 0.5·||z - t||²;   dL/dz = (z - t)/N"""

    classifies = False          # regression: fit reports the test loss, no accuracy

    def fprop(self, z, t):
        xp = self._check_z(z, ndim=None)
        self._check_like(z, t)
        d = z - t
        n = float(z.shape[0])
        loss = self._mean(xp, d * d, n) * 0.5
        d /= n
        self._grad = d
        return loss
