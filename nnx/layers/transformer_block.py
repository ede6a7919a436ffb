from .. import _checks
from ..errors import ArgumentError
from ..module import Module
from ..sequential import Sequential
from .gelu import GELU
from .layer_norm import LayerNorm
from .linear import Linear
from .multi_head_attention import MultiHeadAttention


class TransformerBlock(Module):
    """A pre-LN transformer block on sequences (N, T, d_model), two residual branches::

        h = x + MultiHeadAttention(LayerNorm(x))
        y = h + Linear(d_ff, d_model)(GELU(Linear(d_model, d_ff)(LayerNorm(h))))

    bprop runs the two ``Residual`` branches backwards (dx = g + branch.bprop(g) each).
    Its children: ``attention`` = Residual(Sequential(LayerNorm, MultiHeadAttention)) and
    ``feed_forward`` = Residual(Sequential(LayerNorm, Linear, GELU, Linear)).
    """

    def __init__(self, d_model, heads, d_ff, causal=False, *, dtype=None, device=None):
        from ..graph import Residual
        where = "TransformerBlock"
        self.d_model = _checks.positive_int(where, "d_model", d_model)
        self.heads = _checks.positive_int(where, "heads", heads)
        self.d_ff = _checks.positive_int(where, "d_ff", d_ff)
        self.causal = _checks.instance(where, "causal", causal, bool, "True or False")
        kw = {"dtype": dtype, "device": device}
        d = self.d_model
        self.blocks = [
            Residual(Sequential(LayerNorm(d, **kw),
                                MultiHeadAttention(d, self.heads, self.causal, **kw))),
            Residual(Sequential(LayerNorm(d, **kw), Linear(d, self.d_ff, **kw), GELU(),
                                Linear(self.d_ff, d, **kw)))]

    def config(self):
        args = {"_d_model": self.d_model, "_heads": self.heads, "_d_ff": self.d_ff}
        return {**args, "causal": True} if self.causal else args

    @classmethod
    def from_config(cls, config, children):
        """Rebuild from ``config()`` and the two children (checkpoints)."""
        block = cls(*(v for k, v in config.items() if k.startswith("_")),
                    causal=config.get("causal", False))
        if [c.architecture() for c in children] != \
                [c.architecture() for c in block.blocks]:
            raise ArgumentError(f"{block!r}: the children given do not have the block's "
                                f"layout (attention, feed_forward)")
        block.blocks = list(children)
        return block

    def children(self):
        return self.blocks

    def _child_name(self, i):
        return ("attention", "feed_forward")[i]

    def fprop(self, x):
        for b in self.blocks:
            x = b.fprop(x)
        self.out_shape = tuple(x.shape)
        return x

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        g = self.blocks[1].bprop(grad_output)
        return self.blocks[0].bprop(g, need_input_grad=need_input_grad)
