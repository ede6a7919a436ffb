"""The original Array API im2col / col2im (kh·kw slices, spreads and pads), kept as the
oracle the gather forms in nnx/layers/_im2col.py are proven against."""

from nnx.device import namespace

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
