from .. import _checks
from ..module import Module


class Softmax(Module):
    """Softmax over one axis (the last by default), max-subtracted so exp never overflows.

    ::

        y_i = e^(x_i - m) / Σ_j e^(x_j - m),  m = max_j x_j;   dx = y·(g - Σ_j g_j·y_j)
        (i, j along ``axis``; ``Softmax(axis=1)`` normalises over axis 1 of every input)
    """

    def __init__(self, axis=-1):
        self.axis = _checks.integer("Softmax", "axis", axis, -(1 << 30), "be an integer")

    def config(self):
        return {} if self.axis == -1 else {"axis": self.axis}

    def fprop(self, x):
        xp = self.check_array(x)
        _checks.axis_of(self, x, self.axis)
        y = xp.exp(x - xp.max(x, axis=self.axis, keepdims=True))
        y /= xp.sum(y, axis=self.axis, keepdims=True)
        self.y = y
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        d = grad_output - xp.sum(grad_output * self.y, axis=self.axis, keepdims=True)
        d *= self.y
        return d
