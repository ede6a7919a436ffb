from nnx import backends
from nnx.backends import fast_conv

from ..device import namespace
from ..module import Module
from ._im2col import col2im, im2col, output_size, pair


class _Pool2D(Module):
    """What MaxPool2D and AvgPool2D share: arguments, shape checks and the window layout."""

    def __init__(self, kernel_size, stride=None):
        name = f"{type(self).__name__}({kernel_size!r})"
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", name)

    def config(self):
        return {"_kernel_size": self.kernel_size, "stride": self.stride}

    def _check(self, x):
        """(OH, OW) after checking the shape of ``x``."""
        self.x_shape = tuple(x.shape)
        self.out_hw = output_size(self, self.x_shape, self.kernel_size, self.stride, (0, 0))
        self._check_array(x)
        return self.out_hw

    def _windows(self, x):
        """cols (N, C, kh·kw, OH·OW) of ``x``, after checking its shape."""
        xp = namespace(x)
        self._check(x)
        shape = self.x_shape
        cols = im2col(x, self.kernel_size, self.stride, (0, 0), self.out_hw)
        k = self.kernel_size[0] * self.kernel_size[1]
        return xp, xp.reshape(cols, (shape[0], shape[1], k, self.out_hw[0] * self.out_hw[1]))

    def _to_image(self, xp, dcols):
        n, c = self.x_shape[:2]
        return col2im(xp.reshape(dcols, (n, c * dcols.shape[2], dcols.shape[3])), self.x_shape,
                      self.kernel_size, self.stride, (0, 0), self.out_hw)


class MaxPool2D(_Pool2D):
    """The maximum of each (kh, kw) window of NCHW images, moved by ``stride`` (default: the
    kernel size, windows side by side).

    fprop:  y[n, c, p, q] = max_{i,j} x[n, c, p·sh + i, q·sw + j]
    bprop:  the gradient goes to the maximum of each window (the first one on ties):
            dx = col2im(g · [k = argmax_k cols])
    """

    def fprop(self, x):
        fast = fast_conv.max_pool(x, self.kernel_size, self.stride, self._check(x))
        if fast is not None:                          # NumPy: the same, windows laid out last
            y, self.first_max = fast
            self.mask = None
            self._out_shape = tuple(y.shape)
            return y
        xp, cols = self._windows(x)
        where = xp.argmax(cols, axis=2, keepdims=True)                  # (N, C, 1, L)
        k = xp.arange(cols.shape[2], device=backends.device_of(x).native)
        self.mask = xp.astype(xp.reshape(k, (-1, 1)) == where, x.dtype)  # (N, C, kh·kw, L)
        y = xp.reshape(xp.max(cols, axis=2), self.x_shape[:2] + self.out_hw)
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        if self.mask is None:
            return fast_conv.max_pool_backward(grad_output, self.first_max, self.x_shape,
                                               self.kernel_size, self.stride, self.out_hw)
        g = xp.reshape(grad_output, self.x_shape[:2] + (1, self.out_hw[0] * self.out_hw[1]))
        return self._to_image(xp, self.mask * g)
