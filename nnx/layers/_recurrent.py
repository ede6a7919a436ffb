"""What RNN, LSTM and GRU share: parameters in PyTorch's layout, input checks, the state.

Parameters (G gates: 1 for RNN, 4 for LSTM, 3 for GRU), exchangeable with torch.nn.RNN/LSTM/GRU
as they are: ``weight_ih`` (G·H, n_in), ``weight_hh`` (G·H, H), ``bias_ih`` (G·H,),
``bias_hh`` (G·H,), all drawn from U(−1/√H, 1/√H) on the host, as torch draws them.

State.  Every fprop starts from an initial state: zeros, or the one given by ``set_state``
(kept for every later fprop until ``reset_state()``).  With ``stateful=True`` the last state
of each fprop becomes the initial state of the next (truncated backprop through time: the
gradient stops at the batch boundary).  ``last_state`` is the last fprop's final state;
``state_grad`` the gradient of the loss with respect to its initial state, after bprop.
"""

import math

from nnx import backends

from .. import _checks
from ..device import check_same_device, short_dtype
from ..errors import ArgumentTypeError, DTypeError, ShapeError
from ..module import Module


class Recurrent(Module):
    param_names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    gates = 1
    state_names = ("h",)
    xh1 = None          # (T + 1, N, n_in + H + 1): [x_t | h_{t−1} | 1], where a fast path made it

    def __init__(self, n_in, n_hidden, *, stateful=False, dtype=None, device=None):
        name = type(self).__name__
        self.n_in = _checks.positive_int(name, "n_in", n_in)
        self.n_hidden = _checks.positive_int(name, "n_hidden", n_hidden)
        if not isinstance(stateful, bool):
            raise ArgumentTypeError(f"{name}: stateful must be True or False, got {stateful!r}")
        self.stateful = stateful
        rows, k = self.gates * self.n_hidden, 1.0 / math.sqrt(self.n_hidden)
        host = backends.host
        self.init_params(dtype, device,
                          weight_ih=host.uniform((rows, self.n_in), -k, k, "float64"),
                          weight_hh=host.uniform((rows, self.n_hidden), -k, k, "float64"),
                          bias_ih=host.uniform((rows,), -k, k, "float64"),
                          bias_hh=host.uniform((rows,), -k, k, "float64"))
        self._state = None          # the initial state of the next fprop; None: zeros
        self.last_state = self.state_grad = None

    def config(self):
        return {"_n_in": self.n_in, "_n_hidden": self.n_hidden, "stateful": self.stateful}

    # -- the state -------------------------------------------------------------------------
    def set_state(self, *state):
        """Start the following fprops from ``state`` ((h,) or, for an LSTM, (h, c)), each of
        shape (batch, n_hidden), on the parameters' device and dtype."""
        names = self.state_names
        if len(state) != len(names):
            raise ArgumentTypeError(f"{self!r}.set_state: takes {len(names)} array"
                                    f"{'s' if len(names) > 1 else ''} ({', '.join(names)}), "
                                    f"got {len(state)}")
        shapes = [tuple(getattr(s, "shape", ())) for s in state]
        for name, s, shape in zip(names, state, shapes):
            if len(shape) != 2 or shape[1] != self.n_hidden or shape != shapes[0]:
                raise ShapeError(f"{self!r}.set_state: {name} has shape {shape}, expected "
                                 f"(batch, {self.n_hidden}) for every state array")
            check_same_device(f"{self!r}.set_state", s, self.weight_hh, name)
            if s.dtype != self.weight_hh.dtype:
                raise DTypeError(f"{self!r}.set_state: {name} dtype {short_dtype(s.dtype)} "
                                 f"differs from the parameters' "
                                 f"{short_dtype(self.weight_hh.dtype)}")
        self._state = tuple(state)

    def reset_state(self):
        """The next fprop starts from zeros (and, if stateful, carries on from there)."""
        self._state = None

    def to(self, device=None, dtype=None):
        self._state = None          # a state on the old device or dtype would not fit
        return super().to(device, dtype)

    # -- helpers for fprop -----------------------------------------------------------------
    def _begin(self, x):
        """(xp, N, T, initial state tuple, time-major input rows (T·N, n_in)) after checking
        x."""
        shape = tuple(x.shape)
        if len(shape) != 3 or shape[2] != self.n_in:
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, expected (batch, time, "
                             f"{self.n_in}) (batch first)")
        xp = self.check_array(x)
        n, steps = shape[0], shape[1]
        if steps == 0:
            raise ShapeError(f"{self!r}.fprop: input of shape {shape} has no time steps; "
                             f"give sequences of length 1 or more")
        if self._state is None:
            zeros = xp.zeros((n, self.n_hidden), dtype=self.weight_hh.dtype,
                             device=self.device.native)
            state = (zeros,) * len(self.state_names)
        else:
            state = self._state
            if tuple(state[0].shape)[0] != n:
                carried = "carried" if self.stateful else "given"
                raise ShapeError(f"{self!r}.fprop: the {carried} state has batch size "
                                 f"{tuple(state[0].shape)[0]} but the input {shape} has {n}; "
                                 f"call reset_state() before a batch of another size")
        self.x_shape = shape
        # time-major rows (T·N, n_in): step t's rows are then one contiguous block
        self.x_rows = xp.reshape(xp.permute_dims(x, (1, 0, 2)), (steps * n, self.n_in))
        return xp, n, steps, state, self.x_rows

    def _end(self, xp, hs, last, y=None):
        """The output (N, T, H) from the list of hidden states (or ``y``, already made);
        keep the last state."""
        self.last_state = last if len(last) > 1 else last[0]
        if self.stateful:
            self._state = last
        self.hs = hs
        self.y = xp.stack(hs, axis=1) if y is None else y
        self.out_shape = tuple(self.y.shape)
        return self.y

    def _h_prev(self, xp):
        """(T·N, H): the state each step started from, h_{t−1}, time-major."""
        n, steps = self.x_shape[0], self.x_shape[1]
        return xp.reshape(xp.stack([self.h0] + self.hs[:-1], axis=0), (steps * n, self.n_hidden))

    def _shared_grads(self, xp, das, scale=None, need_input_grad=True, last_first=False):
        """dW_ih, dW_hh, db_ih, db_hh where both projections have the same pre-activation
        gradient (RNN, LSTM), from the list ``das`` of every step's (N, G·H) (or that
        stack, (T, N, G·H), already made): stacked once
        into dA (T·N, G·H), then ONE matmul dAᵀ·[x | h_{t−1} | 1] gives all four; the rows
        are multiplied by ``scale`` (G·H,), the factor da_t left out; returns dx (or None).
        ``last_first``: dA's (and ``scale``'s) gate blocks are in the order of
        ``_last_first`` (the LSTM's fast path: o, i, f, g)."""
        n, steps = self.x_shape[0], self.x_shape[1]
        n_in, hid, rows = self.n_in, self.n_hidden, self.gates * self.n_hidden
        da = xp.reshape(das if not isinstance(das, list) else xp.stack(das, axis=0),
                        (steps * n, rows))
        if self.xh1 is not None:                                # laid out by a fast path
            xh1 = xp.reshape(self.xh1[:steps, ...], (steps * n, n_in + hid + 1))
        else:
            ones = xp.ones((steps * n, 1), dtype=da.dtype, device=self.device.native)
            xh1 = xp.concat([self.x_rows, self._h_prev(xp), ones], axis=1)
        # [x | h | 1]ᵀ·dA: the transpose of dAᵀ·[x | h | 1], ~10% faster on OpenBLAS
        dw = xp.matrix_transpose(xh1) @ da                      # (n_in + H + 1, G·H)
        if scale is not None:
            dw = dw * scale
        if last_first:                                          # back to the layer's order
            dw = xp.concat([dw[:, hid:], dw[:, :hid]], axis=1)
        dw = xp.matrix_transpose(dw)
        self.dweight_ih, self.dweight_hh = dw[:, :n_in], dw[:, n_in:n_in + hid]
        self.dbias_ih = dw[:, n_in + hid]
        self.dbias_hh = xp.asarray(self.dbias_ih, copy=True)    # its own array
        if not need_input_grad:
            return None
        w_ih = self._last_first(xp, self.weight_ih) if last_first else self.weight_ih
        w_ih = w_ih if scale is None else w_ih * scale[:, None]
        dx = da @ w_ih                                          # (T·N, n_in)
        return xp.permute_dims(xp.reshape(dx, (steps, n, n_in)), (1, 0, 2))

    def _split_grads(self, xp, da_x, da_h, scale, need_input_grad, w_ih):
        """As ``_shared_grads`` where the projections' gradients differ (GRU): da_x, da_h
        (T, N, G·H) of the input and the recurrent projection; two matmuls, two sums."""
        n, steps = self.x_shape[0], self.x_shape[1]
        rows = self.gates * self.n_hidden
        gx = xp.reshape(da_x, (steps * n, rows))
        gh = xp.reshape(da_h, (steps * n, rows))
        self.dweight_ih = (xp.matrix_transpose(gx) @ self.x_rows) * scale[:, None]
        self.dweight_hh = (xp.matrix_transpose(gh) @ self._h_prev(xp)) * scale[:, None]
        self.dbias_ih = xp.sum(gx, axis=0) * scale
        self.dbias_hh = xp.sum(gh, axis=0) * scale
        if not need_input_grad:
            return None
        return xp.permute_dims(xp.reshape(gx @ w_ih, (steps, n, self.n_in)), (1, 0, 2))

    def _last_first(self, xp, w, axis=0):
        """``w`` with its last gate block (H rows, or columns with ``axis=1``) moved first:
        the LSTM's i, f, g, o become o, i, f, g."""
        hid = self.n_hidden
        if axis == 0:
            return xp.concat([w[-hid:, ...], w[:-hid, ...]], axis=0)
        return xp.concat([w[:, -hid:], w[:, :-hid]], axis=1)

    @staticmethod
    def _rows_first(xp, w):
        """wᵀ as a row-major copy (flattening a transposed matrix copies it in row order): the
        per-step h·W_hhᵀ is ~20% faster with it than with the transposed view, on OpenBLAS
        and torch's CPU kernels alike; one copy of a weight-sized matrix per fprop."""
        wt = xp.matrix_transpose(w)
        return xp.reshape(xp.reshape(wt, (-1,)), tuple(wt.shape))

    def _row_scale(self, xp, sigmoid_gates, value=0.5):
        """(G·H,): ``value`` on the rows of sigmoid gates, 1 elsewhere.  σ(a) = ½·tanh(a/2) + ½,
        so one tanh over a step's pre-activations (those rows halved) serves every gate."""
        h = self.n_hidden
        values = [value if sig else 1.0 for sig in sigmoid_gates for _ in range(h)]
        return xp.asarray(values, dtype=self.weight_hh.dtype, device=self.device.native)
