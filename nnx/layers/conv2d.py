import math

from nnx import backends
from nnx.backends import fast_conv, fused

from .. import _checks
from ..module import Module
from ._im2col import (col2im_batch_last, col2im_tables, fill, im2col_batch_last,
                      output_size, pair, scratch_of)


class Conv2D(Module):
    """2-D convolution (cross-correlation, as in PyTorch) of NCHW images, as one matmul.

    ::

        fprop:  cols = im2col(x): (C·kh·kw, OH·OW·N), the batch last;   y = W₂·cols + b
                W₂ = W as (c_out, C·kh·kw);  OH = (H + 2·ph − kh) // sh + 1 (OW alike)
        bprop:  g as (c_out, OH·OW·N):  db = Σ g,  dW₂ = (cols·gᵀ)ᵀ,  dx = col2im(W₂ᵀ·g)

    im2col and col2im are gathers at cached indices (a few array operations per call,
    whatever the kernel size) of rows of N values; col2im's zero for pixels fed by fewer
    than K' windows comes from a zero row appended to W₂ᵀ, so W₂ᵀ·g already holds it.  The
    output is a (N, c_out, OH, OW) view of a (c_out, OH, OW, N) array, and a layer that
    hands such a view back (BatchNorm, MaxPool2D, ReLU keep the layout) costs no copy.  On
    NumPy (backends.fast_conv), in the same layout, im2col is one strided copy, or for
    large batches not made at all: the products read it window by window from the input
    (which the layer then keeps, as Linear keeps x); col2im is strided adds.

    W: (c_out, c_in, kh, kw), as torch's Conv2d weight; W ~ N(0, sqrt(2/(fan_in + fan_out)))
    with fan_in = c_in·kh·kw, fan_out = c_out·kh·kw, drawn on the host; b = 0.
    """

    param_names = ("W", "b")

    def __init__(self, c_in, c_out, kernel_size, *, stride=1, padding=0, dtype=None,
                 device=None):
        name = f"Conv2D({c_in!r}, {c_out!r}, {kernel_size!r})"
        self.c_in = _checks.positive_int(name, "c_in", c_in)
        self.c_out = _checks.positive_int(name, "c_out", c_out)
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name, minimum=0)
        kh, kw = self.kernel_size
        std = math.sqrt(2.0 / ((self.c_in + self.c_out) * kh * kw))
        self.init_params(dtype, device,
                          W=backends.host.normal((self.c_out, self.c_in, kh, kw), std, "float64"),
                          b=backends.host.full((self.c_out,), 0.0, "float64"))

    def config(self):
        return {"_c_in": self.c_in, "_c_out": self.c_out, "_kernel_size": self.kernel_size,
                "stride": self.stride, "padding": self.padding}

    def fprop(self, x):
        shape = tuple(x.shape)
        self.out_hw = output_size(self, shape, self.kernel_size, self.stride, self.padding,
                                  self.c_in)
        xp = self.check_array(x)
        self.x_shape = shape
        n, (oh, ow) = shape[0], self.out_hw
        w2 = xp.reshape(self.W, (self.c_out, -1))
        self.cols = fast_conv.im2col_batch_last(x, self.kernel_size, self.stride, self.padding,
                                                self.out_hw, scratch_of(self))  # NumPy: copies
        if self.cols is None:                   # a gather at a cached index
            self.cols = xp.reshape(im2col_batch_last(x, self.kernel_size, self.stride,
                                                     self.padding, self.out_hw,
                                                     scratch=scratch_of(self)),
                                   (w2.shape[1], oh * ow * n))          # (C·kh·kw, OH·OW·N)
        bias = xp.reshape(self.b, (self.c_out, 1))
        y = fused.matmul_add(w2, self.cols, bias)       # torch: b + W₂·cols in one kernel
        if y is None:
            y = fast_conv.matmul_add(w2, self.cols, bias)   # NumPy: by blocks of columns
        if y is None:
            y = w2 @ self.cols
            y += bias
        y = xp.permute_dims(xp.reshape(y, (self.c_out, oh, ow, n)), (3, 0, 1, 2))
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        n, (oh, ow) = self.x_shape[0], self.out_hw
        g = xp.reshape(xp.permute_dims(grad_output, (1, 2, 3, 0)),
                       (self.c_out, oh * ow * n))                       # (c_out, OH·OW·N)
        self.db = xp.sum(g, axis=1)
        dw = fast_conv.matmul_transposed(self.cols, g)  # NumPy: by blocks of columns
        if dw is None:                          # dW₂ᵀ (C·kh·kw, c_out): this order is twice
            dw = self.cols @ xp.matrix_transpose(g)     # as fast on torch's CPU as g·colsᵀ;
        # dW is a transposed view of it
        self.dW = xp.permute_dims(xp.reshape(dw, (self.c_in,) + self.kernel_size
                                             + (self.c_out,)), (3, 0, 1, 2))
        if not need_input_grad:
            return None
        w2t = xp.matrix_transpose(xp.reshape(self.W, (self.c_out, -1)))     # (C·kh·kw, c_out)
        dx = fast_conv.conv2d_input_grad(g, w2t, self.x_shape, self.kernel_size, self.stride,
                                         self.padding, self.out_hw, scratch_of(self))
        if dx is not None:                      # NumPy: kh·kw strided adds of rows
            return dx
        _, _, needs_zero = col2im_tables(self.x_shape, self.kernel_size, self.stride,
                                         self.padding, self.out_hw, g)
        if needs_zero:                          # a zero row: dcols' last OH·OW·N are zero
            w2t = xp.concat([w2t, xp.reshape(fill(g, self.c_out, 0.0), (1, self.c_out))],
                            axis=0)
        scratch = scratch_of(self)
        dcols = scratch.matmul("dcols", w2t, g)
        if dcols is None:
            dcols = w2t @ g
        return col2im_batch_last(xp.reshape(dcols, (w2t.shape[0] * oh * ow, n)), self.x_shape,
                                 self.kernel_size, self.stride, self.padding, self.out_hw,
                                 zero_row=needs_zero, scratch=scratch)
