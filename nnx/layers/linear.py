import math

from nnx import backends

from .. import _checks
from ..module import Module


class Linear(Module):
    """Fully connected layer.

    fprop:  y = x·W + b                      x: (N, n_in), W: (n_in, n_out), b: (n_out,)
    bprop:  dW = xᵀ·g,  db = Σ_batch g,  dx = g·Wᵀ      g = dL/dy: (N, n_out)

    W ~ N(0, sqrt(2/(n_in+n_out))) drawn on the host (the same on every backend), b = 0.
    """

    param_names = ("W", "b")

    def __init__(self, n_in, n_out, *, dtype=None, device=None):
        self.n_in = _checks.positive_int("Linear", "n_in", n_in)
        self.n_out = _checks.positive_int("Linear", "n_out", n_out)
        std = math.sqrt(2.0 / (self.n_in + self.n_out))
        self._init_params(dtype, device,
                          W=backends.host.normal((self.n_in, self.n_out), std, "float64"),
                          b=backends.host.full((self.n_out,), 0.0, "float64"))

    def config(self):
        return {"_n_in": self.n_in, "_n_out": self.n_out}

    def fprop(self, x):
        self._check_input(x, self.n_in)
        self.x = x
        y = x @ self.W
        y += self.b
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        g = grad_output
        self.dW = self.x.T @ g
        self.db = xp.sum(g, axis=0)
        return g @ self.W.T if need_input_grad else None
