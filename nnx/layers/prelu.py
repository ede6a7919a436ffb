from nnx import backends

from .. import _checks
from ..errors import ShapeError
from ..module import Module


class PReLU(Module):
    """LeakyReLU with a trainable slope a: one shared by every value, or one per feature
    (axis 1, as in PyTorch: the columns of (N, C) rows, the channels of (N, C, H, W) images).

    ::

        y = x if x > 0 else a·x;   dx = g if x > 0 else a·g;   da = Σ g·x·[x <= 0]
        (summed over every axis but 1 for per-feature slopes, over everything for a shared one).
    """

    param_names = ("a",)

    def __init__(self, num_parameters=1, init=0.25, *, dtype=None, device=None):
        # num_parameters: 1 (one shared slope) or the number of features (axis 1's length)
        self.num_parameters = _checks.positive_int("PReLU", "num_parameters", num_parameters)
        self.init = _checks.finite_number("PReLU", "init", init)
        self.init_params(dtype, device,
                          a=backends.host.full((self.num_parameters,), self.init, "float64"))

    def config(self):
        return {"num_parameters": self.num_parameters, "init": self.init}

    def fprop(self, x):
        shape, c = tuple(x.shape), self.num_parameters
        if len(shape) < 1 or (c > 1 and (len(shape) < 2 or shape[1] != c)):
            want = "(batch, ...)" if c == 1 else f"(batch, {c}, ...) (one slope per feature, axis 1)"
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, expected {want}")
        xp = self.check_array(x)
        # per-feature slopes broadcast along axis 1: (1, C, 1, ...); a shared one as it is
        self.slope = self.a if c == 1 else xp.reshape(self.a, (1, c) + (1,) * (len(shape) - 2))
        self.x, self.mask = x, x > 0
        y = xp.where(self.mask, x, self.slope * x)
        self.out_shape = shape
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        g = grad_output
        gx = xp.where(self.mask, 0.0, g * self.x)
        if self.num_parameters == 1:
            self.da = xp.reshape(xp.sum(gx), (1,))
        else:
            self.da = xp.sum(gx, axis=(0,) + tuple(range(2, gx.ndim)))
        return xp.where(self.mask, g, self.slope * g) if need_input_grad else None
