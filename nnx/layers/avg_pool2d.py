from .max_pool2d import _Pool2D


class AvgPool2D(_Pool2D):
    """The mean of each (kh, kw) window of NCHW images, moved by ``stride`` (default: the
    kernel size).

    fprop:  y[n, c, p, q] = (1/(kh·kw)) Σ_{i,j} x[n, c, p·sh + i, q·sw + j]
    bprop:  dx = col2im(g / (kh·kw), spread over each window)
    """

    def fprop(self, x):
        xp, cols = self._windows(x)
        y = xp.reshape(xp.mean(cols, axis=2), self.x_shape[:2] + self.out_hw)
        self._out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        n, c = self.x_shape[:2]
        k = self.kernel_size[0] * self.kernel_size[1]
        g = xp.reshape(grad_output, (n, c, 1, self.out_hw[0] * self.out_hw[1])) / k
        return self._to_image(xp, xp.broadcast_to(g, (n, c, k, g.shape[3])))
