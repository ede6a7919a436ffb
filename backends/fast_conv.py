"""NumPy fast paths for im2col / col2im (nnx/layers/_im2col.py is the reference).

Same layout as the reference, cols (N, C·kh·kw, OH·OW), same numbers, fewer passes:

- ``im2col``: one strided view of the padded input (sliding_window_view, then a step of
  (sh, sw)), copied once into the column layout;
- ``col2im``: strided accumulation, one ``+=`` of a (N, C, OH, OW) slice per kernel offset
  (kh·kw adds) into a zero image.

Each returns None for other libraries; the caller then runs the Array API reference.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def im2col(x, kernel, stride, padding, out_hw):
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
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
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
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += g[:, :, i, j]
    return out[:, :, ph:ph + h, pw:pw + w] if ph or pw else out
