from ..module import Module


class ReLU(Module):
    """y = max(x, 0);   dx = g·[x > 0]      (NaN stays NaN in y: a bad input is never hidden)"""

    def fprop(self, x):
        xp = self._check_array(x)
        self.mask = x > 0
        y = xp.clip(x, min=0.0)         # where(x > 0, x, 0) would turn NaN into 0
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        return xp.where(self.mask, grad_output, 0.0)
