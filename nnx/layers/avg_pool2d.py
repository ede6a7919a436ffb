from ._im2col import divisors, pool_grad_tables, fill, take
from .max_pool2d import _Pool2D


class AvgPool2D(_Pool2D):
    """The mean of each (kh, kw) window of NCHW images, moved by ``stride`` (default: the
    kernel size).

    ::

        fprop:  y[n, c, p, q] = (1/d_pq) Σ_{i,j} x[n, c, p·sh + i − ph, q·sw + j − pw]
        bprop:  dx[n, c, h, w] = Σ over the windows pq that cover (h, w) of g[n, c, p, q] / d_pq

    ``padding`` pads with zeros that count in the divisor (torch's default
    count_include_pad=True): d = kh·kw.  ``ceil_mode=True`` adds a last, partial window
    where the stride leaves input over; its divisor counts only its places inside the
    padded input (as torch does).
    """

    def fprop(self, x):
        self._check(x)
        xp, cols = self._windows(x, 0.0)
        inv, uniform = divisors(self.x_shape, self.kernel_size, self.stride, self.padding,
                                self.out_hw, x)
        self.inv = None if uniform else inv
        y = xp.mean(cols, axis=2) if uniform else xp.sum(cols, axis=2) * inv
        y = xp.reshape(y, self.x_shape[:2] + self.out_hw)
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        n, c, h, w = self.x_shape
        index, k, needs_zero = pool_grad_tables(self.x_shape, self.kernel_size, self.stride,
                                                self.padding, self.out_hw, grad_output)
        l = self.out_hw[0] * self.out_hw[1]
        g = xp.reshape(grad_output, (n, c, l))
        g = g * (1.0 / (self.kernel_size[0] * self.kernel_size[1])) if self.inv is None \
            else g * self.inv
        g = xp.reshape(g, (n, c * l))
        if needs_zero:
            g = xp.concat([g, fill(g, n, 0.0)], axis=1)
        picked = take(xp, g, index, 1)
        if k > 1:
            picked = xp.sum(xp.reshape(picked, (n, c * h * w, k)), axis=2)
        return xp.reshape(picked, self.x_shape)
