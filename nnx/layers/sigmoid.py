from ..device import namespace
from ..module import Module


class Sigmoid(Module):
    """y = 1 / (1 + e^-x) = (1 + tanh(x/2)) / 2  (no overflow);   dx = g·y·(1 - y)"""

    def fprop(self, x):
        y = namespace(x).tanh(x * 0.5)
        y *= 0.5
        y += 0.5
        self.y = y
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        self._check_grad(grad_output)
        d = 1.0 - self.y
        d *= self.y
        d *= grad_output
        return d
