from .. import _checks
from ..module import Module


class LeakyReLU(Module):
    """y = x if x > 0 else slope·x;   dx = g if x > 0 else slope·g"""

    def __init__(self, slope=0.01):
        self.slope = _checks.finite_number("LeakyReLU", "slope", slope)

    def config(self):
        return {"slope": self.slope}

    def fprop(self, x):
        xp = self.check_array(x)
        self.mask = x > 0
        y = xp.where(self.mask, x, x * self.slope)
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        return xp.where(self.mask, grad_output, grad_output * self.slope)
