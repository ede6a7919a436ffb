from ._recurrent import Recurrent


class RNN(Recurrent):
    """Elman recurrent layer (tanh) over batch-first sequences: (N, T, n_in) → (N, T, H).

    ::

        fprop:  h_t = tanh(x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh)   (x·W_ihᵀ of all steps: one
                matmul);  the output holds every h_t
        bprop, backwards through time, dh carried from step t+1 (zeros after the last):
                da_t = (g_t + dh)·(1 − h_t²);   dh = da_t·W_hh
                [dW_ih | dW_hh | db] = dAᵀ·[x | h_{t−1} | 1] over all steps at once (dA: every
                da_t, stacked once),  db_ih = db_hh = db,  dx = dA·W_ih

    Array operations per time step: 3 forward, 3 backward.  The state is h: see
    ``set_state``, ``reset_state``, ``stateful``, ``last_state``, ``state_grad``.
    """

    gates = 1

    def fprop(self, x):
        xp, n, steps, (h,), x_rows = self._begin(x)
        xw = x_rows @ xp.matrix_transpose(self.weight_ih)
        xw += self.bias_ih + self.bias_hh
        xw = xp.reshape(xw, (steps, n, self.n_hidden))      # time-major: xw[t] is contiguous
        w_hh_t = self._rows_first(xp, self.weight_hh)
        self.h0 = h
        hs = []
        for t in range(steps):
            h = xp.tanh(xw[t, ...] + h @ w_hh_t)
            hs.append(h)
        return self._end(xp, hs, (h,))

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        steps = self.x_shape[1]
        d = 1.0 - self.y * self.y
        dh = xp.zeros_like(self.h0)
        das = [None] * steps
        for t in range(steps - 1, -1, -1):
            da = (grad_output[:, t, :] + dh) * d[:, t, :]
            dh = da @ self.weight_hh
            das[t] = da
        self.state_grad = dh
        return self._shared_grads(xp, das, need_input_grad=need_input_grad)
