from ..device import namespace
from ..module import Module


class LogSoftmax(Module):
    """log of the softmax over the last axis, computed stably.

    y_i = x_i - m - log Σ_j e^(x_j - m);   dx = g - e^y · Σ_j g_j
    """

    def fprop(self, x):
        xp = namespace(x)
        shifted = x - xp.max(x, axis=-1, keepdims=True)
        y = shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
        self.y = y
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        d = xp.exp(self.y)
        d *= -xp.sum(grad_output, axis=-1, keepdims=True)
        d += grad_output
        return d
