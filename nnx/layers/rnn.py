from ._recurrent import Recurrent


class RNN(Recurrent):
    """Elman recurrent layer (tanh) over batch-first sequences: (N, T, n_in) → (N, T, H).

    ::

        fprop:  h_t = tanh(x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh)   (x·W_ihᵀ of all steps: one
                matmul);  the output holds every h_t
        bprop, backwards through time, dh carried from step t+1 (zeros after the last):
                da_t = (g_t + dh)·(1 − h_t²);   dh = da_t·W_hh
                dW_ih = Σ_t da_tᵀ·x_t,  dW_hh = Σ_t da_tᵀ·h_{t−1},  db_ih = db_hh = Σ_t da_t,
                dx_t = da_t·W_ih

    Array operations per time step: 3 forward, 3 backward.  The state is h: see
    ``set_state``, ``reset_state``, ``stateful``, ``last_state``, ``state_grad``.
    """

    gates = 1

    def fprop(self, x):
        xp, n, steps, (h,), x2 = self._begin(x)
        xw = x2 @ xp.matrix_transpose(self.weight_ih)
        xw += self.bias_ih + self.bias_hh
        xw = xp.reshape(xw, (n, steps, self.n_hidden))
        w_hh_t = xp.matrix_transpose(self.weight_hh)
        self.h0 = h
        hs = []
        for t in range(steps):
            h = xp.tanh(xw[:, t, :] + h @ w_hh_t)
            hs.append(h)
        return self._end(xp, hs, (h,))

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self._check_grad(grad_output)
        steps = self.x_shape[1]
        d = 1.0 - self.y * self.y
        dh = xp.zeros_like(self.h0)
        das = [None] * steps
        for t in range(steps - 1, -1, -1):
            da = (grad_output[:, t, :] + dh) * d[:, t, :]
            dh = da @ self.weight_hh
            das[t] = da
        self.state_grad = dh
        h_prev = xp.concat([self.h0[:, None, :], self.y[:, :-1, :]], axis=1)
        return self._weight_grads(xp, xp.stack(das, axis=1), None, h_prev,
                                  need_input_grad=need_input_grad)
