from ..module import Module
from .sigmoid import sigmoid_pair


class Softplus(Module):
    """y = log(1 + e^x) (computed as logaddexp(x, 0));   dx = g·σ(x)

    σ(x) from ``e^-|x|`` (Sigmoid's formula): accurate far below zero, where y ≈ e^x.
    """

    def fprop(self, x):
        xp = self.check_array(x)
        self.x = x
        y = xp.logaddexp(x, 0.0)
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        s, _ = sigmoid_pair(self.x)
        s *= grad_output
        return s
