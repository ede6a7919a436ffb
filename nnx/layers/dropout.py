from nnx import backends

from .. import _checks
from ..device import device_of
from ..module import Module


class Dropout(Module):
    """Inverted dropout: in training y = x·m, m_i = [u_i < 1-p] / (1-p); in eval y = x.

    dx = g·m (g in eval).  The mask comes from the host generator (``nnx.seed``).
    """

    _given = None       # compile_step's jitted step: gives the mask it drew on the host

    def __init__(self, p=0.5):
        self.p = _checks.fraction("Dropout", "p", p)      # a drop probability

    def config(self):
        return {"p": self.p}

    def fprop(self, x):
        self.check_array(x)
        self.mask = None
        if self.training and self.p > 0.0:
            if self._given is not None:
                self.mask = self._given(self, x)
            else:
                host = backends.host.bernoulli_mask(tuple(x.shape), 1.0 - self.p,
                                                    str(x.dtype).rsplit(".", 1)[-1])
                self.mask = backends.from_host(host, device_of(x))
            x = x * self.mask
        self.out_shape = tuple(x.shape)
        return x

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return grad_output if self.mask is None else grad_output * self.mask
