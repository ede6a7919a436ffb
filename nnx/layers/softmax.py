from ..device import namespace
from ..module import Module


class Softmax(Module):
    """Softmax over the last axis, max-subtracted so that exp never overflows.

    y_i = e^(x_i - m) / Σ_j e^(x_j - m),  m = max_j x_j;   dx = y·(g - Σ_j g_j·y_j)
    """

    def fprop(self, x):
        xp = namespace(x)
        y = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
        y /= xp.sum(y, axis=-1, keepdims=True)
        self.y = y
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        d = grad_output - xp.sum(grad_output * self.y, axis=-1, keepdims=True)
        d *= self.y
        return d
