from nnx import backends

from .. import _checks
from ..module import Module


class PReLU(Module):
    """LeakyReLU with a trainable slope a (one shared, or one per feature).

    y = x if x > 0 else a·x;   dx = g if x > 0 else a·g;   da = Σ g·x·[x <= 0]
    (summed over the batch, and over the features when a is shared).
    """

    param_names = ("a",)

    def __init__(self, num_parameters=1, init=0.25, *, dtype=None, device=None):
        # num_parameters: 1 (one shared slope) or the number of features
        self.num_parameters = _checks.positive_int("PReLU", "num_parameters", num_parameters)
        self.init = _checks.finite_number("PReLU", "init", init)
        self._init_params(dtype, device,
                          a=backends.host.full((self.num_parameters,), self.init, "float64"))

    def config(self):
        return {"num_parameters": self.num_parameters, "init": self.init}

    def fprop(self, x):
        xp = self._check_input(x, x.shape[-1] if self.num_parameters == 1 else self.num_parameters)
        self.x, self.mask = x, x > 0
        y = xp.where(self.mask, x, self.a * x)
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        g = grad_output
        da = xp.sum(xp.where(self.mask, 0.0, g * self.x), axis=0)
        self.da = xp.reshape(xp.sum(da), (1,)) if self.num_parameters == 1 else da
        return xp.where(self.mask, g, self.a * g) if need_input_grad else None
