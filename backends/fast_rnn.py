"""Fast paths of the LSTM's and the GRU's time loops on the CPU (nnx.layers.LSTM, GRU; see
backends/fast.py for the rule), for NumPy arrays and CPU torch tensors.

The layer's Array API loop is the reference and runs everywhere.  On NumPy arrays (and CPU
torch tensors) these functions run the same formulas, step by step, with ``out=`` into
arrays allocated once per call: no temporary per operation, every step's gates written
straight into the (T, ...) arrays the backward reads (forward) and every step's gate
gradients straight into the (T, N, G·H) arrays the weight gradients' matmuls read
(backward), so nothing is stacked afterwards.  Each returns None for other libraries (or
devices); the layer then runs its own loop.

What an LSTM step costs at batch 100 (H = 128, one thread): the two matmuls are most of it
(~130 and ~115 µs); the elementwise kernels on (N, H) arrays cost ~3 µs when their operands are
contiguous and 2-3 times that on a gate's columns of an (N, 4H) array, so the σ gates are
kept gate-major (T, 3, N, H); on torch, making a view costs ~1-3 µs, so each step's views
are made for all steps at once (unbind) rather than by indexing in the loop.
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
    """An uninitialised array.  On torch, of a float dtype NumPy has, its memory comes from
    NumPy (torch.from_numpy shares it): NumPy asks the kernel for huge pages on large
    blocks, so the per-call (T, N, 4H) arrays cost a few thousand page faults a step at
    batch 1000 instead of ~35,000 (torch's CPU allocator maps them in 4 KiB pages)."""
    if lib is np:
        return np.empty(shape, dtype=like.dtype)
    as_numpy = _TORCH_TO_NUMPY.get(str(like.dtype))
    if as_numpy is not None:
        return lib.from_numpy(np.empty(shape, dtype=as_numpy))
    return lib.empty(shape, dtype=like.dtype, device=like.device)


_TORCH_TO_NUMPY = {"torch.float32": np.float32, "torch.float64": np.float64,
                   "torch.float16": np.float16}


def _plain(a):
    """A torch tensor that carries autograd history, detached (the backward reads it only)."""
    return a.detach() if getattr(a, "requires_grad", False) else a


def usable(*arrays):
    """Whether these arrays take the fast path (NumPy, or CPU torch without autograd)."""
    return _lib(*arrays) is not None


def lstm_forward(x, h, c, w1):
    """(y (N, T, H), (u, z, c, tanh c, xh1)) of LSTM.fprop, or None.

    x (N, T, n_in): the input; h, c (N, H): the initial state; w1 (n_in + H + 1, 4H):
    [W_ih | W_hh | b_ih + b_hh]ᵀ with its gate blocks in the order (o, i, f, g) (the σ gates
    first, then the three that dc_t multiplies in the backward) and the σ gates' columns
    halved.  The rows [x_t | h_{t−1} | 1] of every step are laid out once in xh1 (T + 1, N,
    n_in + H + 1), each h_t written straight into the next step's block, so that a step is
    ONE matmul, input projection, recurrence and biases together:
    u = tanh([x_t | h_{t−1} | 1]·w1),  z = ½u + ½ over (o, i, f) only,  c_t = f·c_{t−1} +
    i·g (g = u's last block),  h_t = o·tanh c_t.  z is gate-major, (T, 3, N, H): each gate a
    contiguous (N, H); c (T + 1, N, H) holds c_0 first; xh1[:T] is what the weight
    gradients' one matmul reads.  9 kernels a step on NumPy, 8 on torch (the cell update as
    a mul and an addcmul), none allocating; y (N, T, H) is copied out once, after the loop.
    """
    lib = _lib(x, h, c, w1)
    if lib is None:
        return None
    n, steps, n_in = x.shape
    hid, rows = c.shape[1], w1.shape[1]
    h_cols = slice(n_in, n_in + hid)
    xh1 = _empty(lib, (steps + 1, n, n_in + hid + 1), x)
    xh1[:steps, :, :n_in] = x.transpose(1, 0, 2) if lib is np else x.permute(1, 0, 2)
    xh1[steps, :, :n_in] = 0.0                      # never read: the block only holds h_T
    xh1[..., n_in + hid] = 1.0
    xh1[0, :, h_cols] = h
    u_all, z_all = _empty(lib, (steps, n, rows), x), _empty(lib, (steps, 3, n, hid), x)
    c_all, tc_all = _empty(lib, (steps + 1, n, hid), x), _empty(lib, (steps, n, hid), x)
    c_all[0] = c
    hs = xh1[1:, :, h_cols]                         # where each h_t goes: (T, N, H)
    # u's σ blocks gate-major, (T, 3, N, H), as z is: every gate of z a contiguous (N, H)
    u4 = u_all.reshape(steps, n, 4, hid)            # a view: u_all is contiguous
    u_s = u4[:, :, :3].transpose(0, 2, 1, 3) if lib is np else u4[:, :, :3].permute(0, 2, 1, 3)
    if lib is np:
        ig = np.empty((n, hid), dtype=x.dtype)
        for t in range(steps):
            u, (o, i, f), c_t, tc = u_all[t], z_all[t], c_all[t + 1], tc_all[t]
            np.matmul(xh1[t], w1, out=u)
            np.tanh(u, out=u)
            np.multiply(u_s[t], 0.5, out=z_all[t])
            z_all[t] += 0.5
            np.multiply(f, c_all[t], out=c_t)
            np.multiply(i, u[:, 3 * hid:], out=ig)
            c_t += ig
            np.tanh(c_t, out=tc)
            np.multiply(o, tc, out=hs[t])
        y = np.empty((n, steps, hid), dtype=x.dtype)
        y[...] = hs.transpose(1, 0, 2)
    else:
        torch = lib
        # every step's views made at once (unbind): indexing in the loop costs µs per view
        per_step = zip(xh1.unbind(0), u_all.unbind(0), u_s.unbind(0),
                       u_all[..., 3 * hid:].unbind(0), z_all.unbind(0),
                       z_all[:, 0].unbind(0), z_all[:, 1].unbind(0), z_all[:, 2].unbind(0),
                       c_all.unbind(0), c_all[1:].unbind(0), tc_all.unbind(0), hs.unbind(0))
        for xh_t, u, u_s, g, z, o, i, f, c_prev, c_t, tc, h_t in per_step:
            torch.matmul(xh_t, w1, out=u)
            u.tanh_()
            torch.add(u_s, 1.0, out=z)                  # (u + 1)·½: equal to ½u + ½
            z.mul_(0.5)
            torch.mul(f, c_prev, out=c_t)
            c_t.addcmul_(i, g)
            torch.tanh(c_t, out=tc)
            torch.mul(o, tc, out=h_t)
        y = hs.permute(1, 0, 2).contiguous()
    return y, (u_all, z_all, c_all, tc_all, xh1)


def lstm_backward(grad_output, u_all, z_all, c_all, tc_all, w_hh):
    """(dA (T, N, 4H), dh_0, dc_0) of LSTM.bprop's loop, or None.

    grad_output (N, T, H); u, z, c, tanh c as lstm_forward returned them (gates in its
    order o, i, f, g); w_hh (4H, H): W_hh's rows in that order, the σ rows times ¼.  Per
    step, backwards (dh and dc carried from step t+1, zero after the last), with
    E = o·(1 − tanh²c) and F = (1 − u²)·(tanh c, g, c_{t−1}, i):
    dh_t = g_t + dh,  dc_t = dc + dh_t·E_t,  da_t = (dh_t, dc_t, dc_t, dc_t)·F_t,
    dh = da_t·W_hh,  dc = dc_t·f.
    On torch, E and F (what does not depend on the carried gradients) are formed for all
    steps at once before the loop, F in dA's own array, and a step is 5 kernels (addcmul
    for dc_t, two products into da_t, addmm for the next step's dh_t, dc·f).  On NumPy they
    are formed step by step (15 kernels a step): there the whole-sequence passes over
    (T, N, 4H) arrays were ~20% slower at batch 100, memory-bound where one step's arrays
    stay in cache.
    """
    grad_output = _plain(grad_output)
    lib = _lib(grad_output, u_all, z_all, c_all, tc_all, w_hh)
    if lib is None:
        return None
    steps, n, rows = u_all.shape
    hid = rows // 4
    d_all = _empty(lib, (steps, n, rows), u_all)
    if lib is np:
        dh, dc = np.zeros((n, hid), dtype=u_all.dtype), np.zeros((n, hid), dtype=u_all.dtype)
        dh_t, e = np.empty((n, hid), dtype=u_all.dtype), np.empty((n, hid), dtype=u_all.dtype)
        du = np.empty((n, rows), dtype=u_all.dtype)
        for t in range(steps - 1, -1, -1):
            u, (o, i, f), tc, da = u_all[t], z_all[t], tc_all[t], d_all[t]
            np.add(grad_output[:, t, :], dh, out=dh_t)
            np.multiply(tc, tc, out=e)                  # dc_t = dc + dh_t·o·(1 − tc²)
            np.subtract(1.0, e, out=e)
            e *= o
            e *= dh_t
            dc += e
            np.multiply(dh_t, tc, out=da[:, :hid])                  # o block
            np.multiply(dc, u[:, 3 * hid:], out=da[:, hid:2 * hid])  # i: dc_t·g
            np.multiply(dc, c_all[t], out=da[:, 2 * hid:3 * hid])   # f: dc_t·c_{t−1}
            np.multiply(dc, i, out=da[:, 3 * hid:])                  # g: dc_t·i
            np.multiply(u, u, out=du)
            np.subtract(1.0, du, out=du)
            da *= du
            np.matmul(da, w_hh, out=dh)
            dc *= f
        return d_all, dh, dc
    torch = lib
    # F = (1 − u²)·(tanh c, g, c_{t−1}, i) and E = o·(1 − tanh²c), all steps at once, in dA's
    # array (torch's whole-array kernels are fast, its small ones dear)
    e_all = _empty(lib, (steps, n, hid), u_all)
    one = torch.tensor(1.0, dtype=u_all.dtype, device=u_all.device)
    torch.addcmul(one, u_all, u_all, value=-1.0, out=d_all)
    torch.addcmul(one, tc_all, tc_all, value=-1.0, out=e_all)
    d_all[..., :hid] *= tc_all
    d_all[..., hid:2 * hid] *= u_all[..., 3 * hid:]
    d_all[..., 2 * hid:3 * hid] *= c_all[:steps]
    d_all[..., 3 * hid:] *= z_all[:, 1]
    e_all *= z_all[:, 0]
    dc = torch.empty((n, hid), dtype=u_all.dtype, device=u_all.device)
    dh = torch.empty((n, hid), dtype=u_all.dtype, device=u_all.device)
    d4 = d_all.view(steps, n, 4, hid)
    per_step = list(zip(d_all.unbind(0), d_all[..., :hid].unbind(0), d4[:, :, 1:].unbind(0),
                        e_all.unbind(0), z_all[:, 2].unbind(0),
                        (None,) + grad_output[:, :steps - 1, :].unbind(1)))
    dh_t = grad_output[:, steps - 1, :]             # read only: the next ones go into dh
    torch.mul(e_all[steps - 1], dh_t, out=dc)
    for t in range(steps - 1, -1, -1):
        da, da_o, da_dc, e, f, g_prev = per_step[t]
        if t < steps - 1:
            dc.addcmul_(e, dh_t)
        da_dc.mul_(dc[:, None, :])
        da_o.mul_(dh_t)
        if t:
            torch.addmm(g_prev, da, w_hh, out=dh)
        else:
            torch.mm(da, w_hh, out=dh)
        dh_t = dh
        dc.mul_(f)
    return d_all, dh, dc


def _steps(lib, a):
    """a's first axis as a list of views, made at once (torch: unbind; indexing a tensor in
    a loop costs µs a view)."""
    return list(a) if lib is np else list(a.unbind(0))


def gru_forward(x, h, w_x, w_h):
    """(y (N, T, H), (rz, n, gh, hb, x1)) of GRU.fprop, or None.

    x (N, T, n_in): the input; h (N, H): the initial state; w_x (n_in + 1, 3H) = [W_ih |
    b_ih]ᵀ and w_h (H + 1, 3H) = [W_hh | b_hh]ᵀ, the r and z gates' columns halved.  The
    rows [x_t | 1] are laid out once in x1 (T, N, n_in + 1) and x̃ = x1·w_x is one matmul
    for all steps; the rows [h_{t−1} | 1] live in hb (T + 1, N, H + 1), each h_t written
    straight into the next step's block, so that h̃ = [h_{t−1} | 1]·w_h is one matmul a
    step, and x1 and hb[:T] are what the weight gradients' two matmuls read.  Per step:
    rz = ½·tanh(x̃_rz + h̃_rz) + ½ (gate-major, (T, 2, N, H)),  n = tanh(x̃_n + r·h̃_n),
    h_t = n + z·(h_{t−1} − n).  11 kernels a step, none allocating.
    """
    lib = _lib(x, h, w_x, w_h)
    if lib is None:
        return None
    n, steps, n_in = x.shape
    hid = h.shape[1]
    x1 = _empty(lib, (steps, n, n_in + 1), x)
    x1[..., :n_in] = x.transpose(1, 0, 2) if lib is np else x.permute(1, 0, 2)
    x1[..., n_in] = 1.0
    xw = _empty(lib, (steps, n, 3 * hid), x)
    lib.matmul(x1.reshape(steps * n, n_in + 1), w_x, out=xw.reshape(steps * n, 3 * hid))
    hb = _empty(lib, (steps + 1, n, hid + 1), x)
    hb[..., hid] = 1.0
    hb[0, :, :hid] = h
    gh, nn = _empty(lib, (steps, n, 3 * hid), x), _empty(lib, (steps, n, hid), x)
    rz = _empty(lib, (steps, 2, n, hid), x)
    tmp = _empty(lib, (n, hid), x)

    def gate_major(a):                  # (T, N, 3H) → its r, z blocks as (T, 2, N, H) views
        a4 = a.reshape(steps, n, 3, hid)[:, :, :2]
        return a4.transpose(0, 2, 1, 3) if lib is np else a4.permute(0, 2, 1, 3)
    per_step = zip(_steps(lib, hb[:steps]), _steps(lib, hb[1:, :, :hid]),
                   _steps(lib, hb[:steps, :, :hid]), _steps(lib, gh),
                   _steps(lib, gh[..., 2 * hid:]), _steps(lib, gate_major(xw)),
                   _steps(lib, gate_major(gh)), _steps(lib, xw[..., 2 * hid:]),
                   _steps(lib, rz), _steps(lib, nn))
    for hb_t, h_t, h_prev, gh_t, gh_n, xw_rz, gh_rz, xw_n, rz_t, n_t in per_step:
        lib.matmul(hb_t, w_h, out=gh_t)
        lib.add(xw_rz, gh_rz, out=rz_t)
        lib.tanh(rz_t, out=rz_t)
        rz_t *= 0.5
        rz_t += 0.5
        lib.multiply(rz_t[0], gh_n, out=n_t)
        n_t += xw_n
        lib.tanh(n_t, out=n_t)
        lib.subtract(h_prev, n_t, out=tmp)
        tmp *= rz_t[1]
        lib.add(n_t, tmp, out=h_t)
    hs = hb[1:, :, :hid]
    y = _empty(lib, (n, steps, hid), x)
    y[...] = hs.transpose(1, 0, 2) if lib is np else hs.permute(1, 0, 2)
    return y, (rz, nn, gh, hb, x1)


def gru_backward(grad_output, rz, nn, gh, hb, w_hh):
    """(dx̃ (T, N, 3H), dh̃ (T, N, 3H), dh_0) of GRU.bprop, or None.

    grad_output (N, T, H); rz, n, h̃, hb as gru_forward returned them; w_hh (3H, H): W_hh
    with the r and z rows halved.  What does not depend on the carried gradient is formed
    for all steps at once, before the loop:  a_n = (1 − z)·(1 − n²),  a_z = (h_{t−1} − n)·
    2z(1 − z),  a_r = h̃_n·2r(1 − r).  Per step, backwards (dh carried from step t+1):
    dh_t = g_t + dh,  da_n = dh_t·a_n,  dh̃ = (da_n·a_r, dh_t·a_z, da_n·r),
    dh = dh̃·W_hh + dh_t·z.  8 kernels a step; dx̃ = (dh̃_r, dh̃_z, da_n).
    """
    grad_output = _plain(grad_output)
    lib = _lib(grad_output, rz, nn, gh, hb, w_hh)
    if lib is None:
        return None
    steps, _, n, hid = rz.shape
    r_all, z_all = rz[:, 0], rz[:, 1]
    q, a_n = _empty(lib, rz.shape, rz), _empty(lib, nn.shape, rz)
    a_z, a_r = _empty(lib, nn.shape, rz), _empty(lib, nn.shape, rz)
    lib.subtract(rz, 1.0, out=q)                                     # 2·rz(1 − rz)
    q *= rz
    q *= -2.0
    lib.multiply(nn, nn, out=a_n)                                    # (1 − z)(1 − n²)
    a_n -= 1.0
    lib.subtract(z_all, 1.0, out=a_z)
    a_n *= a_z
    lib.subtract(hb[:steps, :, :hid], nn, out=a_z)
    a_z *= q[:, 1]
    lib.multiply(gh[..., 2 * hid:], q[:, 0], out=a_r)
    dxw, dgh = _empty(lib, (steps, n, 3 * hid), rz), _empty(lib, (steps, n, 3 * hid), rz)
    dh = lib.zeros_like(rz[0, 0])
    dh_t, tmp = _empty(lib, (n, hid), rz), _empty(lib, (n, hid), rz)
    per_step = list(zip(_steps(lib, grad_output.transpose(1, 0, 2) if lib is np
                               else grad_output.permute(1, 0, 2)),
                        _steps(lib, a_n), _steps(lib, a_r), _steps(lib, a_z),
                        _steps(lib, r_all), _steps(lib, z_all), _steps(lib, dgh),
                        _steps(lib, dxw[..., 2 * hid:])))
    for t in range(steps - 1, -1, -1):
        g_t, an_t, ar_t, az_t, r_t, z_t, dgh_t, dan = per_step[t]
        lib.add(g_t, dh, out=dh_t)
        lib.multiply(dh_t, an_t, out=dan)
        lib.multiply(dan, ar_t, out=dgh_t[:, :hid])
        lib.multiply(dh_t, az_t, out=dgh_t[:, hid:2 * hid])
        lib.multiply(dan, r_t, out=dgh_t[:, 2 * hid:])
        lib.matmul(dgh_t, w_hh, out=dh)
        lib.multiply(dh_t, z_t, out=tmp)
        dh += tmp
    dxw[..., :2 * hid] = dgh[..., :2 * hid]
    return dxw, dgh, dh
