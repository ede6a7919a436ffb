from nnx import backends

from .. import _checks
from ..device import short_dtype
from ..errors import ShapeError
from ..module import Module


class LayerNorm(Module):
    """Layer normalisation over the last axis: each row (..., features) on its own.

    ::

        fprop:  μ = mean x,  σ² = mean (x − μ)² (biased),  r = 1/√(σ² + eps),  x̂ = (x − μ)·r,
                y = γ·x̂ + β                          (means over the last axis, F = features)
        bprop:  dγ = Σ g·x̂,  dβ = Σ g  (sums over every leading axis);
                with ĝ = g·γ:  dx = r·(ĝ − mean ĝ − x̂·mean(ĝ·x̂))

    Works on (N, F), (N, T, F) or any leading axes; the same in training and eval.  float16
    input is normalised in float32 (its statistics would lose digits) and comes out float16.
    Parameters γ = 1, β = 0, as torch.nn.LayerNorm's weight and bias.
    """

    param_names = ("gamma", "beta")

    def __init__(self, features, eps=1e-5, *, dtype=None, device=None):
        self.features = _checks.positive_int("LayerNorm", "features", features)
        self.eps = _checks.positive_number("LayerNorm", "eps", eps)
        c = (self.features,)
        self.init_params(dtype, device, gamma=backends.host.full(c, 1.0, "float64"),
                          beta=backends.host.full(c, 0.0, "float64"))

    def config(self):
        return {"_features": self.features} if self.eps == 1e-5 else \
            {"_features": self.features, "eps": self.eps}

    def fprop(self, x):
        shape = tuple(x.shape)
        if len(shape) < 2 or shape[-1] != self.features:
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, expected "
                             f"(batch, ..., {self.features}) with the features last")
        xp = self.check_array(x)
        self.half = x.dtype if short_dtype(x.dtype) == "float16" else None
        gamma, beta = self.gamma, self.beta
        if self.half is not None:                               # statistics in float32
            x, gamma, beta = (xp.astype(a, xp.float32) for a in (x, gamma, beta))
        xc = x - xp.mean(x, axis=-1, keepdims=True)
        self.r = 1.0 / xp.sqrt(xp.mean(xc * xc, axis=-1, keepdims=True) + self.eps)
        self.xhat = xc * self.r
        y = self.xhat * gamma
        y += beta
        if self.half is not None:
            y = xp.astype(y, self.half)
        self.out_shape = shape
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        g = xp.astype(grad_output, xp.float32) if self.half is not None else grad_output
        axes = tuple(range(g.ndim - 1))
        dgamma = xp.sum(g * self.xhat, axis=axes)
        dbeta = xp.sum(g, axis=axes)
        self.dgamma, self.dbeta = (xp.astype(d, self.half) if self.half is not None else d
                                   for d in (dgamma, dbeta))
        if not need_input_grad:
            return None
        gh = g * (xp.astype(self.gamma, xp.float32) if self.half is not None else self.gamma)
        dx = gh - xp.mean(gh, axis=-1, keepdims=True)
        dx -= self.xhat * xp.mean(gh * self.xhat, axis=-1, keepdims=True)
        dx *= self.r
        return xp.astype(dx, self.half) if self.half is not None else dx
