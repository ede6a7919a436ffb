import math

from ..device import namespace
from ..errors import ShapeError
from ..module import Module


class Flatten(Module):
    """(N, d1, d2, ...) → (N, d1·d2·...), row-major;  dx = g reshaped back."""

    def fprop(self, x):
        self.x_shape = tuple(x.shape)
        if len(self.x_shape) < 2:
            raise ShapeError(f"{self!r}.fprop: input has shape {self.x_shape}, expected "
                             f"(batch, ...) with at least 2 dimensions")
        self.check_array(x)
        y = namespace(x).reshape(x, (self.x_shape[0], math.prod(self.x_shape[1:])))
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        return xp.reshape(grad_output, self.x_shape)
