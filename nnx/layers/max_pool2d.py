import math

from nnx.backends import fast_conv, fused

from .. import _checks
from ..device import namespace
from ..errors import ArgumentError
from ..module import Module
from ._im2col import (arange, col2im_batch_last, im2col, im2col_batch_last, output_size, pair,
                      scratch_of)


class _Pool2D(Module):
    """What MaxPool2D and AvgPool2D share: arguments, shape checks and the window layout."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        name = f"{type(self).__name__}({kernel_size!r})"
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name, minimum=0)
        for p, k in zip(self.padding, self.kernel_size):
            if 2 * p > k:
                raise ArgumentError(f"{name}: padding must be at most half the kernel size "
                                    f"{self.kernel_size}, got {self.padding}; a window would "
                                    f"cover only padding")
        self.ceil_mode = _checks.instance(name, "ceil_mode", ceil_mode, bool, "True or False")

    def config(self):
        return {"_kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding, "ceil_mode": self.ceil_mode}

    def _check(self, x):
        """(OH, OW) after checking the shape of ``x``."""
        self.x_shape = tuple(x.shape)
        self.out_hw = output_size(self, self.x_shape, self.kernel_size, self.stride,
                                  self.padding, ceil_mode=self.ceil_mode)
        self.check_array(x)
        return self.out_hw

    def _plain(self):
        """No padding and no partial window: NumPy's strided fast paths apply."""
        return self.padding == (0, 0) and self.out_hw == output_size(
            self, self.x_shape, self.kernel_size, self.stride, (0, 0))

    def _windows(self, x, pad_value):
        """cols (N, C, kh·kw, OH·OW) of ``x`` (checked by ``_check`` first)."""
        xp = namespace(x)
        cols = im2col(x, self.kernel_size, self.stride, self.padding, self.out_hw, pad_value)
        k = self.kernel_size[0] * self.kernel_size[1]
        shape = self.x_shape
        return xp, xp.reshape(cols, (shape[0], shape[1], k, self.out_hw[0] * self.out_hw[1]))


class MaxPool2D(_Pool2D):
    """The maximum of each (kh, kw) window of NCHW images, moved by ``stride`` (default: the
    kernel size, windows side by side).

    ::

        fprop:  y[n, c, p, q] = max_{i,j} x[n, c, p·sh + i − ph, q·sw + j − pw]
        bprop:  the gradient goes to the maximum of each window (the first one on ties):
                dx = col2im(g · [k = argmax_k cols])

    ``padding`` (at most half the kernel) pads with −inf: a padded place is never the
    maximum.  ``ceil_mode=True`` adds a last, partial window where the stride leaves input
    over (as torch's MaxPool2d(ceil_mode=True)).

    Portable path: one gather of the windows, the batch laid out last (C·OH·OW, kh·kw, N),
    their maximum and its position, a mask; bprop a select and one gather.  On torch's CPU
    the maximum and a float mask of its first place take five simple passes
    (backends.fused.max_first_mask; torch's max with positions is 4 times slower there), on
    CUDA one reduction; the select is a product with the mask.
    """

    def fprop(self, x):
        self._check(x)
        fast = fast_conv.max_pool(x, self.kernel_size, self.stride, self.out_hw) \
            if self._plain() else None
        if fast is not None:                          # NumPy: the same, windows laid out last
            y, self.first_max = fast
            self.mask = None
            self.out_shape = tuple(y.shape)
            return y
        xp = namespace(x)
        (n, c), k = self.x_shape[:2], self.kernel_size[0] * self.kernel_size[1]
        l = self.out_hw[0] * self.out_hw[1]
        cols = xp.reshape(im2col_batch_last(x, self.kernel_size, self.stride, self.padding,
                                            self.out_hw, -math.inf, windows_last=True,
                                            scratch=scratch_of(self)),
                          (c * l, k, n))                        # (C·OH·OW, kh·kw, N)
        fast = fused.max_first_mask(cols, 1, scratch_of(self))  # torch CPU: a float mask
        if fast is not None:
            top, self.mask = fast
        else:
            both = fused.max_argmax(cols, 1)        # torch CUDA: one reduction for the two
            top, where = both if both is not None else (
                xp.max(cols, axis=1, keepdims=True), xp.argmax(cols, axis=1, keepdims=True))
            self.mask = xp.reshape(arange(xp, x, k), (k, 1)) == where   # (C·L, kh·kw, N)
        y = xp.permute_dims(xp.reshape(top, (c,) + self.out_hw + (n,)), (3, 0, 1, 2))
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        if self.mask is None:
            return fast_conv.max_pool_backward(grad_output, self.first_max, self.x_shape,
                                               self.kernel_size, self.stride, self.out_hw)
        n, c = self.x_shape[:2]
        l, k = self.out_hw[0] * self.out_hw[1], self.kernel_size[0] * self.kernel_size[1]
        g = xp.reshape(xp.permute_dims(grad_output, (1, 2, 3, 0)), (c * l, 1, n))
        dcols = fused.select(self.mask, g)                              # (C·L, kh·kw, N)
        if dcols is None:
            dcols = xp.where(self.mask, g, 0.0)
        return col2im_batch_last(xp.reshape(dcols, (c * l * k, n)), self.x_shape,
                                 self.kernel_size, self.stride, self.padding, self.out_hw,
                                 windows_last=True, scratch=scratch_of(self))
