"""im2col / col2im, written once against the Array API (the reference for every backend).

A convolution or pooling window of size (kh, kw), moved with stride (sh, sw) over an input
(N, C, H, W) zero-padded by (ph, pw), visits OH × OW places:

    OH = (H + 2·ph − kh) // sh + 1,   OW = (W + 2·pw − kw) // sw + 1

``im2col`` lays the windows out as columns, cols[n, (c, i, j), (p, q)] =
x_pad[n, c, p·sh + i, q·sw + j], shape (N, C·kh·kw, OH·OW), so a convolution is one batched
matmul.  ``col2im`` is its adjoint: every column entry is added back to the input pixel it
was read from (the gradient of im2col).  On NumPy arrays both hand over to the strided
fast path in ``nnx.backends.fast_conv`` (same layout, same numbers).

Elsewhere (CuPy, torch, JAX, array-api-strict) both are gathers, a few array operations
whatever the kernel size: im2col takes each example's flattened input at a cached flat index
(one ``take``; padding reads a pad value appended once per call), and col2im gathers, for
every input pixel, the ≤ K' column entries it fed and sums them (one ``take``, one ``sum``;
no scatter, which the Array API does not have).  The index tables are built once per shape
on the host (``nnx.backends.gather``) and cached per device.

Conv2D and MaxPool2D use the batch-last forms ``im2col_batch_last`` / ``col2im_batch_last``:
the same tables, gathered along the first axis of a (C·H·W, N) array, so every gathered
entry is a row of N values (the batch-first forms above are their oracle in the tests).
On torch CPU tensors the large gathers write into the module's reused arrays
(``nnx.backends.gather.Scratch``: no page faults of fresh 50-100 MiB columns each step),
and col2im's gather and sum are one kernel (``nnx.backends.fused.take_sum``).
"""

import math

from nnx import backends
from nnx.backends import fast_conv, fused, gather

from .. import _checks
from .._constants import on_device as _on_device
from ..device import namespace
from ..errors import ShapeError


def pair(value, what, owner, minimum=1):
    """(a, b) from an int or a pair of ints, each >= ``minimum`` (bools and floats refused:
    ArgumentTypeError; out of range: ArgumentError)."""
    both = _checks.pair(owner, what, value, "an int or a pair of ints") \
        if isinstance(value, (tuple, list)) else (value, value)
    return tuple(_checks.integer(owner, what, v, minimum, f"be >= {minimum}",
                                 type_what="be an int or a pair of ints") for v in both)


def output_size(module, shape, kernel, stride, padding, channels=None, ceil_mode=False):
    """(OH, OW) for a 4-D input ``shape``, after checking it (one clear ShapeError).

    ``ceil_mode`` (pooling): a last, partial window where the stride leaves places over,
    as long as it starts inside the input or its left padding (as torch counts them)."""
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
    if ceil_mode:
        oh = -(-(shape[2] + 2 * ph - kh) // sh) + 1
        ow = -(-(shape[3] + 2 * pw - kw) // sw) + 1
        oh -= (oh - 1) * sh >= shape[2] + ph
        ow -= (ow - 1) * sw >= shape[3] + pw
    if oh < 1 or ow < 1:
        raise ShapeError(f"{module!r}.fprop: input of shape {shape} (padded by {ph, pw}) is "
                         f"smaller than the kernel {kh, kw}; give a larger input, more "
                         f"padding or a smaller kernel")
    return oh, ow




def _index_dtype(index):
    """int32 tables where they fit (JAX without x64 has no int64), else int64."""
    return index.astype("int32") if index.size == 0 or index.max() < 2**31 - 1 else index


def fill(like, rows, value):
    """A cached (rows, 1) array of ``value`` in ``like``'s dtype and device (a pad column)."""
    from ..device import dtype_name
    dtype = dtype_name(like.dtype)
    return _on_device(("fill", rows, value, dtype), like,
                      lambda: (backends.host.full((rows, 1), value, dtype),))[0]


def take(xp, x, index, axis, scratch=None, name=None):
    """``xp.take`` in one operation on every library (index: non-negative, 1-D); with a
    ``scratch`` (``nnx.backends.gather.Scratch``), into its reused array ``name`` where it
    has one (torch CPU): only for arrays no one else holds."""
    fast = None if scratch is None else scratch.take(name, x, index, axis)
    if fast is not None:
        return fast
    fast = gather.take(x, index, axis)
    return xp.take(x, index, axis=axis) if fast is None else fast


def _im2col_index(x, kernel, stride, padding, out_hw, windows_last):
    """(the flat gather index, whether it reads a pad entry) for im2col of x's shape, made
    once per shape and device."""
    _, c, h, w = x.shape
    return _on_device(("im2col", c, h, w, kernel, stride, padding, out_hw, windows_last), x,
                      lambda: _im2col_tables(c, h, w, kernel, stride, padding, out_hw,
                                             windows_last))


def im2col(x, kernel, stride, padding, out_hw, pad_value=0.0, windows_last=False):
    """cols (N, C·kh·kw, OH·OW) from x (N, C, H, W); windows read ``pad_value`` where they
    cover the padding or run past the border (ceil_mode pooling).  ``windows_last``: the
    layout (N, C, OH·OW, kh·kw) instead, each window's values side by side (a reduction
    over the window is then over the last axis: much faster for argmax on torch)."""
    if pad_value == 0.0 and not windows_last and \
            _inside(x.shape, kernel, stride, padding, out_hw):
        fast = fast_conv.im2col(x, kernel, stride, padding, out_hw)
        if fast is not None:
            return fast
    xp = namespace(x)
    n, c, h, w = x.shape
    index, padded = _im2col_index(x, kernel, stride, padding, out_hw, windows_last)
    flat = xp.reshape(x, (n, c * h * w))
    if padded:
        flat = xp.concat([flat, fill(x, n, pad_value)], axis=1)
    cols = take(xp, flat, index, 1)
    if windows_last:
        return xp.reshape(cols, (n, c, out_hw[0] * out_hw[1], kernel[0] * kernel[1]))
    return xp.reshape(cols, (n, c * kernel[0] * kernel[1], out_hw[0] * out_hw[1]))


def _inside(shape, kernel, stride, padding, out_hw):
    """Whether every window lies inside the padded input (no ceil_mode overhang): what the
    NumPy fast paths assume."""
    return all((o - 1) * s + k <= n + 2 * p for o, s, k, n, p in
               zip(out_hw, stride, kernel, shape[2:], padding))


def _im2col_tables(c, h, w, kernel, stride, padding, out_hw, windows_last):
    index, padded = gather.im2col_index(c, h, w, kernel, stride, padding, out_hw,
                                        windows_last)
    return _index_dtype(index), padded


def col2im_tables(x_shape, kernel, stride, padding, out_hw, like, windows_last=False):
    """(index (C·H·W·K',), K', whether a zero is needed) of the gather-form col2im, cached
    per shape and device; the zero sits at position C·kh·kw·OH·OW of the flat columns."""
    _, c, h, w = x_shape
    zero = c * kernel[0] * kernel[1] * out_hw[0] * out_hw[1]

    def build():
        index, needs_zero = gather.col2im_index(c, h, w, kernel, stride, padding, out_hw, zero,
                                                windows_last)
        return _index_dtype(index.reshape(-1)), index.shape[1], needs_zero
    return _on_device(("col2im", c, h, w, kernel, stride, padding, out_hw, windows_last),
                      like, build)


def pool_grad_tables(x_shape, kernel, stride, padding, out_hw, like):
    """Like ``col2im_tables``, but the index reads the (C·OH·OW) window values themselves
    (each window's one value, spread over the pixels it covers; zero at C·OH·OW)."""
    _, c, h, w = x_shape
    k, l = kernel[0] * kernel[1], out_hw[0] * out_hw[1]

    def build():
        index, needs_zero = gather.col2im_index(c, h, w, kernel, stride, padding, out_hw,
                                                c * k * l)
        index = (index // (k * l)) * l + index % l          # cols entry -> its window
        return _index_dtype(index.reshape(-1)), index.shape[1], needs_zero
    return _on_device(("poolgrad", c, h, w, kernel, stride, padding, out_hw), like, build)


def divisors(x_shape, kernel, stride, padding, out_hw, like):
    """(1/divisor per window (OH·OW,) in ``like``'s dtype, whether they all equal
    1/(kh·kw)): an average pool's divisor counts the padding but not the places a
    ceil_mode window runs past it."""
    from ..device import dtype_name
    dtype = dtype_name(like.dtype)
    h, w = x_shape[2], x_shape[3]

    def build():
        div = gather.pool_divisor(h, w, kernel, stride, padding, out_hw)
        return (backends.host.scale(div ** -1.0, 1.0, dtype),
                bool((div == kernel[0] * kernel[1]).all()))
    return _on_device(("divisor", h, w, kernel, stride, padding, out_hw, dtype), like, build)


def arange(xp, like, n):
    """A cached arange(n) of integers on ``like``'s device (placed by ``from_host``, which
    CuPy honours where array creation ignores ``device=``)."""
    return _on_device(("arange", n), like, lambda: (backends.host.as_int64(
        backends.host.as_array(range(n))),))[0]


def col2im(cols, x_shape, kernel, stride, padding, out_hw, zero_row=False,
           windows_last=False):
    """The adjoint of im2col: dx (N, C, H, W) from dcols (N, C·kh·kw, OH·OW) (or from
    (N, C, OH·OW, kh·kw) with ``windows_last``).

    ``zero_row``: cols is (N, C·kh·kw + 1, OH·OW) whose last row is zero (Conv2D gets it
    for free from its matmul), so no zero is appended here."""
    if not zero_row and not windows_last and _inside(x_shape, kernel, stride, padding, out_hw):
        fast = fast_conv.col2im(cols, x_shape, kernel, stride, padding, out_hw)
        if fast is not None:
            return fast
    xp = namespace(cols)
    n, c, h, w = x_shape
    index, k, needs_zero = col2im_tables(x_shape, kernel, stride, padding, out_hw, cols,
                                         windows_last)
    flat = xp.reshape(cols, (n, math.prod(cols.shape[1:])))
    if needs_zero and not zero_row:
        flat = xp.concat([flat, fill(cols, n, 0.0)], axis=1)
    picked = take(xp, flat, index, 1)
    if k == 1:
        return xp.reshape(picked, x_shape)
    return xp.reshape(xp.sum(xp.reshape(picked, (n, c * h * w, k)), axis=2), x_shape)


def scratch_of(module):
    """``module``'s own ``Scratch`` of reused gather outputs (made on first use)."""
    scratch = vars(module).get("_scratch")
    if scratch is None:
        scratch = module._scratch = gather.Scratch()
    return scratch


def im2col_batch_last(x, kernel, stride, padding, out_hw, pad_value=0.0, windows_last=False,
                      scratch=None):
    """im2col with the batch laid out last: cols (C·kh·kw·OH·OW, N) from x (N, C, H, W),
    row r holding entry r of ``im2col(x)[n]`` (flattened) for every example n (or, with
    ``windows_last``, entry r of the (C, OH·OW, kh·kw) layout).  The same index tables as
    ``im2col``, gathered along the first axis: every gathered entry is a row of N values,
    one contiguous copy where the batch-first gather copies single values (5 to 10 times
    faster on torch's CPU), and a convolution is then one matmul for the whole batch.
    ``scratch``: the caller's ``Scratch``, to gather into its reused array "cols" (the
    values are overwritten by the caller's next call)."""
    xp = namespace(x)
    n, c, h, w = x.shape
    index, padded = _im2col_index(x, kernel, stride, padding, out_hw, windows_last)
    flat = xp.reshape(xp.permute_dims(x, (1, 2, 3, 0)), (c * h * w, n))
    if padded:
        flat = xp.concat([flat, xp.reshape(fill(x, n, pad_value), (1, n))], axis=0)
    return take(xp, flat, index, 0, scratch, "cols")


def col2im_batch_last(cols, x_shape, kernel, stride, padding, out_hw, zero_row=False,
                      windows_last=False, scratch=None):
    """The adjoint of ``im2col_batch_last``: dx (N, C, H, W) from dcols (C·kh·kw·OH·OW, N)
    (rows in ``im2col_batch_last``'s order).  ``zero_row``: cols has OH·OW more rows, the
    first of them zero (Conv2D's matmul makes them), so no zero is appended.  dx comes back
    as a (N, C, H, W) view of a (C, H, W, N) array, never in ``scratch`` (whose array
    "col2im" holds the gathered entries before their sum)."""
    xp = namespace(cols)
    n, c, h, w = x_shape
    index, k, needs_zero = col2im_tables(x_shape, kernel, stride, padding, out_hw, cols,
                                         windows_last)
    if needs_zero and not zero_row:
        cols = xp.concat([cols, xp.reshape(fill(cols, n, 0.0), (1, n))], axis=0)
    if k == 1:                                  # the gather is dx itself: a fresh array
        return xp.permute_dims(xp.reshape(take(xp, cols, index, 0), (c, h, w, n)),
                               (3, 0, 1, 2))
    offsets = _on_device(("bag offsets", c * h * w, k), cols, lambda: (_index_dtype(
        backends.host.as_int64(backends.host.as_array(range(0, c * h * w * k, k)))),))[0]
    picked = fused.take_sum(cols, index, offsets)   # torch: gather and sum in one kernel
    if picked is None:
        picked = take(xp, cols, index, 0, scratch, "col2im")         # (C·H·W·K', N)
        picked = xp.sum(xp.reshape(picked, (c * h * w, k, n)), axis=1)
    return xp.permute_dims(xp.reshape(picked, (c, h, w, n)), (3, 0, 1, 2))
