"""Host fast paths (NumPy; one for torch CPU tensors) behind nnx's Array API code.

nnx's layers are written once against the Array API namespace; that code is the reference
and runs everywhere.  Where the arrays are NumPy arrays, a layer may hand one step to a
helper here that computes the same formula with fewer NumPy calls and passes.  Each helper
returns None for other libraries (or inputs it does not handle), and the caller then runs
its own formula:

    fused = fast.softmax_cross_entropy_labels(z, t)
    if fused is None:
        ...the Array API formula...
"""

import numpy as np

_aranges = {}


def _arange(n):
    """np.arange(n), made once per n (read-only)."""
    a = _aranges.get(n)
    if a is None:
        if len(_aranges) > 64:
            _aranges.clear()
        a = _aranges[n] = np.arange(n)
        a.flags.writeable = False
    return a


def relu(x):
    """max(x, 0) of a NumPy float array, NaN kept, laid out as x (array-api-compat's clip
    returns a C-ordered copy: a batch-last view from Conv2D would lose its layout and the
    next layer pay a transposing copy); None elsewhere."""
    if type(x) is not np.ndarray or x.dtype.kind != "f" or x.ndim == 0:
        return None                     # (np.maximum of a 0-d array gives a scalar)
    return np.maximum(x, x.dtype.type(0))


def channel_rows(x):
    """A (C, m) view of a NumPy (N, C, H, W) array's memory, channel c in row c, where it
    is laid out batch-last, (C, H, W, N) (the view Conv2D hands out on NumPy; also any
    single example); else None."""
    if type(x) is not np.ndarray or x.ndim != 4:
        return None
    t = x.transpose(1, 2, 3, 0)
    return t.reshape(t.shape[0], -1) if t.flags.c_contiguous else None


def batch_norm_statistics(x, axes):
    """(mean, biased variance, x − mean) over ``axes`` (kept as size-1 axes), for
    BatchNorm, on host arrays: the two-pass variance Σ(x − mean)²/m from the centred copy
    BatchNorm keeps anyway.  NumPy sums the squares by einsum (three passes where np.mean,
    np.var and the subtraction take six), over (C, m) rows where x is laid out batch-last
    (x − mean then keeps that layout); torch CPU tensors square and average (torch.var
    over the batch and image axes is 3 to 10 times slower on the CPU).  None for other
    libraries and devices (GPUs keep xp.var: one kernel)."""
    if type(x).__module__.startswith("torch"):
        if x.device.type != "cpu" or not x.is_floating_point():
            return None
        mean = x.mean(dim=axes, keepdim=True)
        xc = x - mean
        return mean, (xc * xc).mean(dim=axes, keepdim=True), xc
    if type(x) is not np.ndarray or x.dtype.kind != "f" or x.ndim not in (2, 4):
        return None
    rows = channel_rows(x)
    if rows is not None:
        xc = np.empty_like(x)                           # x's layout: (C, H, W, N)
        mean, var = _centre_rows(rows, channel_rows(xc))
        per = (1, rows.shape[0], 1, 1)
        return mean.reshape(per), var.reshape(per), xc
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    spec = "nc,nc->c" if x.ndim == 2 else "nchw,nchw->c"
    var = np.einsum(spec, xc, xc).reshape(mean.shape)
    var /= x.size // x.shape[1]
    return mean, var, xc


def batch_norm_sums(g, xhat, axes):
    """(Σ g, Σ g·x̂) over ``axes`` of NumPy arrays, for BatchNorm's bprop: the second by
    einsum, without the g·x̂ temporary (2 to 4 times faster); over (C, m) rows where both
    are laid out batch-last.  None for other libraries."""
    if type(g) is not np.ndarray or type(xhat) is not np.ndarray or g.ndim not in (2, 4) \
            or g.dtype != xhat.dtype or g.dtype.kind != "f" or g.shape != xhat.shape:
        return None
    rows, xrows = channel_rows(g), channel_rows(xhat)
    if rows is not None and xrows is not None:
        return rows.sum(axis=1), np.einsum("ij,ij->i", rows, xrows)
    spec = "nc,nc->c" if g.ndim == 2 else "nchw,nchw->c"
    return g.sum(axis=axes), np.einsum(spec, g, xhat)


_CHUNK_BYTES = 1 << 20      # column blocks of (C, m) rows that stay in the cache between passes


def _blocks(rows):
    """Column slices of the (C, m) ``rows`` about 1 MiB each."""
    c, m = rows.shape
    step = max(1024, _CHUNK_BYTES // max(1, c * rows.itemsize))
    return [slice(i, i + step) for i in range(0, m, step)]


def _centre_rows(rows, out):
    """(mean (C, 1), biased variance (C,)) of the (C, m) ``rows``, with rows − mean written
    into ``out`` (C, m): the two-pass variance, by ~1 MiB column blocks so that each centred
    block is squared and summed while it is in the cache."""
    m = rows.shape[1]
    mean = rows.sum(axis=1, keepdims=True)
    mean /= m
    var = np.zeros(rows.shape[0], dtype=rows.dtype)
    for b in _blocks(rows):
        block = np.subtract(rows[:, b], mean, out=out[:, b])
        var += np.einsum("ij,ij->i", block, block)
    var /= m
    return mean, var


def batch_norm_train(x, gamma, beta, eps):
    """(mean, var, 1/√(var + eps), x̂, y) of BatchNorm in training, for a NumPy (N, C, H, W)
    float32 or float64 array laid out batch-last (what Conv2D hands out); None otherwise
    (float16 too: its sums pass 65504, and the layer computes its statistics in float32).

    The layer's formulas (two-pass variance) over (C, m) rows in two sweeps of ~1 MiB
    column blocks: x − μ and its squares' sums, then x̂ = (x − μ)/σ and y = γ·x̂ + β, so each
    block is read from the cache by the second and third operation on it; x̂ and y keep
    x's layout; mean, var and the inverse come as (1, C, 1, 1)."""
    rows = channel_rows(x)
    if rows is None or x.dtype.kind != "f" or x.dtype == np.float16 \
            or type(gamma) is not np.ndarray or type(beta) is not np.ndarray \
            or gamma.dtype != x.dtype:          # float16: the layer sums in float32
        return None
    c = rows.shape[0]
    xhat, y = np.empty_like(x), np.empty_like(x)
    xr, yr = channel_rows(xhat), channel_rows(y)
    mean, var = _centre_rows(rows, xr)
    var = var.reshape(c, 1)
    inv = (var + eps) ** -0.5
    g, bt = gamma.reshape(c, 1), beta.reshape(c, 1)
    for b in _blocks(rows):
        block = xr[:, b]
        block *= inv
        out = np.multiply(block, g, out=yr[:, b])
        out += bt
    per = (1, c, 1, 1)
    return mean.reshape(per), var.reshape(per), inv.reshape(per), xhat, y


def batch_norm_input_grad(g, xhat, scale, dgamma, dbeta, m):
    """BatchNorm's training dx = γ/σ·(g − (Σg + x̂·Σ g·x̂)/m) for NumPy arrays laid out
    batch-last (``scale`` = γ/σ as (1, C, 1, 1)), in one sweep of ~1 MiB column blocks of
    four operations each, laid out as g; None otherwise (float16 too; the layer's five full
    passes)."""
    rows, xr = channel_rows(g), channel_rows(xhat)
    if rows is None or xr is None or g.dtype != xhat.dtype or g.dtype.kind != "f" \
            or g.dtype == np.float16 or type(scale) is not np.ndarray:
        return None
    c = rows.shape[0]
    k = -1.0 / m
    a = (dgamma * k).astype(g.dtype).reshape(c, 1)
    b0 = (dbeta * k).astype(g.dtype).reshape(c, 1)
    sc = scale.astype(g.dtype).reshape(c, 1)
    dx = np.empty_like(g)
    dr = channel_rows(dx)
    for b in _blocks(rows):
        out = np.multiply(xr[:, b], a, out=dr[:, b])
        out += b0
        out += rows[:, b]
        out *= sc
    return dx


def softmax_cross_entropy_labels(z, labels, check=True):
    """(mean loss, dL/dz) of softmax cross-entropy for integer labels, on NumPy arrays.

    The formula of nnx.SoftmaxCrossEntropy, computed on a transposed copy (classes, batch):
    NumPy reduces over a short last axis slowly, over the first one fast.  Rows pick their
    label's log-probability instead of a one-hot product, and 1/N is taken off at each label.
    The gradient comes back as a transposed (Fortran-ordered) view.  None for other
    libraries, other shapes, or (when ``check``) labels outside [0, C): the caller then takes
    its general path, which also raises the errors.
    """
    if type(z) is not np.ndarray or type(labels) is not np.ndarray or z.ndim != 2 \
            or z.dtype.kind != "f" or labels.dtype.kind not in "iu" or labels.shape != z.shape[:1]:
        return None
    n, c = z.shape
    if n == 0 or (check and (labels.min() < 0 or labels.max() >= c)):
        return None
    if z.dtype == np.float16:       # float16 sums overflow past 65504: work in float32
        loss, grad = softmax_cross_entropy_labels(z.astype(np.float32), labels, check=False)
        return np.float16(loss), grad.astype(np.float16)
    zt = z.T.copy()                                     # (C, N), C-contiguous
    zt -= zt.max(axis=0)                                # shifted scores
    flat = zt.reshape(-1)
    at_label = labels.astype(np.intp) * n + _arange(n)  # flat index of (label_i, i);
    # (intp first: uint8 labels times n would wrap around)
    picked = flat[at_label].sum()                       # Σ_i shifted[i, label_i]
    np.exp(zt, out=zt)
    s = zt.sum(axis=0)
    loss = (np.log(s).sum() - picked) / n               # -mean log p[label]
    zt /= s * n                                         # softmax / N
    flat[at_label] -= 1.0 / n
    return loss, zt.T
