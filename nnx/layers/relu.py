from nnx.backends import fast, fused

from ..module import Module


class ReLU(Module):
    """y = max(x, 0);   dx = g·sign(y)   (sign(y) is 1 where x > 0, else 0)

    NaN stays NaN in y (a bad input is never hidden), and in dx except on torch, whose
    sign gives 0 for NaN.  The mask is a float array (the sign of the output), so bprop is
    one multiplication: on torch CPU several times faster than a select.
    """

    def fprop(self, x):
        xp = self.check_array(x)
        y = fast.relu(x)                # NumPy: keeps x's memory layout
        if y is None:
            y = xp.clip(x, min=0.0)     # where(x > 0, x, 0) would turn NaN into 0
        mask = fused.sign(y)            # torch: one kernel (0 for NaN there)
        self.mask = xp.sign(y) if mask is None else mask    # 1 where x > 0, else 0
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return grad_output * self.mask
