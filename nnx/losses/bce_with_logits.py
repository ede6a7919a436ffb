from ..layers.sigmoid import sigmoid_pair
from .base import Loss


class BCEWithLogits(Loss):
    """Sigmoid and binary cross-entropy fused, for targets t in [0, 1] of z's shape.

    ::

        L = (1/N) Σ [max(z, 0) - z·t + log(1 + e^-|z|)];   dL/dz = (sigmoid(z) - t) / N
    """

    classifies = False          # multi-label: fit reports the test loss, no accuracy

    def fprop(self, z, t):
        xp = self._check_z(z, ndim=None)
        self._check_like(z, t)
        n = float(z.shape[0])
        loss = self._mean(xp, xp.maximum(z, 0.0) - z * t + xp.log1p(xp.exp(-xp.abs(z))), n)
        grad, _ = sigmoid_pair(z)          # accurate for z ≪ 0 (see nnx.Sigmoid)
        grad -= t
        grad /= n
        self._grad = grad
        return loss
