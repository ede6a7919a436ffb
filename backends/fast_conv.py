"""NumPy fast paths for im2col / col2im (nnx/layers/_im2col.py is the reference).

Same layout as the reference, cols (N, C·kh·kw, OH·OW), same numbers, fewer passes:

- ``im2col``: one strided view of the padded input (sliding_window_view, then a step of
  (sh, sw)), copied once into the column layout;
- ``col2im``: strided accumulation, one ``+=`` of a (N, C, OH, OW) slice per kernel offset
  (kh·kw adds) into a zero image; one strided assignment where windows do not overlap;
- ``max_pool`` / ``max_pool_backward``: elementwise maxima over the kh·kw strided views of
  the input, one boolean mask per kernel offset for the first maximum, and the gradient put
  back through those masks;
- ``conv2d_input_grad``: Conv2D's dx with the batch laid out last (long rows for the adds).

Each returns None for other libraries; the caller then runs the Array API reference.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view


def im2col(x, kernel, stride, padding, out_hw, scratch=None):
    """``scratch`` (backends.gather.Scratch): copy into its reused array "cols" (the
    caller's next call overwrites it) instead of a fresh one."""
    if type(x) is not np.ndarray or x.ndim != 4:
        return None
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    n, c = x.shape[:2]
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    if kh == 1 and kw == 1:
        view = x[:, :, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw]
        return np.ascontiguousarray(view).reshape(n, c, oh * ow)
    view = sliding_window_view(x, (kh, kw), axis=(2, 3))   # (N, C, H', W', kh, kw)
    view = view[:, :, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw]
    shape = (n, c, kh, kw, oh, ow)
    cols = np.empty(shape, dtype=x.dtype) if scratch is None else \
        scratch.empty("cols", shape, x)
    np.copyto(cols, view.transpose(0, 1, 4, 5, 2, 3))
    return cols.reshape(n, c * kh * kw, oh * ow)


def col2im(cols, x_shape, kernel, stride, padding, out_hw):
    if type(cols) is not np.ndarray or cols.ndim != 3:
        return None
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    n, c, h, w = x_shape
    g = cols.reshape(n, c, kh, kw, oh, ow)
    if kh == 1 and kw == 1 and (sh, sw, ph, pw) == (1, 1, 0, 0):
        return g.reshape(n, c, h, w)
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    if sh >= kh and sw >= kw:                                # windows apart: no sums
        _windows_of(out, kernel, stride, out_hw)[...] = g.transpose(0, 1, 4, 5, 2, 3)
        return out[:, :, ph:ph + h, pw:pw + w] if ph or pw else out
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += g[:, :, i, j]
    return out[:, :, ph:ph + h, pw:pw + w] if ph or pw else out


def conv2d_input_grad(g, w, x_shape, kernel, stride, padding, out_hw, scratch=None):
    """dx of Conv2D (= col2im(W₂ᵀ·g_n)) for NumPy arrays, computed with the batch laid out
    last: g as (c_out, OH·OW·N), one matmul W₂ᵀ·g for the whole batch, then kh·kw strided
    adds whose rows are OW·N long (in (N, C, H, W) they are OW long, and the adds of a
    small late layer crawl).  Returns a C-contiguous (N, C, H, W) array; None off NumPy."""
    if type(g) is not np.ndarray or type(w) is not np.ndarray or g.ndim != 4:
        return None
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    n, c, h, wd = x_shape
    c_out = g.shape[1]
    gt = np.ascontiguousarray(g.transpose(1, 2, 3, 0)).reshape(c_out, oh * ow * n)
    w2t = w.reshape(c_out, c * kh * kw).T
    dcols = w2t @ gt if scratch is None else np.matmul(      # a temporary: reusable
        w2t, gt, out=scratch.empty("dcols", (c * kh * kw, oh * ow * n), gt))
    dcols = dcols.reshape(c, kh, kw, oh, ow, n)
    out = np.zeros((c, h + 2 * ph, wd + 2 * pw, n), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += dcols[:, i, j]
    if ph or pw:
        out = out[:, ph:ph + h, pw:pw + wd]
    return np.ascontiguousarray(out.transpose(3, 0, 1, 2))


def _windows_of(a, kernel, stride, out_hw):
    """The (N, C, OH, OW, kh, kw) windows of a 4-D array, as a writeable strided view."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    n, c, _, _ = a.shape
    s0, s1, s2, s3 = a.strides
    return as_strided(a, (n, c, oh, ow, kh, kw), (s0, s1, s2 * sh, s3 * sw, s2, s3))


def _offsets(a, kernel, stride, out_hw):
    """For each kernel offset (i, j), row-major: the strided (N, C, OH, OW) view
    a[:, :, i::sh, j::sw] (the window entries at that offset), no copies."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    return [a[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]


def max_pool(x, kernel, stride, out_hw):
    """(y, masks) of an unpadded max-pool: y by kh·kw elementwise maxima over strided views
    (no window copy, no argmax over a short axis), and for each kernel offset a boolean
    (N, C, OH, OW) mask of the windows whose first maximum sits there (what bprop needs);
    None off NumPy."""
    if type(x) is not np.ndarray or x.ndim != 4:
        return None
    views = _offsets(x, kernel, stride, out_hw)
    y = views[0].copy()
    for v in views[1:]:
        np.maximum(y, v, out=y)
    taken = np.zeros(y.shape, dtype=bool)
    masks = []
    for v in views[:-1]:
        m = np.equal(v, y)
        m &= ~taken                                   # an earlier offset holds the max
        taken |= m
        masks.append(m)
    masks.append(~taken)
    return y, masks


def max_pool_backward(g, masks, x_shape, kernel, stride, out_hw):
    """dx of ``max_pool``: each gradient entry goes to the input its window's max came from."""
    dx = np.zeros(x_shape, dtype=g.dtype)
    overlap = stride[0] < kernel[0] or stride[1] < kernel[1]
    for view, m in zip(_offsets(dx, kernel, stride, out_hw), masks):
        if overlap:
            view += g * m
        else:
            np.multiply(g, m, out=view)
    return dx
