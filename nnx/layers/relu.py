from ..device import namespace
from ..module import Module


class ReLU(Module):
    """y = max(x, 0);   dx = g·[x > 0]"""

    def fprop(self, x):
        xp = namespace(x)
        self.mask = x > 0
        y = xp.where(self.mask, x, 0.0)
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        return xp.where(self.mask, grad_output, 0.0)
