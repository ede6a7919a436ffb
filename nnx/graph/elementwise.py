"""Elementwise building blocks without parameters: y = f(x), dx = g·f'(x)."""

from .. import _checks
from ..device import namespace
from ..module import Module


class _Elementwise(Module):
    def _done(self, y):
        self.out_shape = tuple(y.shape)
        return y


class Square(_Elementwise):
    """y = x²;   dx = g·2x"""

    def fprop(self, x):
        self.check_array(x)
        self.x = x
        return self._done(x * x)

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        d = self.x * 2.0
        d *= grad_output
        return d


class Exp(_Elementwise):
    """y = eˣ;   dx = g·y"""

    def fprop(self, x):
        self.check_array(x)
        self.y = namespace(x).exp(x)
        return self._done(self.y)

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return grad_output * self.y


class Log(_Elementwise):
    """y = ln x (x > 0);   dx = g / x"""

    def fprop(self, x):
        self.check_array(x)
        self.x = x
        return self._done(namespace(x).log(x))

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return grad_output / self.x


class Sin(_Elementwise):
    """y = sin x;   dx = g·cos x"""

    def fprop(self, x):
        self.check_array(x)
        self.x = x
        return self._done(namespace(x).sin(x))

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        d = xp.cos(self.x)
        d *= grad_output
        return d


class Cos(_Elementwise):
    """y = cos x;   dx = -g·sin x"""

    def fprop(self, x):
        self.check_array(x)
        self.x = x
        return self._done(namespace(x).cos(x))

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        d = xp.sin(self.x)
        d *= grad_output
        d *= -1.0
        return d


class Scale(_Elementwise):
    """y = c·x for a constant c;   dx = c·g"""

    def __init__(self, c):
        self.c = _checks.finite_number("Scale", "c", c)

    def config(self):
        return {"_c": self.c}

    def fprop(self, x):
        self.check_array(x)
        return self._done(x * self.c)

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return grad_output * self.c
