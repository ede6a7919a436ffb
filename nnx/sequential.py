from .errors import ArgumentTypeError
from .module import Module, check_distinct


class Sequential(Module):
    """A chain of modules, itself a module:  fprop left to right, bprop right to left.

    ``bprop(g, need_input_grad=False)`` skips the first layer's input gradient (g·Wᵀ),
    which nobody needs when the first layer reads the data.
    """

    def __init__(self, *modules):
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise ArgumentTypeError(f"Sequential: item {i} is a {type(m).__name__}, not an "
                                f"nnx module")
        check_distinct("Sequential", modules)
        self.modules = list(modules)

    def children(self):
        return self.modules

    def __getitem__(self, i):
        return self.modules[i]

    def __len__(self):
        return len(self.modules)

    def fprop(self, x):
        for m in self.modules:
            x = m.fprop(x)
        return x

    def bprop(self, grad_output, *, need_input_grad=True):
        g = grad_output
        # without dL/dx, the layers before the first one with parameters need no bprop (a
        # Reshape in front of a Conv2D): stop at that layer and skip its input gradient
        stop = 0 if need_input_grad else next(
            (i for i, m in enumerate(self.modules) if m.params()), len(self.modules) - 1)
        for i in range(len(self.modules) - 1, stop - 1, -1):
            g = self.modules[i].bprop(g, need_input_grad=need_input_grad or i > stop)
        return None if stop else g

    def __repr__(self):
        lines = [f"  ({i}): " + repr(m).replace("\n", "\n  ") for i, m in enumerate(self.modules)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
