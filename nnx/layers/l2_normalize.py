from .. import _checks
from ..module import Module


class L2Normalize(Module):
    """Scale each row to unit Euclidean length.

    ::

        n = max(||x||, eps),  y = x / n;   dx = (g - y·Σ_j g_j·y_j) / n
        (rows with ||x|| < eps are just scaled by 1/eps: there dx = g / eps)

    ||x|| is computed as m·||x / m|| with ``m = max_j |x_j|``, so that squares neither overflow
    (huge rows: [3e19, 4e19] -> [0.6, 0.8] in float32) nor underflow (tiny rows).
    """

    def __init__(self, eps=1e-12):
        self.eps = _checks.positive_number("L2Normalize", "eps", eps)

    def config(self):
        return {"eps": self.eps}

    def fprop(self, x):
        xp = self.check_array(x)
        m = xp.max(xp.abs(x), axis=-1, keepdims=True)
        m = xp.where(m > 0, m, 1.0)                         # all-zero rows: n = 0
        s = x / m
        n = m * xp.sqrt(xp.sum(s * s, axis=-1, keepdims=True))
        self.n = xp.maximum(n, self.eps)
        self.y = x / self.n
        self.out_shape = tuple(self.y.shape)
        return self.y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        along = xp.sum(grad_output * self.y, axis=-1, keepdims=True)
        along = xp.where(self.n > self.eps, along, 0.0)       # clamped rows: no projection
        d = grad_output - self.y * along
        d /= self.n
        return d
