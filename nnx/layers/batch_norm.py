from nnx import backends
from nnx.backends import fast, fused

from .. import _checks
from ..device import dtype_name, namespace
from ..errors import ArgumentError, ShapeError
from ..module import Module
from ._im2col import _on_device


class BatchNorm(Module):
    """Batch normalisation of (N, C) rows or (N, C, H, W) images, per feature / channel c.

    ::

        Statistics over the m = N (or N·H·W) values of each c:
        training:  μ = mean x,  σ² = mean (x − μ)² (biased),  x̂ = (x − μ)/√(σ² + eps),
                   y = γ·x̂ + β;   running = (1 − momentum)·running + momentum·batch
                   (running_var takes the unbiased σ²·m/(m − 1))
        eval:      x̂ = (x − running_mean)/√(running_var + eps),  y = γ·x̂ + β
        bprop:     dγ = Σ g·x̂,  dβ = Σ g;  training: dx = γ/√(σ² + eps)·(g − (dβ + x̂·dγ)/m)
                   (the full gradient, through μ and σ²);  eval: dx = γ/√(running_var + eps)·g

    A training step costs 8 array operations forward and 9 backward, whatever the batch and
    image size (on torch 8 and 7: a·b + c and g + k·dx are single kernels there, and on the
    CPU the variance is the mean of the centred squares, torch.var being slow there).  σ² is
    the two-pass variance (of x − μ), not E[x²] − μ², which cancels
    catastrophically: on float32 images of mean 100 and variance 1 its error is 6e-3 of σ²
    (0.5 at mean 1000) against 3e-7 for the two-pass form.  The running statistics are not
    updated by every step: each step records its (μ, σ²), and every 16th step, or reading
    either buffer, folds all recorded steps in at once (4 operations), the same exponential
    averages up to rounding.

    Parameters γ = 1, β = 0; buffers running_mean = 0, running_var = 1 (saved by checkpoints,
    moved by ``to()``, never trained).  In float16 the statistics (μ, σ², x̂ and the running
    buffers) are computed and kept in float32, as the losses do: (x − μ)² overflows float16
    beyond ``|x − μ| = 256``; the output and the gradients stay float16.
    """

    param_names = ("gamma", "beta")
    buffer_names = ("running_mean", "running_var")

    def __init__(self, n_features, *, momentum=0.1, eps=1e-5, dtype=None, device=None):
        self.n_features = _checks.positive_int("BatchNorm", "n_features", n_features)
        self.momentum = _checks.number("BatchNorm", "momentum", momentum)
        if not 0.0 <= self.momentum <= 1.0:
            raise ArgumentError(f"BatchNorm: momentum must lie in [0, 1], got {momentum!r}")
        self.eps = _checks.positive_number("BatchNorm", "eps", eps)
        c = (self.n_features,)
        host = backends.host
        self.init_params(dtype, device, gamma=host.full(c, 1.0, "float64"),
                          beta=host.full(c, 0.0, "float64"))
        xp = self.device.xp
        acc = _statistics_dtype(xp, self.gamma.dtype)
        self.running_mean = xp.astype(backends.from_host(host.full(c, 0.0, "float64"),
                                                         self.device), acc)
        self.running_var = xp.astype(backends.from_host(host.full(c, 1.0, "float64"),
                                                        self.device), acc)

    def to(self, device=None, dtype=None):
        super().to(device, dtype)           # casts the buffers too: keep them float32 at least
        xp = self.device.xp
        acc = _statistics_dtype(xp, self.gamma.dtype)
        self.running_mean = xp.astype(self.running_mean, acc)
        self.running_var = xp.astype(self.running_var, acc)
        return self

    @property
    def min_train_batch(self):
        """The fewest examples a training batch may hold: 2 values per feature (known from
        the last fprop; 2 before any)."""
        return max(1, -(-2 // getattr(self, "per_example", 1)))

    def buffer_problem(self, name, array):
        """running_var is a variance: a negative entry is no BatchNorm's."""
        if name == "running_var":
            xp = namespace(array)
            if bool(xp.any(array < 0)):
                worst = float(xp.min(array))
                return (f"holds negative values (down to {worst:.4g}); a variance is never "
                        f"negative")
        return None

    def config(self):
        return {"_n_features": self.n_features, "momentum": self.momentum, "eps": self.eps}

    # The running statistics are folded in lazily: a training step only records its batch
    # statistics (no array operation); reading either buffer (eval, checkpoints, to()), or
    # the 16th pending step, folds them all into both buffers at once, kept as the rows of
    # one (2, C) array: one stack, one matmul by cached weights, one scale and one add,
    # whatever the number of steps.  Assigning either buffer folds first, then replaces it.
    _FOLD_EVERY = 16
    _pending = ()               # ((mean, var, m, momentum), ...), oldest first; a tuple
    _running = None             # (2, C): running_mean and running_var as its rows

    @property
    def running_mean(self):
        self._fold()
        return self._running_mean

    @running_mean.setter
    def running_mean(self, value):
        self._fold()
        self._running_mean, self._running = value, None

    @property
    def running_var(self):
        self._fold()
        return self._running_var

    @running_var.setter
    def running_var(self, value):
        self._fold()
        self._running_var, self._running = value, None

    def _fold(self):
        """running = Π(1 − r_k)·running + Σ_k r_k·Π_{j>k}(1 − r_j)·(mean_k, var_k·m_k/(m_k − 1))
        over the pending steps k: the same exponential averages as one update per step."""
        pending = self._pending
        if not pending:
            return
        self._pending = ()
        xp = namespace(pending[0][0])
        c = self.n_features
        if self._running is None:
            self._running = xp.stack([xp.reshape(self._running_mean, (c,)),
                                      xp.reshape(self._running_var, (c,))])
        stats = xp.stack([xp.reshape(a, (c,)) for mean, var, _, _ in pending
                          for a in (mean, var)])                        # (2K, C)
        weights, decay = _fold_weights(self._running, tuple((m, r) for _, _, m, r in pending))
        running = self._running * decay + weights @ stats
        self._running_mean, self._running_var = running[0, :], running[1, :]
        self._running = running

    def fprop(self, x):
        shape = tuple(x.shape)
        if len(shape) not in (2, 4) or shape[1] != self.n_features:
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, expected "
                             f"(batch, {self.n_features}) or (batch, {self.n_features}, "
                             f"height, width)")
        xp = self.check_array(x)
        self.axes = (0,) if len(shape) == 2 else (0, 2, 3)
        self.per_example = 1 if len(shape) == 2 else shape[2] * shape[3]
        self.m = shape[0] * self.per_example
        per = (1, self.n_features) + (1, 1) * (len(shape) == 4)        # broadcast shape
        self.train_mode = self.training
        acc = self._running_var.dtype           # float32 for float16 input, else x's dtype
        xa = x if acc == x.dtype else xp.astype(x, acc)
        if self.training:
            if self.m < 2:
                raise ShapeError(f"{self!r}.fprop: input of shape {shape} has "
                                 + ("one value per feature (batch size 1)" if self.m else
                                    "no values (an empty batch)")
                                 + f": batch statistics need a batch of 2 "
                                 f"or more in training; use module.eval() to predict one "
                                 f"example")
            both = fast.batch_norm_train(x, self.gamma, self.beta, self.eps)
            if both is not None:                # NumPy, batch-last: all of it in two sweeps
                mean, var, self.inv, self.xhat, y = both
            else:
                stats = fast.batch_norm_statistics(xa, self.axes)
                if stats is None:
                    mean = xp.mean(xa, axis=self.axes, keepdims=True)
                    var = xp.var(xa, axis=self.axes, keepdims=True)      # biased, two-pass
                    xc = xa - mean
                else:                                # NumPy: the same, in fewer passes
                    mean, var, xc = stats
            self._pending += ((mean, var, self.m, self.momentum),)
            if len(self._pending) >= self._FOLD_EVERY:
                self._fold()
        else:
            both = None
            xc = xa - xp.reshape(self.running_mean, per)
            var = xp.reshape(self.running_var, per)
        if both is None:
            shifted = var + self.eps
            self.inv = fused.inverse_sqrt(shifted)     # torch: rsqrt
            if self.inv is None:
                self.inv = shifted ** -0.5
            self.xhat = xc * self.inv
            if acc != x.dtype:                   # back to float16 for the output and bprop
                self.inv = xp.astype(self.inv, x.dtype)
                self.xhat = xp.astype(self.xhat, x.dtype)
            y = _multiply_add(xp, self.xhat, xp.reshape(self.gamma, per),
                              xp.reshape(self.beta, per))
        self.per = per
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        g = grad_output
        sums = fast.batch_norm_sums(g, self.xhat, self.axes)    # NumPy: no g·x̂ temporary
        self.dbeta, self.dgamma = sums if sums is not None else (
            xp.sum(g, axis=self.axes), xp.sum(g * self.xhat, axis=self.axes))
        if not need_input_grad:
            return None
        scale = xp.reshape(self.gamma, self.per) * self.inv
        if not self.train_mode:
            return g * scale
        dx = fast.batch_norm_input_grad(g, self.xhat, scale, self.dgamma, self.dbeta, self.m)
        if dx is not None:                      # NumPy, batch-last: one sweep
            return dx
        k = -1.0 / self.m
        if dtype_name(g.dtype) == "float16":    # x̂·Σ g·x̂ may pass 65504: scale first
            dx = _multiply_add(xp, self.xhat, xp.reshape(self.dgamma * k, self.per),
                               xp.reshape(self.dbeta * k, self.per))
        else:                                   # dx = (g − (Σg + x̂·Σ g·x̂)/m)·γ/σ
            dx = _multiply_add(xp, self.xhat, xp.reshape(self.dgamma, self.per),
                               xp.reshape(self.dbeta, self.per))
            scaled = fused.add_scaled(g, dx, k)     # torch: g + k·dx in one kernel
            if scaled is not None:
                scaled *= scale
                return scaled
            dx *= k
        dx += g
        dx *= scale
        return dx


def _multiply_add(xp, a, b, c):
    """a·b + c as a new array: one kernel on torch (backends.fused), two elsewhere."""
    y = fused.multiply_add(a, b, c)
    if y is None:
        y = a * b
        y += c
    return y


def _statistics_dtype(xp, dtype):
    """The dtype BatchNorm's statistics are computed in: float32 for float16, else dtype."""
    half = getattr(xp, "float16", None)
    return xp.float32 if half is not None and dtype == half else dtype


def _fold_weights(like, steps):
    """(weights (2, 2K), decay (2, 1)), cached in ``like``'s dtype and device, that fold
    the stacked (mean, var) rows of K steps ``steps`` = ((m, momentum), ...) into the
    running statistics: row 0 weighs the means, row 1 the variances (made unbiased)."""
    from ..device import dtype_name
    dtype = dtype_name(like.dtype)

    def build():
        w = [[0.0] * (2 * len(steps)) for _ in range(2)]
        keep = 1.0
        for k in range(len(steps) - 1, -1, -1):         # newest first
            m, r = steps[k]
            w[0][2 * k] = keep * r
            w[1][2 * k + 1] = keep * r * m / (m - 1)
            keep *= 1.0 - r
        host = backends.host
        return (host.scale(host.as_float64(w), 1.0, dtype),
                host.scale(host.as_float64([[keep], [keep]]), 1.0, dtype))
    return _on_device(("bn-fold", steps, dtype), like, build)
