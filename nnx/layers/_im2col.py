"""im2col / col2im, written once against the Array API (the reference for every backend).

A convolution or pooling window of size (kh, kw), moved with stride (sh, sw) over an input
(N, C, H, W) zero-padded by (ph, pw), visits OH × OW places:

    OH = (H + 2·ph − kh) // sh + 1,   OW = (W + 2·pw − kw) // sw + 1

``im2col`` lays the windows out as columns, cols[n, (c, i, j), (p, q)] =
x_pad[n, c, p·sh + i, q·sw + j], shape (N, C·kh·kw, OH·OW), so a convolution is one batched
matmul.  ``col2im`` is its adjoint: every column entry is added back to the input pixel it
was read from (the gradient of im2col).  On NumPy arrays both hand over to the strided
fast path in ``nnx.backends.fast_conv`` (same layout, same numbers).
"""

from nnx.backends import fast_conv

from .. import _checks
from ..device import namespace
from ..errors import ShapeError


def pair(value, what, owner, minimum=1):
    """(a, b) from an int or a pair of ints, each >= ``minimum`` (bools and floats refused:
    ArgumentTypeError; out of range: ArgumentError)."""
    both = _checks.pair(owner, what, value, "an int or a pair of ints") \
        if isinstance(value, (tuple, list)) else (value, value)
    return tuple(_checks.integer(owner, what, v, minimum, f"be >= {minimum}",
                                 type_what="be an int or a pair of ints") for v in both)


def output_size(module, shape, kernel, stride, padding, channels=None):
    """(OH, OW) for a 4-D input ``shape``, after checking it (one clear ShapeError)."""
    if len(shape) != 4:
        raise ShapeError(f"{module!r}.fprop: input has shape {shape}, expected 4-D "
                         f"(batch, channels, height, width); reshape MNIST rows with "
                         f"nnx.Reshape((1, 28, 28))")
    if channels is not None and shape[1] != channels:
        raise ShapeError(f"{module!r}.fprop: input has shape {shape} with {shape[1]} "
                         f"channels, expected {channels} (batch, {channels}, height, width)")
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh = (shape[2] + 2 * ph - kh) // sh + 1
    ow = (shape[3] + 2 * pw - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise ShapeError(f"{module!r}.fprop: input of shape {shape} (padded by {ph, pw}) is "
                         f"smaller than the kernel {kh, kw}; give a larger input, more "
                         f"padding or a smaller kernel")
    return oh, ow


def im2col(x, kernel, stride, padding, out_hw):
    """cols (N, C·kh·kw, OH·OW) from x (N, C, H, W)."""
    fast = fast_conv.im2col(x, kernel, stride, padding, out_hw)
    if fast is not None:
        return fast
    return im2col_reference(x, kernel, stride, padding, out_hw)


def col2im(cols, x_shape, kernel, stride, padding, out_hw):
    """The adjoint of im2col: dx (N, C, H, W) from dcols (N, C·kh·kw, OH·OW)."""
    fast = fast_conv.col2im(cols, x_shape, kernel, stride, padding, out_hw)
    if fast is not None:
        return fast
    return col2im_reference(cols, x_shape, kernel, stride, padding, out_hw)


def _zeros(xp, like, shape):
    return xp.zeros(shape, dtype=like.dtype, device=like.device)


def _pad(xp, x, axis, before, after):
    """x with ``before`` / ``after`` zeros along ``axis`` (concat: no in-place writes,
    which some libraries' arrays do not allow)."""
    if before == 0 and after == 0:
        return x
    parts = []
    for n in (before, None, after):
        if n is None:
            parts.append(x)
        elif n > 0:
            shape = list(x.shape)
            shape[axis] = n
            parts.append(_zeros(xp, x, tuple(shape)))
    return xp.concat(parts, axis=axis)


def im2col_reference(x, kernel, stride, padding, out_hw):
    xp = namespace(x)
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    n, c = x.shape[0], x.shape[1]
    x = _pad(xp, _pad(xp, x, 2, ph, ph), 3, pw, pw)
    windows = [x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
               for i in range(kh) for j in range(kw)]
    cols = xp.stack(windows, axis=2)                       # (N, C, kh·kw, OH, OW)
    return xp.reshape(cols, (n, c * kh * kw, oh * ow))


def _spread(xp, g, axis, step):
    """Insert step−1 zeros between neighbours along ``axis`` (length n → (n−1)·step + 1)."""
    if step == 1:
        return g
    stacked = xp.stack([g] + [xp.zeros_like(g)] * (step - 1), axis=axis + 1)
    shape = list(g.shape)
    shape[axis] *= step
    spread = xp.reshape(stacked, tuple(shape))
    index = [slice(None)] * g.ndim
    index[axis] = slice(0, (g.shape[axis] - 1) * step + 1)
    return spread[tuple(index)]


def col2im_reference(cols, x_shape, kernel, stride, padding, out_hw):
    xp = namespace(cols)
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    n, c, h, w = x_shape
    hp, wp = h + 2 * ph, w + 2 * pw
    g = xp.reshape(cols, (n, c, kh * kw, oh, ow))
    total = None
    for i in range(kh):
        for j in range(kw):
            part = _spread(xp, _spread(xp, g[:, :, i * kw + j, :, :], 2, sh), 3, sw)
            part = _pad(xp, part, 2, i, hp - i - part.shape[2])
            part = _pad(xp, part, 3, j, wp - j - part.shape[3])
            total = part if total is None else total + part
    return total[:, :, ph:ph + h, pw:pw + w]
