from ..device import namespace
from ..module import Module


class Tanh(Module):
    """y = tanh(x);   dx = g·(1 - y²)"""

    def fprop(self, x):
        self.check_array(x)
        self.y = namespace(x).tanh(x)
        self.out_shape = tuple(self.y.shape)
        return self.y

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        d = 1.0 - self.y * self.y
        d *= grad_output             # d is a fresh array: update it in place
        return d
