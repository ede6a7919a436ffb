"""NumPy fast paths for im2col / col2im (nnx/layers/_im2col.py is the reference).

Same layout as the reference, cols (N, C·kh·kw, OH·OW), same numbers, fewer passes:

- ``im2col``: one strided view of the padded input (sliding_window_view, then a step of
  (sh, sw)), copied once into the column layout;
- ``col2im``: strided accumulation, one ``+=`` of a (N, C, OH, OW) slice per kernel offset
  (kh·kw adds) into a zero image; one strided assignment where windows do not overlap;
- ``max_pool`` / ``max_pool_backward``: elementwise maxima over the kh·kw strided views of
  the input, one boolean mask per kernel offset for the first maximum, and the gradient put
  back through those masks;
- ``im2col_batch_last`` / ``col2im_batch_last`` / ``conv2d_input_grad``: Conv2D's columns
  and dx with the batch laid out last, (C·kh·kw, OH·OW·N), the layout of the portable
  path's batch-last forms: one matmul for the whole batch, and rows OW·N long for the
  copies and adds.  Conv2D's output is then a (N, C, H, W) view of a (C, H, W, N) array,
  and BatchNorm, MaxPool2D and ReLU keep that layout.

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


def batch_last(x, padding=(0, 0), scratch=None, name="x"):
    """x (N, C, H, W) as a C-contiguous (C, H + 2·ph, W + 2·pw, N) array, zero at the
    borders: x's own memory where it is already laid out so and unpadded (the view
    ``Conv2D`` hands out on NumPy), else a copy (into ``scratch``'s reused array ``name``
    where one is given: the caller's next call overwrites it)."""
    (ph, pw), (n, c, h, w) = padding, x.shape
    t = x.transpose(1, 2, 3, 0)
    if not (ph or pw) and t.flags.c_contiguous:
        return t
    shape = (c, h + 2 * ph, w + 2 * pw, n)
    out = np.empty(shape, dtype=x.dtype) if scratch is None else scratch.empty(name, shape, x)
    if ph:
        out[:, :ph] = 0
        out[:, h + ph:] = 0
    if pw:
        out[:, :, :pw] = 0
        out[:, :, w + pw:] = 0
    _copy_transposed(out[:, ph:ph + h, pw:pw + w], t)
    return out


def _copy_transposed(out, t, step=32):
    """out[...] = t for a batch-last destination and a batch-first source, ``step``
    examples at a time where their rows fit in the cache together (256 KiB): one strided
    copy of the whole batch reads the examples C·H·W apart, and at power-of-two sizes
    those reads collide in the cache (4 times slower at (1000, 16, 8, 8))."""
    n = t.shape[-1]
    if n <= 2 * step or t.strides[-1] == t.itemsize or t.strides[-1] * step > 256 << 10:
        np.copyto(out, t)
        return
    for i in range(0, n, step):
        out[..., i:i + step] = t[..., i:i + step]


_WINDOW_VALUES = 32768       # from here Conv2D's columns go window by window (see Windows)


def im2col_batch_last(x, kernel, stride, padding, out_hw, scratch=None):
    """Conv2D's columns with the batch laid out last, (C·kh·kw, OH·OW·N): row (c, i, j),
    column (p, q, n) holds x_pad[n, c, p·sh + i, q·sw + j] (the layout of
    ``nnx.layers._im2col.im2col_batch_last``, its reference), from x laid out batch-last
    (x's memory when Conv2D made it, else one copy first, into ``scratch``'s reused "x").

    Where a window's block, C·kh·kw·N values, is large (≥ ``_WINDOW_VALUES``), the columns
    are left unmade: a ``Windows`` that ``matmul_add`` and ``matmul_transposed`` read one
    window at a time (writing out and reading back 50 MB of columns at batch 1000 costs
    twice the product).  Else one strided copy, every run OW·N values long where sw = 1
    (into ``scratch``'s reused "cols": the caller's next call overwrites it).  None off
    NumPy."""
    if type(x) is not np.ndarray or x.ndim != 4:
        return None
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    n, c = x.shape[:2]
    xt = batch_last(x, padding, scratch, "x")                   # (C, H', W', N)
    if c * kh * kw * n >= _WINDOW_VALUES:
        shape = (c, kh, kw, n)
        return Windows(xt, kernel, stride, out_hw, np.empty(shape, dtype=x.dtype)
                       if scratch is None else scratch.empty("window", shape, x))
    s0, s1, s2, s3 = xt.strides
    view = as_strided(xt, (c, kh, kw, oh, ow, n), (s0, s1, s2, s1 * sh, s2 * sw, s3),
                      writeable=False)
    shape = (c, kh, kw, oh, ow, n)
    cols = np.empty(shape, dtype=x.dtype) if scratch is None else \
        scratch.empty("cols", shape, x)
    np.copyto(cols, view)
    return cols.reshape(c * kh * kw, oh * ow * n)


class Windows:
    """Conv2D's (C·kh·kw, OH·OW·N) columns, not made: the batch-last input and the
    geometry.  ``blocks()`` yields, window position by position (l = p·OW + q), the
    columns l·N … l·N + N − 1 as a (C·kh·kw, N) array copied into one reused buffer
    (valid until the next one), so a product reads each block from the cache."""

    ndim = 2

    def __init__(self, xt, kernel, stride, out_hw, buffer):
        self.xt, self.kernel, self.stride, self.out_hw, self.buffer = \
            xt, kernel, stride, out_hw, buffer
        c, kh, kw, n = buffer.shape
        self.n, self.dtype, self.itemsize = n, xt.dtype, xt.itemsize
        self.shape = (c * kh * kw, out_hw[0] * out_hw[1] * n)

    def blocks(self):
        (kh, kw), (sh, sw), (oh, ow) = self.kernel, self.stride, self.out_hw
        flat = self.buffer.reshape(self.shape[0], self.n)
        for p in range(oh):
            for q in range(ow):
                np.copyto(self.buffer, self.xt[:, p * sh:p * sh + kh, q * sw:q * sw + kw])
                yield p * ow + q, flat


_BLOCK_BYTES = 256 << 10


def _column_blocks(k, m, itemsize):
    """Slices of the m columns of a (k, m) operand, ~256 KiB each where k ≤ 64 (OpenBLAS's
    sgemm on such a short and very wide operand runs at about half the speed of the same
    product in cache-sized blocks: conv1's (8, 25)·(25, 576·N)); one slice otherwise."""
    step = max(1024, _BLOCK_BYTES // (k * itemsize)) if k <= 64 else m
    return [slice(i, i + step) for i in range(0, m, max(step, 1))] or [slice(0, 0)]


def matmul_add(a, b, c):
    """a @ b + c for 2-D NumPy a (r, k), b (k, m) (or ``Windows``: block by block) and
    c (r, 1), by column blocks of b (``_column_blocks``), each block's sum added while it
    is in the cache; None elsewhere."""
    if type(a) is not np.ndarray or type(c) is not np.ndarray or a.ndim != 2 \
            or type(b) not in (np.ndarray, Windows) or b.ndim != 2 or a.dtype != b.dtype:
        return None
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a.dtype, b.dtype, c))
    if type(b) is Windows:
        n = b.n
        for l, block in b.blocks():
            part = np.matmul(a, block, out=out[:, l * n:(l + 1) * n])
            part += c
        return out
    for s in _column_blocks(b.shape[0], b.shape[1], b.itemsize):
        block = np.matmul(a, b[:, s], out=out[:, s])
        block += c
    return out


def matmul_transposed(a, b):
    """a @ bᵀ for 2-D NumPy a (k, m) (or ``Windows``: block by block) and b (r, m)
    (Conv2D's dW₂ᵀ = cols·gᵀ), summed over column blocks of both (``_column_blocks`` of
    a); None elsewhere."""
    if type(a) not in (np.ndarray, Windows) or type(b) is not np.ndarray or a.ndim != 2 \
            or b.ndim != 2 or a.dtype != b.dtype:
        return None
    if type(a) is Windows:
        n = a.n
        out = np.zeros((a.shape[0], b.shape[0]), dtype=a.dtype)
        for l, block in a.blocks():
            out += block @ b[:, l * n:(l + 1) * n].T
        return out
    blocks = _column_blocks(a.shape[0], a.shape[1], a.itemsize)
    out = a[:, blocks[0]] @ b[:, blocks[0]].T
    for s in blocks[1:]:
        out += a[:, s] @ b[:, s].T
    return out


def col2im_batch_last(dcols, x_shape, kernel, stride, padding, out_hw):
    """The adjoint of ``im2col_batch_last``: dx (N, C, H, W) from dcols (C·kh·kw, OH·OW·N),
    by kh·kw strided adds of (C, OH, OW·N) slices into a zero (C, H', W', N) image (rows
    OW·N long; one assignment where windows do not overlap).  dx is a (N, C, H, W) view
    of that batch-last array."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    n, c, h, w = x_shape
    d = dcols.reshape(c, kh, kw, oh, ow, n)
    out = np.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            view = out[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            if sh >= kh and sw >= kw:                   # windows apart: no sums
                view[...] = d[:, i, j]
            else:
                view += d[:, i, j]
    return out[:, ph:ph + h, pw:pw + w].transpose(3, 0, 1, 2)


def conv2d_input_grad(g, w2t, x_shape, kernel, stride, padding, out_hw, scratch=None):
    """dx of Conv2D (= col2im(W₂ᵀ·g)) for NumPy arrays, the batch laid out last: g
    (c_out, OH·OW·N) and W₂ᵀ (C·kh·kw, c_out).  Where a window's columns for the whole
    batch, C·kh·kw·N values, are many (≥ 32768), one window at a time: its (C·kh·kw, N)
    block of W₂ᵀ·g, made in the cache (``scratch``'s reused array "dwindow"), added to its
    (C, kh, kw, N) place of a zero (C, H', W', N) image (half the time of the whole
    W₂ᵀ·g written out and read back by kh·kw adds at batch 1000); else one matmul for the
    whole batch (into "dcols") and ``col2im_batch_last``.  Returns dx as a (N, C, H, W)
    view of a (C, H, W, N) array; None off NumPy."""
    if type(g) is not np.ndarray or type(w2t) is not np.ndarray or g.ndim != 2:
        return None
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    n, c, h, w = x_shape
    k = w2t.shape[0]
    if k * n < _WINDOW_VALUES:
        shape = (k, g.shape[1])
        dcols = w2t @ g if scratch is None else np.matmul(
            w2t, g, out=scratch.empty("dcols", shape, g))
        return col2im_batch_last(dcols, x_shape, kernel, stride, padding, out_hw)
    out = np.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=g.dtype)
    per = g.reshape(g.shape[0], oh * ow, n)                 # (c_out, OH·OW, N)
    block = np.empty((k, n), dtype=g.dtype) if scratch is None else \
        scratch.empty("dwindow", (k, n), g)
    for p in range(oh):
        for q in range(ow):
            d = np.matmul(w2t, per[:, p * ow + q], out=block)
            out[:, p * sh:p * sh + kh, q * sw:q * sw + kw] += d.reshape(c, kh, kw, n)
    return out[:, ph:ph + h, pw:pw + w].transpose(3, 0, 1, 2)


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
    """(y, state) of an unpadded max-pool: y by kh·kw elementwise maxima over strided views
    (no window copy, no argmax over a short axis), laid out as x (batch-last stays
    batch-last); ``state`` is what ``max_pool_backward`` needs: for each kernel offset a
    boolean (N, C, OH, OW) mask of the windows whose first maximum sits there, and x's
    layout.  None off NumPy."""
    if type(x) is not np.ndarray or x.ndim != 4:
        return None
    views = _offsets(x, kernel, stride, out_hw)
    y = views[0].copy(order="K")
    for v in views[1:]:
        np.maximum(y, v, out=y)
    taken = np.zeros_like(y, dtype=bool)
    masks = []
    for v in views[:-1]:
        m = np.equal(v, y)
        m &= ~taken                                   # an earlier offset holds the max
        taken |= m
        masks.append(m)
    masks.append(~taken)
    return y, (masks, x.transpose(1, 2, 3, 0).flags.c_contiguous)


def max_pool_backward(g, state, x_shape, kernel, stride, out_hw):
    """dx of ``max_pool``: each gradient entry goes to the input its window's max came from;
    dx is laid out as the pooled input was (a (N, C, H, W) view of (C, H, W, N) for a
    batch-last input)."""
    masks, last = state
    if last:
        n, c, h, w = x_shape
        if not g.transpose(1, 2, 3, 0).flags.c_contiguous:     # as the masks: long rows
            g = batch_last(g).transpose(3, 0, 1, 2)
        dx = np.zeros((c, h, w, n), dtype=g.dtype).transpose(3, 0, 1, 2)
    else:
        dx = np.zeros(x_shape, dtype=g.dtype)
    overlap = stride[0] < kernel[0] or stride[1] < kernel[1]
    for view, m in zip(_offsets(dx, kernel, stride, out_hw), masks):
        if overlap:
            view += g * m
        else:
            np.multiply(g, m, out=view)
    return dx
