from nnx import backends

from .. import _checks
from ..errors import ShapeError
from ..module import Module


class PositionalEmbedding(Module):
    """A learned vector per position, added to sequences (N, T, dim)::

        fprop:  y[n, t] = x[n, t] + P[t]           P: (max_len, dim), T <= max_len
        bprop:  dx = g,  dP[t] = Σ_n g[n, t] for t < T (0 for the positions not seen)

    P ~ N(0, 0.02²) drawn on the host.  A sequence longer than max_len is an error (build
    the module with a larger max_len).
    """

    param_names = ("P",)

    def __init__(self, max_len, dim, *, dtype=None, device=None):
        self.max_len = _checks.positive_int("PositionalEmbedding", "max_len", max_len)
        self.dim = _checks.positive_int("PositionalEmbedding", "dim", dim)
        self.init_params(dtype, device,
                          P=backends.host.normal((self.max_len, self.dim), 0.02, "float64"))

    def config(self):
        return {"_max_len": self.max_len, "_dim": self.dim}

    def fprop(self, x):
        shape = tuple(x.shape)
        if len(shape) != 3 or shape[2] != self.dim:
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, expected "
                             f"(batch, steps, {self.dim})")
        if not 1 <= shape[1] <= self.max_len:
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, a sequence of "
                             f"{shape[1]} steps; this table holds 1 to {self.max_len} "
                             + ("(an empty sequence has no positions)" if shape[1] == 0 else
                                f"(build PositionalEmbedding({shape[1]}, {self.dim}) or "
                                f"larger)"))
        self.check_array(x)
        self.T = shape[1]
        y = x + self.P[:self.T, :]
        self.out_shape = shape
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        dP = xp.sum(grad_output, axis=0)
        if self.T < self.max_len:
            dP = xp.concat([dP, xp.zeros_like(self.P[self.T:, :])], axis=0)
        self.dP = dP
        return grad_output if need_input_grad else None
