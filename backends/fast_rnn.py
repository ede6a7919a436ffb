"""NumPy fast path of the LSTM's time loop (nnx.layers.LSTM; see backends/fast.py for the rule).

The layer's Array API loop is the reference and runs everywhere.  On NumPy arrays these two
functions run the same formulas, step by step, with ``out=`` into arrays allocated once per
call: no temporary per operation, every step's gates written straight into the (T, N, 4H)
array the backward reads (forward) and every step's gate gradients straight into the
(T, N, 4H) array the weight gradients' matmul reads (backward), so nothing is stacked
afterwards.  Both return None for other libraries; the layer then runs its own loop.
"""

import numpy as np


def _usable(*arrays):
    return all(type(a) is np.ndarray for a in arrays) and arrays[0].dtype.kind == "f" \
        and len({a.dtype for a in arrays}) == 1


def lstm_forward(xw, h, c, w_hh_t):
    """(y (N, T, H), u, z (T, N, 4H), c, tanh c (T, N, H)) of LSTM.fprop's loop, or None.

    xw (T, N, 4H): every step's input projection with both biases, σ rows halved; h, c
    (N, H): the initial state; w_hh_t (H, 4H): W_hhᵀ with the σ columns halved.  Per step:
    u = tanh(xw_t + h·W), z = ½u + ½ (i, f, o), c = f·c + i·g (g = u's block), h = o·tanh c.
    """
    if not _usable(xw, h, c, w_hh_t):
        return None
    steps, n, rows = xw.shape
    hid = rows // 4
    u_all, z_all = np.empty_like(xw), np.empty_like(xw)
    c_all = np.empty((steps, n, hid), dtype=xw.dtype)
    tc_all = np.empty_like(c_all)
    y = np.empty((n, steps, hid), dtype=xw.dtype)
    ig = np.empty((n, hid), dtype=xw.dtype)
    for t in range(steps):
        u, z, c_t, tc = u_all[t], z_all[t], c_all[t], tc_all[t]
        np.matmul(h, w_hh_t, out=u)
        u += xw[t]
        np.tanh(u, out=u)
        np.multiply(u, 0.5, out=z)
        z += 0.5
        np.multiply(z[:, hid:2 * hid], c, out=c_t)
        np.multiply(z[:, :hid], u[:, 2 * hid:3 * hid], out=ig)
        c_t += ig
        np.tanh(c_t, out=tc)
        h = np.multiply(z[:, 3 * hid:], tc, out=y[:, t, :])
        c = c_t
    return y, u_all, z_all, c_all, tc_all


def lstm_backward(grad_output, u_all, z_all, c_all, tc_all, c0, w_hh):
    """(dA (T, N, 4H), dh_0, dc_0) of LSTM.bprop's loop, or None.

    grad_output (N, T, H); u, z, c, tanh c as lstm_forward returned them; c0 the initial
    cell state; w_hh (4H, H): W_hh with the σ rows times ¼.  Per step, backwards:
    dh_t = g_t + dh,  dc_t = dc + dh_t·o·(1 − tanh²c_t),
    da_t = (dc_t·g, dc_t·c_{t−1}, dc_t·i, dh_t·tanh c_t)·(1 − u²),  dh = da_t·W_hh,  dc = dc_t·f.
    """
    if not _usable(grad_output, u_all, z_all, c_all, tc_all, c0, w_hh):
        return None
    steps, n, rows = u_all.shape
    hid = rows // 4
    d_all = np.empty_like(u_all)
    dh, dc = np.zeros_like(c0), np.zeros_like(c0)
    dh_t, e = np.empty_like(c0), np.empty_like(c0)
    du = np.empty((n, rows), dtype=u_all.dtype)
    for t in range(steps - 1, -1, -1):
        u, z, tc, da = u_all[t], z_all[t], tc_all[t], d_all[t]
        c_prev = c_all[t - 1] if t else c0
        np.add(grad_output[:, t, :], dh, out=dh_t)
        np.multiply(tc, tc, out=e)                  # dc_t = dc + dh_t·o·(1 − tc²)
        np.subtract(1.0, e, out=e)
        e *= z[:, 3 * hid:]
        e *= dh_t
        dc += e
        np.multiply(dc, u[:, 2 * hid:3 * hid], out=da[:, :hid])
        np.multiply(dc, c_prev, out=da[:, hid:2 * hid])
        np.multiply(dc, z[:, :hid], out=da[:, 2 * hid:3 * hid])
        np.multiply(dh_t, tc, out=da[:, 3 * hid:])
        np.multiply(u, u, out=du)
        np.subtract(1.0, du, out=du)
        da *= du
        np.matmul(da, w_hh, out=dh)
        dc *= z[:, hid:2 * hid]
    return d_all, dh, dc
