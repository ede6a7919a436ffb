import math

from nnx import backends
from nnx.backends import fast_conv

from .. import _checks
from ..module import Module
from ._im2col import col2im, col2im_tables, fill, im2col, output_size, pair


class Conv2D(Module):
    """2-D convolution (cross-correlation, as in PyTorch) of NCHW images, as one batched matmul.

    ::

        fprop:  cols = im2col(x): (N, C·kh·kw, OH·OW);   y_n = W₂·cols_n + b
                W₂ = W as (c_out, C·kh·kw);  OH = (H + 2·ph − kh) // sh + 1 (OW alike)
        bprop:  dW₂ = Σ_n g_n·cols_nᵀ,  db = Σ_{n,p,q} g,  dx = col2im(W₂ᵀ·g_n)     g as (N, c_out, OH·OW)

    im2col and col2im are gathers at cached indices (a few array operations per call,
    whatever the kernel size); col2im's zero for pixels fed by fewer than K' windows comes
    from a zero row appended to W₂ᵀ, so W₂ᵀ·g_n already holds it.

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
        self._init_params(dtype, device,
                          W=backends.host.normal((self.c_out, self.c_in, kh, kw), std, "float64"),
                          b=backends.host.full((self.c_out,), 0.0, "float64"))

    def config(self):
        return {"_c_in": self.c_in, "_c_out": self.c_out, "_kernel_size": self.kernel_size,
                "stride": self.stride, "padding": self.padding}

    def fprop(self, x):
        shape = tuple(x.shape)
        self.out_hw = output_size(self, shape, self.kernel_size, self.stride, self.padding,
                                  self.c_in)
        xp = self._check_array(x)
        self.x_shape = shape
        self.cols = im2col(x, self.kernel_size, self.stride, self.padding, self.out_hw)
        y = xp.reshape(self.W, (self.c_out, -1)) @ self.cols            # (N, c_out, OH·OW)
        y += xp.reshape(self.b, (self.c_out, 1))
        y = xp.reshape(y, (shape[0], self.c_out) + self.out_hw)
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        g = xp.reshape(grad_output, (self.x_shape[0], self.c_out, self.out_hw[0] * self.out_hw[1]))
        self.db = xp.sum(g, axis=(0, 2))
        self.dW = xp.reshape(xp.sum(g @ xp.matrix_transpose(self.cols), axis=0), self.W.shape)
        if not need_input_grad:
            return None
        fast = fast_conv.conv2d_input_grad(grad_output, self.W, self.x_shape, self.kernel_size,
                                           self.stride, self.padding, self.out_hw)
        if fast is not None:                    # NumPy: the same sum, batch laid out last
            return fast
        w2t = xp.matrix_transpose(xp.reshape(self.W, (self.c_out, -1)))     # (C·kh·kw, c_out)
        _, _, needs_zero = col2im_tables(self.x_shape, self.kernel_size, self.stride,
                                         self.padding, self.out_hw, g)
        if needs_zero:                          # a zero row: dcols' last row is zero
            w2t = xp.concat([w2t, xp.reshape(fill(g, self.c_out, 0.0), (1, self.c_out))],
                            axis=0)
        return col2im(w2t @ g, self.x_shape, self.kernel_size, self.stride, self.padding,
                      self.out_hw, zero_row=needs_zero)
