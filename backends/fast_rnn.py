"""Fast path of the LSTM's time loop on the CPU (nnx.layers.LSTM; see backends/fast.py for
the rule), for NumPy arrays and CPU torch tensors.

The layer's Array API loop is the reference and runs everywhere.  On NumPy arrays (and CPU
torch tensors) these two functions run the same formulas, step by step, with ``out=`` into
arrays allocated once per call: no temporary per operation, every step's gates written
straight into the (T, N, 4H) array the backward reads (forward) and every step's gate
gradients straight into the (T, N, 4H) array the weight gradients' matmul reads (backward),
so nothing is stacked afterwards.  Both return None for other libraries (or devices); the
layer then runs its own loop.
"""

import sys

import numpy as np


def _lib(*arrays):
    """numpy or torch when every array is a floating NumPy array (or CPU torch tensor
    without autograd) of one dtype; else None."""
    a = arrays[0]
    if type(a) is np.ndarray:
        lib = np
        if a.dtype.kind != "f":
            return None
    else:
        torch = sys.modules.get("torch")
        if torch is None or type(a) is not torch.Tensor or a.device.type != "cpu" \
                or not a.is_floating_point() or any(b.requires_grad for b in arrays):
            return None
        lib = torch
    if any(type(b) is not type(a) or b.dtype != a.dtype for b in arrays):
        return None
    return lib


def _empty(lib, shape, like):
    if lib is np:
        return np.empty(shape, dtype=like.dtype)
    return lib.empty(shape, dtype=like.dtype, device=like.device)


def _one_minus(lib, e):
    """e = 1 − e, in place."""
    if lib is np:
        np.subtract(1.0, e, out=e)
    else:
        e.neg_().add_(1.0)


def usable(*arrays):
    """Whether these arrays take the fast path (NumPy, or CPU torch without autograd)."""
    return _lib(*arrays) is not None


def lstm_forward(x, h, c, w1):
    """(y (N, T, H), u, z (T, N, 4H), c, tanh c (T, N, H), xh1) of LSTM.fprop, or None.

    x (N, T, n_in): the input; h, c (N, H): the initial state; w1 (n_in + H + 1, 4H):
    [W_ih | W_hh | b_ih + b_hh]ᵀ with the σ gates' columns halved.  The rows [x_t | h_{t−1}
    | 1] of every step are laid out once in xh1 (T + 1, N, n_in + H + 1), each h_t written
    straight into the next step's block, so that a step is ONE matmul, input projection,
    recurrence and biases together:  u = tanh([x_t | h_{t−1} | 1]·w1),  z = ½u + ½ (i, f,
    o),  c = f·c + i·g (g = u's block),  h = o·tanh c.  xh1[:T] is also what the weight
    gradients' one matmul needs.
    """
    lib = _lib(x, h, c, w1)
    if lib is None:
        return None
    n, steps, n_in = x.shape
    hid, rows = c.shape[1], w1.shape[1]
    xh1 = _empty(lib, (steps + 1, n, n_in + hid + 1), x)
    xh1[:steps, :, :n_in] = x.transpose(1, 0, 2) if lib is np else x.permute(1, 0, 2)
    xh1[steps, :, :n_in] = 0.0                      # never read: the block only holds h_T
    xh1[..., n_in + hid] = 1.0
    xh1[0, :, n_in:n_in + hid] = h
    u_all, z_all = _empty(lib, (steps, n, rows), x), _empty(lib, (steps, n, rows), x)
    c_all, tc_all = _empty(lib, (steps, n, hid), x), _empty(lib, (steps, n, hid), x)
    y = _empty(lib, (n, steps, hid), x)
    ig = _empty(lib, (n, hid), x)
    for t in range(steps):
        u, z, c_t, tc = u_all[t], z_all[t], c_all[t], tc_all[t]
        lib.matmul(xh1[t], w1, out=u)
        lib.tanh(u, out=u)
        lib.multiply(u, 0.5, out=z)
        z += 0.5
        lib.multiply(z[:, hid:2 * hid], c, out=c_t)
        lib.multiply(z[:, :hid], u[:, 2 * hid:3 * hid], out=ig)
        c_t += ig
        lib.tanh(c_t, out=tc)
        h = lib.multiply(z[:, 3 * hid:], tc, out=xh1[t + 1, :, n_in:n_in + hid])
        y[:, t, :] = h
        c = c_t
    return y, u_all, z_all, c_all, tc_all, xh1


def lstm_backward(grad_output, u_all, z_all, c_all, tc_all, c0, w_hh):
    """(dA (T, N, 4H), dh_0, dc_0) of LSTM.bprop's loop, or None.

    grad_output (N, T, H); u, z, c, tanh c as lstm_forward returned them; c0 the initial
    cell state; w_hh (4H, H): W_hh with the σ rows times ¼.  Per step, backwards:
    dh_t = g_t + dh,  dc_t = dc + dh_t·o·(1 − tanh²c_t),
    da_t = (dc_t·g, dc_t·c_{t−1}, dc_t·i, dh_t·tanh c_t)·(1 − u²),  dh = da_t·W_hh,  dc = dc_t·f.
    """
    lib = _lib(grad_output, u_all, z_all, c_all, tc_all, c0, w_hh)
    if lib is None:
        return None
    steps, n, rows = u_all.shape
    hid = rows // 4
    d_all = _empty(lib, (steps, n, rows), u_all)
    dh, dc = lib.zeros_like(c0), lib.zeros_like(c0)
    dh_t, e = _empty(lib, (n, hid), c0), _empty(lib, (n, hid), c0)
    du = _empty(lib, (n, rows), u_all)
    for t in range(steps - 1, -1, -1):
        u, z, tc, da = u_all[t], z_all[t], tc_all[t], d_all[t]
        c_prev = c_all[t - 1] if t else c0
        lib.add(grad_output[:, t, :], dh, out=dh_t)
        lib.multiply(tc, tc, out=e)                  # dc_t = dc + dh_t·o·(1 − tc²)
        _one_minus(lib, e)
        e *= z[:, 3 * hid:]
        e *= dh_t
        dc += e
        lib.multiply(dc, u[:, 2 * hid:3 * hid], out=da[:, :hid])
        lib.multiply(dc, c_prev, out=da[:, hid:2 * hid])
        lib.multiply(dc, z[:, :hid], out=da[:, 2 * hid:3 * hid])
        lib.multiply(dh_t, tc, out=da[:, 3 * hid:])
        lib.multiply(u, u, out=du)
        _one_minus(lib, du)
        da *= du
        lib.matmul(da, w_hh, out=dh)
        dc *= z[:, hid:2 * hid]
    return d_all, dh, dc
