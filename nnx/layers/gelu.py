import math

from ..device import namespace
from ..module import Module

_C = math.sqrt(2.0 / math.pi)
_A = 0.044715


class GELU(Module):
    """Gaussian error linear unit, tanh form (as torch.nn.GELU(approximate="tanh")).

    ::

        y = x·h,  h = ½·(1 + tanh(u)),  u = c·(x + a·x³),  c = √(2/π), a = 0.044715
        dx = g·(h + h·(1 − h)·x·2c·(1 + 3a·x²))      (1 − tanh² u = 4·h·(1 − h))
    """

    def fprop(self, x):
        xp = namespace(x)
        self.check_array(x)
        self.x = x
        u = x * x
        u *= _A * _C
        u += _C
        u *= x
        h = xp.tanh(u)
        h += 1.0
        h *= 0.5
        self.h = h
        y = x * h
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        x, h = self.x, self.h
        d = x * x
        d *= 6 * _A * _C
        d += 2 * _C
        d *= x
        d *= h
        d *= 1.0 - h
        d += h
        d *= grad_output
        return d
