from .. import _checks
from ..module import Module


class LogSoftmax(Module):
    """log of the softmax over one axis (the last by default), computed stably.

    y_i = x_i - m - log Σ_j e^(x_j - m);   dx = g - e^y · Σ_j g_j   (i, j along ``axis``)
    """

    def __init__(self, axis=-1):
        self.axis = _checks.integer("LogSoftmax", "axis", axis, -(1 << 30), "be an integer")

    def config(self):
        return {} if self.axis == -1 else {"axis": self.axis}

    def fprop(self, x):
        xp = self.check_array(x)
        _checks.axis_of(self, x, self.axis)
        shifted = x - xp.max(x, axis=self.axis, keepdims=True)
        y = shifted - xp.log(xp.sum(xp.exp(shifted), axis=self.axis, keepdims=True))
        self.y = y
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        d = xp.exp(self.y)
        d *= -xp.sum(grad_output, axis=self.axis, keepdims=True)
        d += grad_output
        return d
