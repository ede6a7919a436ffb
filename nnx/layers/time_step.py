import operator

import array_api_compat

from ..errors import ArgumentTypeError, ShapeError
from ..module import Module


class TimeStep(Module):
    """One time step of a batch-first sequence: (N, T, ...) → (N, ...), y = x[:, index].

    bprop: dx is zero at every step but ``index``, where it is g.  ``TimeStep()`` (index −1,
    the last step) turns an RNN's outputs into one vector per sequence, for classification.
    """

    def __init__(self, index=-1):
        try:
            if isinstance(index, bool) or type(index).__name__ == "bool_":
                raise TypeError
            self.index = operator.index(index)
        except TypeError:
            raise ArgumentTypeError(f"TimeStep: index must be an integer (e.g. -1, the last "
                                    f"step), got {index!r}") from None

    def config(self):
        return {"index": self.index}

    def fprop(self, x):
        shape = tuple(x.shape)
        if len(shape) < 3:
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, expected (batch, time, "
                             f"features)")
        if shape[1] == 0:
            raise ShapeError(f"{self!r}.fprop: input of shape {shape} has no time steps")
        if not -shape[1] <= self.index < shape[1]:
            raise ShapeError(f"{self!r}.fprop: step {self.index} does not exist in sequences "
                             f"of {shape[1]} steps (input {shape}); use an index in "
                             f"[{-shape[1]}, {shape[1]})")
        xp = self.check_array(x)
        self.x_shape = shape
        self.at = self.index % shape[1]
        y = x[:, self.at, ...]
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        n, steps, rest = self.x_shape[0], self.x_shape[1], self.x_shape[2:]
        g = grad_output[:, None, ...]
        parts = [xp.zeros((n, k) + rest, dtype=g.dtype, device=array_api_compat.device(g))
                 for k in (self.at, steps - self.at - 1)]
        return xp.concat([p for p in (parts[0], g, parts[1]) if p.shape[1]], axis=1)

