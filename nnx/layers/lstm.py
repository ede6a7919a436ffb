from nnx.backends import fast_rnn

from ..errors import StateError
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
            dA (every step's da_t, stacked once):  [dW_ih | dW_hh | db] = dAᵀ·[x | h_{t−1} | 1]
            (one matmul over all steps),  db_ih = db_hh = db,  dx = dA·W_ih

    Array operations per time step: 10 forward, 14 backward (σ is computed as ½·tanh(a/2) + ½,
    so one tanh covers the four gates; the gates' derivatives are formed inside the backward
    loop, on one step's arrays); none of them reads a value back to the host.  On NumPy
    arrays and CPU torch tensors the same formulas run in place (``out=``) in
    nnx.backends.fast_rnn, one matmul a step for a_t ([x_t | h_{t−1} | 1]·[W_ih | W_hh | b]ᵀ),
    9 forward and 15 backward kernels a step on NumPy, 8 and 5 on torch, no temporaries.
    The state is (h, c):
    see ``set_state``, ``reset_state``, ``stateful``, ``last_state`` and ``state_grad``
    (nnx.layers._recurrent).
    """

    gates = 4
    state_names = ("h", "c")

    def fprop(self, x):
        xp, n, steps, (h, c), x_rows = self._begin(x)
        hid = self.n_hidden
        self.h0, self.c0 = h, c
        if fast_rnn.usable(x, h, c, self.weight_hh):       # NumPy, CPU torch: in place
            fast = fast_rnn.lstm_forward(x, h, c, self._fast_w1(xp))
            if fast is not None:
                y, (self.u, self.z, self.c, self.tc, self.xh1) = fast
                hs = [y[:, t, :] for t in range(steps)]
                return self._end(xp, hs, (hs[-1], self.c[-1]), y)
        s = self._row_scale(xp, (True, True, False, True))
        w_ih = self.weight_ih * s[:, None]                  # rows of σ gates halved
        b = (self.bias_ih + self.bias_hh) * s
        self.xh1 = None
        w_hh_t = self._rows_first(xp, self.weight_hh * s[:, None])
        xw = x_rows @ xp.matrix_transpose(w_ih) + b
        xw = xp.reshape(xw, (steps, n, 4 * hid))            # time-major: xw[t] is contiguous
        hs, us, zs, cs, tcs = [], [], [], [], []
        for t in range(steps):
            u = xp.tanh(xw[t, ...] + h @ w_hh_t)            # tanh of each gate's (scaled) a
            z = u * 0.5 + 0.5                               # i, f, o = σ(a) (z's g block unused)
            c = z[:, hid:2 * hid] * c + z[:, :hid] * u[:, 2 * hid:3 * hid]     # g = tanh(a_g)
            tc = xp.tanh(c)
            h = z[:, 3 * hid:] * tc
            hs.append(h)
            us.append(u)
            zs.append(z)
            cs.append(c)
            tcs.append(tc)
        self.u, self.z, self.c, self.tc = us, zs, cs, tcs
        return self._end(xp, hs, (h, c))

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        hid, steps = self.n_hidden, self.x_shape[1]
        # the loop's da_t leaves out the gates' constant factors: ¼ on σ rows (σ'(a) =
        # ¼(1 − u²)), 1 on g; they go into W_hh, the weight gradients and dx, once a call
        if self.xh1 is not None:                            # fprop took the fast path
            s2 = self._row_scale(xp, (True, True, True, False), 0.25)   # gates o, i, f, g
            fast = fast_rnn.lstm_backward(grad_output, self.u, self.z, self.c, self.tc,
                                          self._last_first(xp, self.weight_hh) * s2[:, None])
            if fast is not None:
                das, dh, dc = fast
                self.state_grad = (dh, dc)
                return self._shared_grads(xp, das, s2, need_input_grad, last_first=True)
            raise StateError(f"{self!r}.bprop: grad_output ({type(grad_output).__name__}) "
                             f"does not fit the arrays this fprop ran on; pass an array of "
                             f"the input's kind, device and dtype")
        s2 = self._row_scale(xp, (True, True, False, True), 0.25)
        w_hh = self.weight_hh * s2[:, None]
        dh = xp.zeros_like(self.h0)
        dc = xp.zeros_like(self.c0)
        das = [None] * steps
        for t in range(steps - 1, -1, -1):
            z, u, tc = self.z[t], self.u[t], self.tc[t]
            c_prev = self.c[t - 1] if t else self.c0
            dh_t = grad_output[:, t, :] + dh
            dc_t = dc + dh_t * z[:, 3 * hid:] * (1.0 - tc * tc)
            da = (xp.concat([dc_t, dc_t, dc_t, dh_t], axis=-1)
                  * xp.concat([u[:, 2 * hid:3 * hid], c_prev, z[:, :hid], tc], axis=-1)
                  * (1.0 - u * u))
            dh = da @ w_hh
            dc = dc_t * z[:, hid:2 * hid]
            das[t] = da
        self.state_grad = (dh, dc)
        return self._shared_grads(xp, das, s2, need_input_grad)

    def _fast_w1(self, xp):
        """[W_ih | W_hh | b_ih + b_hh]ᵀ (n_in + H + 1, 4H) for fast_rnn.lstm_forward: its gate
        blocks in the order o, i, f, g (the last first), the σ gates' columns halved."""
        w = xp.concat([xp.matrix_transpose(self.weight_ih), xp.matrix_transpose(self.weight_hh),
                       (self.bias_ih + self.bias_hh)[None, :]], axis=0)
        s = self._row_scale(xp, (True, True, True, False))
        return self._last_first(xp, w, axis=1) * s
