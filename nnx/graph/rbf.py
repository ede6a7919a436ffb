"""A radial-basis-function network written as a cascade of three small modules.

    a1[n,k] = ||x_n - w_k||²        SquaredDistance   centres w: (K, d)
    a2 = exp(-β·a1)                 Gaussian          widths β: (K,)
    a4[n] = Σ_k u_k·a2[n,k]         WeightedSum       weights u: (K,)   (a3 = u·a2, a4 = Σ a3)

x: (N, d) -> (N, 1).  RBFNetwork chains them; each stage has its own fprop/bprop.
"""

import math

from nnx import backends

from .. import _checks
from ..module import Module
from ..sequential import Sequential


class SquaredDistance(Module):
    """``a[n,k] = Σ_d (x[n,d] - w[k,d])² = |x_n|² - 2 x_n·w_k + |w_k|²``

    ::

        dx = 2 (x·Σ_k g[:,k] - g·w);   dw = 2 (w·Σ_n g[n,:] - gᵀ·x)
    """

    param_names = ("w",)

    def __init__(self, n_in, n_centres, *, centre_range=(-1.0, 1.0), dtype=None, device=None):
        self.n_in = _checks.positive_int("SquaredDistance", "n_in", n_in)
        self.n_centres = _checks.positive_int("SquaredDistance", "n_centres", n_centres)
        self.centre_range = _centre_range("SquaredDistance", centre_range)
        self.init_params(dtype, device, w=backends.host.uniform(
            (self.n_centres, self.n_in), *self.centre_range, "float64"))

    def config(self):
        return {"_n_in": self.n_in, "_n_centres": self.n_centres,
                "centre_range": self.centre_range}

    def fprop(self, x):
        xp = self.check_input(x, self.n_in)
        self.x = x
        a = xp.sum(x * x, axis=1, keepdims=True) - 2.0 * (x @ self.w.T)
        a += xp.sum(self.w * self.w, axis=1)
        self.out_shape = tuple(a.shape)
        return a

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        g = grad_output
        dw = self.w * xp.sum(g, axis=0)[:, None]
        dw -= g.T @ self.x
        dw *= 2.0
        self.dw = dw
        if not need_input_grad:
            return None
        dx = self.x * xp.sum(g, axis=1, keepdims=True)
        dx -= g @ self.w
        dx *= 2.0
        return dx


def _centre_range(where, value):
    what = "a pair (low, high) of finite numbers with low <= high"
    low, high = _checks.pair(where, "centre_range", value, what)
    low = _checks.finite_number(where, "centre_range[0]", low)
    high = _checks.finite_number(where, "centre_range[1]", high)
    if low > high:
        raise _checks.ArgumentError(f"{where}: centre_range must be {what}, got {value!r}")
    return low, high


class Gaussian(Module):
    """a2 = exp(-β·a1), one width β_k per column;   da1 = -β·a2·g;   dβ = -Σ_n g·a2·a1"""

    param_names = ("beta",)

    def __init__(self, n_centres, *, width=1.0, dtype=None, device=None):
        self.n_centres = _checks.positive_int("Gaussian", "n_centres", n_centres)
        self.width = _checks.finite_number("Gaussian", "width", width)
        self.init_params(dtype, device,
                          beta=backends.host.full((self.n_centres,), self.width, "float64"))

    def config(self):
        return {"_n_centres": self.n_centres, "width": self.width}

    def fprop(self, a1):
        xp = self.check_input(a1, self.n_centres)
        self.a1 = a1
        self.a2 = xp.exp(-self.beta * a1)
        self.out_shape = tuple(self.a2.shape)
        return self.a2

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        ga = grad_output * self.a2
        self.dbeta = -xp.sum(ga * self.a1, axis=0)
        return ga * (-self.beta) if need_input_grad else None


class WeightedSum(Module):
    """a4[n] = Σ_k u_k·a2[n,k]  (output (N, 1));   du = a2ᵀ·g;   da2 = g·u"""

    param_names = ("u",)

    def __init__(self, n_centres, *, dtype=None, device=None):
        self.n_centres = _checks.positive_int("WeightedSum", "n_centres", n_centres)
        self.init_params(dtype, device, u=backends.host.normal(
            (self.n_centres,), 1.0 / math.sqrt(self.n_centres), "float64"))

    def config(self):
        return {"_n_centres": self.n_centres}

    def fprop(self, a2):
        xp = self.check_input(a2, self.n_centres)
        self.a2 = a2
        y = a2 @ xp.reshape(self.u, (self.n_centres, 1))
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        self.du = xp.reshape(self.a2.T @ grad_output, (self.n_centres,))
        return grad_output * self.u if need_input_grad else None


class RBFNetwork(Sequential):
    """y = Σ_k u_k·exp(-β_k·||x - w_k||²):  x (N, d) -> (N, 1), K hidden units.

    Centres start uniform in ``centre_range``, widths β at ``width``, weights u ~ N(0, 1/K).
    A Sequential of its three stages: fprop and bprop are the chain's.
    """

    def __init__(self, n_in, n_centres, *, width=1.0, centre_range=(-1.0, 1.0), dtype=None,
                 device=None, stages=None):
        self.n_in = _checks.positive_int("RBFNetwork", "n_in", n_in)
        self.n_centres = _checks.positive_int("RBFNetwork", "n_centres", n_centres)
        self.width = _checks.finite_number("RBFNetwork", "width", width)
        self.centre_range = _centre_range("RBFNetwork", centre_range)
        kw = {"dtype": dtype, "device": device}
        if stages is None:
            stages = [SquaredDistance(n_in, n_centres, centre_range=centre_range, **kw),
                      Gaussian(n_centres, width=width, **kw), WeightedSum(n_centres, **kw)]
        super().__init__(*stages)

    @property
    def stages(self):
        return self.modules

    def config(self):
        return {"_n_in": self.n_in, "_n_centres": self.n_centres, "width": self.width,
                "centre_range": self.centre_range}

    @classmethod
    def from_config(cls, config, children):
        """Rebuild around the stages of ``children()`` (checkpoints): no new weights drawn."""
        return cls(config["_n_in"], config["_n_centres"], width=config["width"],
                   centre_range=config["centre_range"], stages=list(children))

    def _child_name(self, i):
        return ("distance", "gaussian", "weights")[i]

    __repr__ = Module.__repr__
