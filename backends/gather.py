"""Gather tables for the portable im2col / col2im / pooling path (nnx/layers/_im2col.py).

Every table is a host int64 array of flat positions into one example's values, built once
per shape with NumPy here and moved to the device by the caller (then cached there):

- ``im2col_index``: for cols[(c, i, j), (p, q)] the position in the example's flattened
  (C·H·W) input, or ``zero`` (= C·H·W: a pad value appended after the input) where the
  window hangs over the padding or past the border;
- ``col2im_index``: the adjoint, scatter-free: for every input pixel the ≤ K' column
  entries it was read into (K' = the most windows any pixel falls in), padded with
  ``zero`` (the position of a zero the caller provides), so that dx is one gather and one
  sum over the last axis;
- ``take``: x gathered along ``axis`` by a non-negative 1-D index, in one operation;
- ``Scratch``: one owner's reusable gather outputs on torch CPU tensors (see there).
"""

import numpy as np


def window_grid(c, h, w, kernel, stride, padding, out_hw):
    """(row, col) of every cols entry in the unpadded input, shape (C, kh, kw, OH, OW) each
    (outside [0, h) × [0, w) where the window covers padding or runs past the border)."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    i = np.arange(kh).reshape(kh, 1, 1, 1)
    j = np.arange(kw).reshape(1, kw, 1, 1)
    p = np.arange(oh).reshape(1, 1, oh, 1)
    q = np.arange(ow).reshape(1, 1, 1, ow)
    rows = np.broadcast_to(p * sh + i - ph, (c, kh, kw, oh, ow))
    cols = np.broadcast_to(q * sw + j - pw, (c, kh, kw, oh, ow))
    return rows, cols


def _windows_last(a):
    """(C, kh, kw, OH, OW) laid out as (C, OH, OW, kh, kw): each window's values side by side."""
    return a.transpose(0, 3, 4, 1, 2)


def im2col_index(c, h, w, kernel, stride, padding, out_hw, windows_last=False):
    """(index (C·kh·kw·OH·OW,), whether any entry reads the pad value at position C·H·W);
    in (C, kh·kw, OH·OW) order, or (C, OH·OW, kh·kw) with ``windows_last``."""
    rows, cols = window_grid(c, h, w, kernel, stride, padding, out_hw)
    chan = np.arange(c).reshape(c, 1, 1, 1, 1)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    index = np.where(inside, chan * (h * w) + rows * w + cols, c * h * w)
    if windows_last:
        index = _windows_last(index)
    return np.ascontiguousarray(index).reshape(-1).astype(np.int64), not bool(inside.all())


def col2im_index(c, h, w, kernel, stride, padding, out_hw, zero, windows_last=False):
    """(index (C·H·W, K'), whether some pixel needs the zero at ``zero``): row r lists the
    flat cols positions (in (C·kh·kw, OH·OW) order, or (C, OH·OW, kh·kw) with
    ``windows_last``) read from input pixel r of the example."""
    rows, cols = window_grid(c, h, w, kernel, stride, padding, out_hw)
    chan = np.arange(c).reshape(c, 1, 1, 1, 1)
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).reshape(-1)
    pixel = (chan * (h * w) + rows * w + cols).reshape(-1)[inside]
    source = np.arange(inside.size)
    if windows_last:                    # where each (c, i, j, p, q) sits in that layout
        (kh, kw), (oh, ow) = kernel, out_hw
        source = source.reshape(c, oh, ow, kh, kw).transpose(0, 3, 4, 1, 2).reshape(-1)
    source = source[inside]
    order = np.argsort(pixel, kind="stable")
    pixel, source = pixel[order], source[order]
    counts = np.bincount(pixel, minlength=c * h * w)
    k = max(int(counts.max()), 1)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(pixel.size) - starts[pixel]
    index = np.full((c * h * w, k), zero, dtype=np.int64)
    index[pixel, rank] = source
    return index, bool((counts < k).any())


def pool_divisor(h, w, kernel, stride, padding, out_hw):
    """Per window (OH·OW,): how many of its places lie inside the padded input (an
    average pool's divisor with padding counted, as torch's count_include_pad=True)."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
    r0 = np.arange(oh) * sh - ph
    c0 = np.arange(ow) * sw - pw
    rows = np.minimum(r0 + kh, h + ph) - r0
    cols = np.minimum(c0 + kw, w + pw) - c0
    return (rows[:, None] * cols[None, :]).reshape(-1).astype(np.float64)


def take(x, index, axis):
    """x gathered along ``axis`` by a 1-D index of non-negative positions: one operation
    (array-api-compat's torch ``take`` adds three to allow negative indices)."""
    if type(x).__module__.startswith("torch"):
        if torch_tracing():
            return _settled(x, index, axis).index_select(axis, index)
        return _rows(x, axis).index_select(axis, index)
    return None


def _settled(x, index, axis):
    """x, inside a traced torch program, held as a contiguous array of its own before a
    gather that reads a strided view of it or reads its entries more than once (im2col
    reads each pixel once per window it falls in).  Otherwise the compiler fuses the
    transpose, and whatever elementwise work made x, into the gather: each gathered value is
    then loaded with a stride (a cache miss apiece) and recomputed once per read; the CNN's
    first im2col at batch 1000 took 29 ms so on one CPU thread, 6 ms from a contiguous copy
    made first (bench/results/README.md)."""
    if x.is_contiguous() and index.shape[0] <= x.shape[axis]:
        return x
    import torch
    import torch._inductor.inductor_prims  # noqa: F401 - registers the operation below
    strides = [1] * x.ndim
    for i in range(x.ndim - 2, -1, -1):
        strides[i] = strides[i + 1] * x.shape[i + 1]
    return torch.ops.prims.inductor_force_stride_order(x, strides)


def _rows(x, axis):
    """x, made contiguous first when it is gathered along axis 0 from a strided view
    (torch's row gather then copies whole rows: 3 to 4 times faster, copy included)."""
    return x.contiguous() if axis == 0 and x.ndim > 1 and not x.is_contiguous() else x


def take_along_axis(x, index, axis):
    """``take_along_axis`` in one operation on torch (array-api-compat's adds three for
    negative indices); None elsewhere: the caller uses the namespace's."""
    if type(x).__module__.startswith("torch"):
        return x.gather(axis, index)
    return None


class Scratch:
    """Reusable outputs for one owner's large gathers, on torch CPU tensors.

    torch's CPU allocator hands every block above glibc's mmap threshold (32 MiB at most)
    straight back to the OS when it is freed, so a fresh im2col column array of that size
    costs a page fault per 4 KiB written, every step (a fresh 50 MiB gather takes 4 times
    as long as the same gather into memory already mapped).  ``take(name, x, index, axis)``
    gathers into the owner's array ``name`` instead, made on the first call and kept while
    the shape, dtype and device stay the same (else replaced: one array per name, so the
    memory stays bounded by the largest step).  The owner must only use it for arrays it
    alone holds and no longer needs when it gathers again (its own cache for bprop, or a
    temporary): the next call overwrites the values.  Each module has its own Scratch, so
    two layers of the same shape never share an array.  Returns None for other libraries
    and devices (CuPy's and torch's CUDA memory pools already reuse blocks) and for
    tensors that record autograd history; the caller then gathers into a fresh array.
    Copies (``copy.deepcopy``, pickling) start empty.
    """

    def __init__(self):
        self._arrays = {}

    def __getstate__(self):
        return {"_arrays": {}}

    def take(self, name, x, index, axis):
        """x gathered along ``axis`` at ``index`` into the reused array ``name``."""
        if not _plain_cpu(x) or not _plain_cpu(index):
            return None
        import torch
        shape = tuple(x.shape[:axis]) + tuple(index.shape) + tuple(x.shape[axis + 1:])
        return torch.index_select(_rows(x, axis), axis, index,
                                  out=self._out(name, shape, x))

    def matmul(self, name, a, b):
        """a @ b of 2-D torch CPU tensors into the reused array ``name``; None elsewhere."""
        if not _plain_cpu(a) or not _plain_cpu(b) or a.ndim != 2 or b.ndim != 2 \
                or a.dtype != b.dtype:
            return None
        import torch
        return torch.matmul(a, b, out=self._out(name, (a.shape[0], b.shape[1]), a))

    def empty(self, name, shape, like):
        """The reused array ``name`` of ``shape`` in ``like``'s dtype and device (a torch
        tensor or a NumPy array, as ``like``)."""
        return self._out(name, shape, like)

    def array(self, key, make, like):
        """A constant made once by ``make()`` per ``key`` and ``like``'s dtype and device."""
        key = (key, like.dtype, like.device)
        out = self._arrays.get(key)
        if out is None:
            out = self._arrays[key] = make()
        return out

    def _out(self, name, shape, like):
        out = self._arrays.get(name)
        if out is None or type(out) is not type(like) or tuple(out.shape) != tuple(shape) \
                or out.dtype != like.dtype or out.device != like.device:
            self._arrays[name] = None               # free the old one before the new one
            out = self._arrays[name] = _empty(shape, like)
        return out


def _empty(shape, like):
    """An uninitialised array of ``shape`` in ``like``'s library, dtype and device (NumPy or
    torch)."""
    if type(like) is np.ndarray:
        return np.empty(shape, dtype=like.dtype)
    import torch
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def _plain_cpu(x):
    """A torch CPU tensor outside autograd, and no program being traced (a traced program
    must not write into arrays kept between calls)."""
    return type(x).__module__.startswith("torch") and x.device.type == "cpu" \
        and not x.requires_grad and not torch_tracing()


def torch_tracing():
    """Whether nnx.compile_step is tracing a program on torch now."""
    from . import BACKENDS
    return BACKENDS["torch"].tracing is not None
