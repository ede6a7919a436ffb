import math
import operator

from ..device import namespace
from ..errors import ArgumentError, ShapeError
from ..module import Module


class Reshape(Module):
    """Reshape each example: (N, ...) → ``(N, *shape)``, row-major;  dx = g reshaped back.

    ``nnx.Reshape((1, 28, 28))`` turns MNIST's (N, 784) rows into (N, 1, 28, 28) images.
    """

    def __init__(self, shape):
        try:
            if any(isinstance(n, bool) or type(n).__name__ == "bool_" for n in shape):
                raise TypeError
            self.shape = tuple(operator.index(n) for n in shape)
        except TypeError:
            self.shape = ()
        if not self.shape or min(self.shape) < 1:
            raise ArgumentError(f"Reshape({shape!r}): shape is a tuple of positive ints, "
                             f"e.g. (1, 28, 28)")

    def config(self):
        return {"_shape": self.shape}

    def fprop(self, x):
        self.x_shape = tuple(x.shape)
        if len(self.x_shape) == 1 and self.x_shape[0] == math.prod(self.shape):
            raise ShapeError(f"{self!r}.fprop: input has shape {self.x_shape}, one example "
                             f"without a batch axis; add one: x[None, :] or "
                             f"xp.reshape(x, (1, {self.x_shape[0]})), shape (1, "
                             f"{self.x_shape[0]})")
        if len(self.x_shape) < 1 or math.prod(self.x_shape[1:]) != math.prod(self.shape):
            raise ShapeError(f"{self!r}.fprop: input has shape {self.x_shape}, whose "
                             f"{math.prod(self.x_shape[1:])} values per example do not fill "
                             f"{self.shape} ({math.prod(self.shape)} values)")
        self.check_array(x)
        y = namespace(x).reshape(x, (self.x_shape[0],) + self.shape)
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        return xp.reshape(grad_output, self.x_shape)
