import math

from nnx import backends

from .. import _checks
from ..module import Module


class Linear(Module):
    """Fully connected layer, on rows (N, n_in) or on any leading axes (N, T, n_in).

    ::

        fprop:  y = x·W + b                      x: (..., n_in), W: (n_in, n_out), b: (n_out,)
        bprop:  dW = xᵀ·g,  db = Σ g,  dx = g·Wᵀ      g = dL/dy: (..., n_out)
                (with leading axes, x and g are read as (M, n_in) and (M, n_out) rows, M their
                product: dW is one matmul and db one sum over every row)

    W ~ N(0, sqrt(2/(n_in+n_out))) drawn on the host (the same on every backend), b = 0.
    """

    param_names = ("W", "b")

    def __init__(self, n_in, n_out, *, dtype=None, device=None):
        self.n_in = _checks.positive_int("Linear", "n_in", n_in)
        self.n_out = _checks.positive_int("Linear", "n_out", n_out)
        std = math.sqrt(2.0 / (self.n_in + self.n_out))
        self.init_params(dtype, device,
                          W=backends.host.normal((self.n_in, self.n_out), std, "float64"),
                          b=backends.host.full((self.n_out,), 0.0, "float64"))

    def config(self):
        return {"_n_in": self.n_in, "_n_out": self.n_out}

    def fprop(self, x):
        self.check_input(x, self.n_in, leading=True)
        self.x = x
        y = x @ self.W
        y += self.b
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        g, x = grad_output, self.x
        if g.ndim > 2:                      # (N, T, ...) as rows: one matmul, one sum
            rows = math.prod(g.shape[:-1])
            g = xp.reshape(g, (rows, self.n_out))
            x = xp.reshape(x, (rows, self.n_in))
        self.dW = x.T @ g
        self.db = xp.sum(g, axis=0)
        return grad_output @ self.W.T if need_input_grad else None
