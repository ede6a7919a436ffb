from nnx.backends import fast_rnn

from ..errors import StateError
from ._recurrent import Recurrent


class GRU(Recurrent):
    """Gated recurrent unit over batch-first sequences: (N, T, n_in) → (N, T, H), every h_t.

    ::

        fprop, per step t (gates in torch's order r, z, n; W_ih: (3H, n_in), W_hh: (3H, H)):
            x̃ = x_t·W_ihᵀ + b_ih  (all steps: one matmul);   h̃ = h_{t−1}·W_hhᵀ + b_hh
            r = σ(x̃_r + h̃_r),  z = σ(x̃_z + h̃_z)
            n = tanh(x̃_n + r·h̃_n)            (the reset gate scales W_hn·h + b_hn, as torch does)
            h_t = (1 − z)·n + z·h_{t−1}
        bprop, backwards through time, dh carried from step t+1:
            dh_t = g_t + dh;   da_n = dh_t·(1 − z)·(1 − n²)
            dh̃ = (da_n·h̃_n·r(1−r),  dh_t·(h_{t−1} − n)·z(1−z),  da_n·r)     (r, z, n blocks)
            dx̃ = (dh̃_r, dh̃_z, da_n);   carried: dh = dh̃·W_hh + dh_t·z
            dW_ih = Σ_t dx̃ᵀ·x_t,  db_ih = Σ dx̃,  dW_hh = Σ_t dh̃ᵀ·h_{t−1},  db_hh = Σ dh̃,
            dx_t = dx̃·W_ih

    Array operations per time step: 12 forward, 9 backward (σ is computed as ½·tanh(a/2) + ½,
    one tanh for r and z).  On NumPy arrays and CPU torch tensors the same formulas run in
    place (``out=``) in nnx.backends.fast_rnn: h̃ with its bias one matmul a step over rows
    [h_{t−1} | 1] laid out once, 11 forward and 8 backward kernels a step, no temporaries,
    and the weight gradients two matmuls over all steps.  The state is h: see
    ``set_state``, ``reset_state``, ``stateful``, ``last_state``, ``state_grad``.
    """

    gates = 3

    hb = None           # (T + 1, N, H + 1): [h_{t−1} | 1], where the fast path made it

    def fprop(self, x):
        xp, n, steps, (h,), x_rows = self._begin(x)
        hid = self.n_hidden
        s = self._row_scale(xp, (True, True, False))
        self.hb = None
        if fast_rnn.usable(x, h, self.weight_hh):           # NumPy, CPU torch: in place
            w_x = xp.concat([xp.matrix_transpose(self.weight_ih), self.bias_ih[None, :]]) * s
            w_h = xp.concat([xp.matrix_transpose(self.weight_hh), self.bias_hh[None, :]]) * s
            fast = fast_rnn.gru_forward(x, h, w_x, w_h)
            if fast is not None:
                y, (self.rz, self.n, self.gh, self.hb, self.x1) = fast
                self.h0, self.s = h, s
                hs = [y[:, t, :] for t in range(steps)]
                return self._end(xp, hs, (hs[-1],), y)
        w_ih = self.weight_ih * s[:, None]                  # rows of r and z halved
        w_hh_t = self._rows_first(xp, self.weight_hh * s[:, None])
        b_hh = self.bias_hh * s
        xw = x_rows @ xp.matrix_transpose(w_ih)
        xw += self.bias_ih * s
        xw = xp.reshape(xw, (steps, n, 3 * hid))            # time-major: xw[t] is contiguous
        self.h0 = h
        hs, rzs, ns, ghs = [], [], [], []
        for t in range(steps):
            gh = h @ w_hh_t + b_hh
            rz = xp.tanh(xw[t, :, :2 * hid] + gh[:, :2 * hid]) * 0.5 + 0.5
            gh_n = gh[:, 2 * hid:]
            nn = xp.tanh(xw[t, :, 2 * hid:] + rz[:, :hid] * gh_n)
            h = nn + rz[:, hid:] * (h - nn)
            hs.append(h)
            rzs.append(rz)
            ns.append(nn)
            ghs.append(gh_n)
        self.rz, self.n, self.gh_n = (xp.stack(a, axis=0) for a in (rzs, ns, ghs))
        self.s, self.w_ih, self.w_hh = s, w_ih, w_hh_t
        return self._end(xp, hs, (h,))

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        hid, steps = self.n_hidden, self.x_shape[1]
        if self.hb is not None:                             # fprop took the fast path
            fast = fast_rnn.gru_backward(grad_output, self.rz, self.n, self.gh, self.hb,
                                         self.weight_hh * self.s[:, None])
            if fast is not None:
                return self._fast_grads(xp, *fast, need_input_grad)
            raise StateError(f"{self!r}.bprop: grad_output ({type(grad_output).__name__}) "
                             f"does not fit the arrays this fprop ran on; pass an array of "
                             f"the input's kind, device and dtype")
        rz, nn = self.rz, self.n
        r, z = rz[..., :hid], rz[..., hid:]
        h_prev = xp.reshape(self._h_prev(xp), (steps, -1, hid))   # time-major, as rz, n
        d_rz = 2.0 * rz * (1.0 - rz)                     # d(r, z)/da with a's rows halved
        a_n = (1.0 - z) * (1.0 - nn * nn)                # dh_t/da_n
        a_z = (h_prev - nn) * d_rz[..., hid:]            # dh_t/da_z
        a_r = self.gh_n * d_rz[..., :hid]                # da_n/da_r
        w_hh = xp.matrix_transpose(self.w_hh)
        dh = xp.zeros_like(self.h0)
        dghs, dans = [None] * steps, [None] * steps
        for t in range(steps - 1, -1, -1):
            dh_t = grad_output[:, t, :] + dh
            da_n = dh_t * a_n[t, ...]
            dgh = xp.concat([da_n * a_r[t, ...], dh_t * a_z[t, ...], da_n * r[t, ...]],
                            axis=-1)
            dh = dgh @ w_hh + dh_t * z[t, ...]
            dghs[t], dans[t] = dgh, da_n
        self.state_grad = dh
        dgh = xp.stack(dghs, axis=0)
        dxw = xp.concat([dgh[..., :2 * hid], xp.stack(dans, axis=0)], axis=-1)
        return self._split_grads(xp, dxw, dgh, self.s, need_input_grad, self.w_ih)

    def _fast_grads(self, xp, dxw, dgh, dh, need_input_grad):
        """The weight gradients from the fast path's dx̃, dh̃ (T, N, 3H): [dW_ih | db_ih] =
        dx̃ᵀ·[x | 1] and [dW_hh | db_hh] = dh̃ᵀ·[h_{t−1} | 1], one matmul each over all
        steps (the rows the fast path laid out); returns dx (or None)."""
        n, steps = self.x_shape[0], self.x_shape[1]
        n_in, hid, s = self.n_in, self.n_hidden, self.s
        gx = xp.reshape(dxw, (steps * n, 3 * hid))
        gh = xp.reshape(dgh, (steps * n, 3 * hid))
        x1 = xp.reshape(self.x1, (steps * n, n_in + 1))
        hb = xp.reshape(self.hb[:steps, ...], (steps * n, hid + 1))
        dwx = xp.matrix_transpose((xp.matrix_transpose(x1) @ gx) * s)
        dwh = xp.matrix_transpose((xp.matrix_transpose(hb) @ gh) * s)
        self.dweight_ih, self.dbias_ih = dwx[:, :n_in], dwx[:, n_in]
        self.dweight_hh, self.dbias_hh = dwh[:, :hid], dwh[:, hid]
        self.state_grad = dh
        if not need_input_grad:
            return None
        dx = gx @ (self.weight_ih * s[:, None])
        return xp.permute_dims(xp.reshape(dx, (steps, n, n_in)), (1, 0, 2))
