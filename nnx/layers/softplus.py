from ..device import namespace
from ..module import Module


class Softplus(Module):
    """y = log(1 + e^x) (computed as logaddexp(x, 0));   dx = g·sigmoid(x)"""

    def fprop(self, x):
        xp = namespace(x)
        self.x = x
        y = xp.logaddexp(x, 0.0)
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        s = xp.tanh(self.x * 0.5)    # sigmoid(x) = (1 + tanh(x/2)) / 2, without overflow
        s += 1.0
        s *= 0.5
        s *= grad_output
        return s
