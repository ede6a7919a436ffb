import math

from ..device import namespace
from ..module import Module

_C = math.sqrt(2.0 / math.pi)
_A = 0.044715


class GELU(Module):
    """Gaussian error linear unit, tanh form (as torch.nn.GELU(approximate="tanh")).

    y = ½·x·(1 + t),  t = tanh(u),  u = c·(x + a·x³),  c = √(2/π), a = 0.044715
    dx = g·(½·(1 + t) + ½·x·(1 − t²)·c·(1 + 3a·x²))
    """

    def fprop(self, x):
        xp = namespace(x)
        self._check_array(x)
        self.x = x
        x2 = x * x
        self.t = xp.tanh((x2 * _A + 1.0) * x * _C)
        y = (self.t + 1.0) * x
        y *= 0.5
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        self._check_grad(grad_output)
        x, t = self.x, self.t
        d = (1.0 - t * t) * x
        d *= (x * x) * (3 * _A * _C) + _C
        d += t
        d += 1.0
        d *= grad_output
        d *= 0.5
        return d
