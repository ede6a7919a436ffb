from ._recurrent import Recurrent


class LSTM(Recurrent):
    """Long short-term memory over batch-first sequences: (N, T, n_in) → (N, T, H), every h_t.

    ::

        fprop, per step t (gates in torch's order i, f, g, o; W_ih: (4H, n_in), W_hh: (4H, H)):
            a_t = x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh          (x·W_ihᵀ of all steps: one matmul)
            i, f, o = σ(a_i), σ(a_f), σ(a_o);   g = tanh(a_g)
            c_t = f·c_{t−1} + i·g;   h_t = o·tanh(c_t)
        bprop, backwards through time, dh carried from step t+1 (and dc likewise):
            dh_t = g_t + dh;   dc_t = dc + dh_t·o·(1 − tanh²c_t)
            da_i = dc_t·g·i(1−i),  da_f = dc_t·c_{t−1}·f(1−f),  da_g = dc_t·i·(1−g²),
            da_o = dh_t·tanh c_t·o(1−o)
            carried: dh = da_t·W_hh,  dc = dc_t·f
            dW_ih = Σ_t da_tᵀ·x_t,  dW_hh = Σ_t da_tᵀ·h_{t−1},  db_ih = db_hh = Σ da_t,  dx_t = da_t·W_ih

    Array operations per time step: 10 forward, 7 backward (σ is computed as ½·tanh(a/2) + ½,
    so one tanh covers the four gates).  The state is (h, c): see ``set_state``,
    ``reset_state``, ``stateful``, ``last_state`` and ``state_grad`` (nnx.layers._recurrent).
    """

    gates = 4
    state_names = ("h", "c")

    def fprop(self, x):
        xp, n, steps, (h, c), x2 = self._begin(x)
        hid = self.n_hidden
        s = self._row_scale(xp, (True, True, False, True))
        m = 1.0 - s
        w_ih = self.weight_ih * s[:, None]                  # rows of σ gates halved
        w_hh_t = xp.matrix_transpose(self.weight_hh * s[:, None])
        xw = x2 @ xp.matrix_transpose(w_ih)
        xw += (self.bias_ih + self.bias_hh) * s
        xw = xp.reshape(xw, (n, steps, 4 * hid))
        self.h0, self.c0 = h, c
        hs, zs, cs = [], [], []
        for t in range(steps):
            z = xp.tanh(xw[:, t, :] + h @ w_hh_t) * s + m   # i, f, o = σ(a), g = tanh(a)
            c = z[:, hid:2 * hid] * c + z[:, :hid] * z[:, 2 * hid:3 * hid]
            h = z[:, 3 * hid:] * xp.tanh(c)
            hs.append(h)
            zs.append(z)
            cs.append(c)
        self.z, self.c = xp.stack(zs, axis=1), xp.stack(cs, axis=1)
        self.s, self.m, self.w_ih, self.w_hh = s, m, w_ih, w_hh_t
        return self._end(xp, hs, (h, c))

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        hid, steps = self.n_hidden, self.x_shape[1]
        z, c, s = self.z, self.c, self.s
        u = (z - self.m) / s                                 # the tanh of each gate
        tc = xp.tanh(c)
        c_prev = xp.concat([self.c0[:, None, :], c[:, :-1, :]], axis=1)
        dz = (s - s * u * u) * xp.concat([z[..., 2 * hid:3 * hid], c_prev, z[..., :hid], tc],
                                          axis=-1)          # d(i, f, g, o)/da, times a factor
        e = z[..., 3 * hid:] * (1.0 - tc * tc)               # dc_t/dh_t
        f = z[..., hid:2 * hid]
        w_hh = xp.matrix_transpose(self.w_hh)
        dh = xp.zeros_like(self.h0)
        dc = xp.zeros_like(self.c0)
        das = [None] * steps
        for t in range(steps - 1, -1, -1):
            dh_t = grad_output[:, t, :] + dh
            dc_t = dc + dh_t * e[:, t, :]
            da = xp.concat([dc_t, dc_t, dc_t, dh_t], axis=-1) * dz[:, t, :]
            dh = da @ w_hh
            dc = dc_t * f[:, t, :]
            das[t] = da
        self.state_grad = (dh, dc)
        da = xp.stack(das, axis=1)
        h_prev = xp.concat([self.h0[:, None, :], self.y[:, :-1, :]], axis=1)
        return self._weight_grads(xp, da, None, h_prev, s, need_input_grad, self.w_ih)
