import math

from nnx import backends

from .. import _checks
from ..errors import ArgumentError, ShapeError, StateError
from ..module import Module


class MultiHeadAttention(Module):
    """Multi-head self-attention over sequences (N, T, d_model), scaled dot-product.

    ::

        fprop, with H heads of size D = d_model / H and every head at once (batched matmuls):
            [Q | K | V] = x·W_qkv + b_qkv          one matmul, W_qkv: (d_model, 3·d_model)
            Q, K, V as (N, H, T, D);   S = (Q/√D)·Kᵀ  (−∞ above the diagonal if causal)
            P = softmax(S) along the last axis;  O = P·V, heads joined back to (N, T, d_model)
            y = O·W_out + b_out
        bprop, with g = dL/dy:
            dW_out = Oᵀ·g,  db_out = Σ g,  dO = g·W_outᵀ
            dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P·(dP − Σ_j dP·P)   (softmax's Jacobian, per row)
            dQ = dS·K/√D,  dK = dSᵀ·(Q/√D)

        dW_qkv = xᵀ·[dQ | dK | dV],  db_qkv = Σ [dQ | dK | dV],  dx = [dQ | dK | dV]·W_qkvᵀ

    ``causal=True``: position t attends to positions <= t only (language models).  Parameter
    layout as torch.nn.MultiheadAttention(batch_first=True): in_proj_weight = W_qkvᵀ,
    in_proj_bias = b_qkv, out_proj.weight = W_outᵀ, out_proj.bias = b_out.  Each of the
    four d_model × d_model blocks ~ N(0, 1/d_model) (Linear's rule), biases 0.
    """

    param_names = ("W_qkv", "b_qkv", "W_out", "b_out")

    def __init__(self, d_model, heads, causal=False, *, dtype=None, device=None):
        where = "MultiHeadAttention"
        self.d_model = _checks.positive_int(where, "d_model", d_model)
        self.heads = _checks.positive_int(where, "heads", heads)
        if self.d_model % self.heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            raise ArgumentError(f"{where}: heads must divide d_model = {self.d_model} (each "
                                f"head gets d_model / heads features), got {heads!r}; use "
                                f"one of {', '.join(map(str, divisors[:12]))}")
        self.causal = _checks.instance(where, "causal", causal, bool, "True or False")
        self.head_size = self.d_model // self.heads
        d, std = self.d_model, math.sqrt(1.0 / self.d_model)
        host = backends.host
        self.init_params(dtype, device, W_qkv=host.normal((d, 3 * d), std, "float64"),
                          b_qkv=host.full((3 * d,), 0.0, "float64"),
                          W_out=host.normal((d, d), std, "float64"),
                          b_out=host.full((d,), 0.0, "float64"))
        self._mask = None

    def config(self):
        args = {"_d_model": self.d_model, "_heads": self.heads}
        return {**args, "causal": True} if self.causal else args

    def _causal_mask(self, xp, T, like):
        """(allowed, −∞): (T, T) arrays, allowed[t, u] = u <= t; made once per length."""
        dev = backends.device_of(like)
        key = (T, like.dtype, dev)
        if self._mask is None or self._mask[0] != key:
            i = xp.arange(T, device=dev.native)
            allowed = xp.reshape(i, (T, 1)) >= xp.reshape(i, (1, T))
            self._mask = (key, allowed, xp.full((T, T), -math.inf, dtype=like.dtype,
                                                device=dev.native))
        return self._mask[1], self._mask[2]

    @property
    def attention(self):
        """P of the last fprop, (N, heads, T, T): row t of head h holds the weights position
        t gave every position (each row sums to 1; zero above the diagonal if causal).  The
        array bprop uses, so read it, don't change it."""
        p = getattr(self, "p", None)
        if p is None:
            raise StateError(f"{self!r}.attention: no attention computed yet; run fprop(x) "
                             f"first")
        return p

    def fprop(self, x):
        shape = tuple(x.shape)
        d, H, D = self.d_model, self.heads, self.head_size
        if len(shape) != 3 or shape[2] != d:
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, expected "
                             f"(batch, steps, {d})")
        if shape[1] == 0:
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, a sequence of 0 "
                             f"steps; attention needs at least one step to attend to")
        xp = self.check_array(x)
        N, T = shape[0], shape[1]
        self.x = x
        qkv = x @ self.W_qkv
        qkv += self.b_qkv
        qkv = xp.permute_dims(xp.reshape(qkv, (N, T, 3, H, D)), (2, 0, 3, 1, 4))
        self.qs = qkv[0, ...] * (1.0 / math.sqrt(D))               # (N, H, T, D)
        self.k, self.v = qkv[1, ...], qkv[2, ...]
        s = self.qs @ xp.matrix_transpose(self.k)             # (N, H, T, T)
        if self.causal:
            allowed, minus_inf = self._causal_mask(xp, T, x)
            s = xp.where(allowed, s, minus_inf)
        s -= xp.max(s, axis=-1, keepdims=True)
        p = xp.exp(s)
        p /= xp.sum(p, axis=-1, keepdims=True)
        self.p = p
        o = xp.reshape(xp.permute_dims(p @ self.v, (0, 2, 1, 3)), (N, T, d))
        self.o = o
        y = o @ self.W_out
        y += self.b_out
        self.out_shape = shape
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        N, T, d = self.out_shape
        H, D = self.heads, self.head_size
        g2 = xp.reshape(grad_output, (N * T, d))
        self.dW_out = xp.reshape(self.o, (N * T, d)).T @ g2
        self.db_out = xp.sum(g2, axis=0)
        do = xp.permute_dims(xp.reshape(g2 @ self.W_out.T, (N, T, H, D)), (0, 2, 1, 3))
        p = self.p
        dv = xp.matrix_transpose(p) @ do
        ds = do @ xp.matrix_transpose(self.v)                 # dP, then dS in place
        ds -= xp.sum(ds * p, axis=-1, keepdims=True)
        ds *= p
        dq = ds @ self.k
        dq *= 1.0 / math.sqrt(D)
        dk = xp.matrix_transpose(ds) @ self.qs
        dqkv = xp.reshape(xp.permute_dims(xp.stack([dq, dk, dv]), (1, 3, 0, 2, 4)),
                          (N * T, 3 * d))
        self.dW_qkv = xp.reshape(self.x, (N * T, d)).T @ dqkv
        self.db_qkv = xp.sum(dqkv, axis=0)
        if not need_input_grad:
            return None
        return xp.reshape(dqkv @ self.W_qkv.T, (N, T, d))
