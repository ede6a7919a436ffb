from ..device import namespace
from ..errors import ShapeError
from ..module import Module


class MeanOverTime(Module):
    """The mean over the steps of sequences: (N, T, F) → (N, F), for classifying them.

    y[n] = (1/T)·Σ_t x[n, t];   dx[n, t] = g[n]/T   (every step gets the same share)
    """

    def fprop(self, x):
        shape = tuple(x.shape)
        if len(shape) != 3 or shape[1] == 0:
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, expected (batch, "
                             f"steps, features) with at least one step")
        self.check_array(x)
        self.x_shape = shape
        y = namespace(x).mean(x, axis=1)
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        g = xp.reshape(grad_output * (1.0 / self.x_shape[1]),
                       (self.x_shape[0], 1, self.x_shape[2]))
        return xp.broadcast_to(g, self.x_shape)
