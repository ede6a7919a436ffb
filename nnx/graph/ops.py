"""Modules with several inputs or outputs: fprop(x1, x2, ...) and bprop -> a tuple of grads.

Split is the one with several outputs: fprop returns a tuple and bprop takes a tuple of
grads (None for an output nobody used counts as zeros).
"""

from .. import _checks
from ..device import check_same_device, device_of, namespace, short_dtype
from ..errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError, StateError
from ..module import Module


def _shapes(xs):
    return ", ".join(str(tuple(x.shape)) for x in xs)


class _MultiInput(Module):
    def __call__(self, *xs):
        return self.fprop(*xs)

    def _check_inputs(self, xs, same_shape=True):
        """The namespace of the inputs after checking they agree in device, dtype (and shape)."""
        xp = namespace(xs[0])
        for k, x in enumerate(xs[1:], start=2):
            if type(x) is not type(xs[0]) or device_of(x) != device_of(xs[0]):
                check_same_device(f"{self!r}.fprop", x, xs[0], f"input {k}", "input 1")
        if any(x.dtype != xs[0].dtype for x in xs):
            raise DTypeError(f"{self!r}.fprop: inputs have different dtypes "
                             f"({', '.join(short_dtype(x.dtype) for x in xs)}); convert them "
                             f"with nnx.asarray(x, dtype=...)")
        if same_shape and any(tuple(x.shape) != tuple(xs[0].shape) for x in xs):
            raise ShapeError(f"{self!r}.fprop: inputs have shapes {_shapes(xs)}, expected "
                             f"all equal (no broadcasting)")
        return xp


def broadcast_shape(module, xs):
    """The shape the Array API's broadcasting gives ``xs`` (axes aligned on the right, each
    equal or 1), or a ShapeError naming the module and every shape."""
    ndim = max(x.ndim for x in xs)
    shapes = [(1,) * (ndim - x.ndim) + tuple(x.shape) for x in xs]
    out = []
    for sizes in zip(*shapes):
        big = {n for n in sizes if n != 1}
        if len(big) > 1:
            raise ShapeError(f"{module!r}.fprop: inputs have shapes {_shapes(xs)}, which do "
                             f"not broadcast (no broadcasting rule joins them: aligned on the "
                             f"right, each axis must agree or be 1)")
        out.append(big.pop() if big else 1)
    return tuple(out)


def unbroadcast(xp, g, shape):
    """The gradient of an input of ``shape`` broadcast to g's shape: g summed over the axes
    broadcasting added or stretched from 1 (g itself when the shapes agree)."""
    if tuple(g.shape) == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and g.shape[lead + i] != 1)
    return xp.reshape(xp.sum(g, axis=axes), shape) if axes else g


class Add(_MultiInput):
    """y = x1 + x2 + ...   (shapes broadcast as the Array API standard says);
    dx_k = g summed over the axes broadcasting stretched for x_k (g itself for equal shapes)"""

    def fprop(self, x1, x2, *more):
        xs = (x1, x2) + more
        self._check_inputs(xs, same_shape=False)
        self.out_shape = broadcast_shape(self, xs)
        y = x1 + x2
        for x in more:
            y = y + x
        self.shapes = [tuple(x.shape) for x in xs]
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        if not need_input_grad:
            return None
        return tuple(unbroadcast(xp, grad_output, s) for s in self.shapes)


class Multiply(_MultiInput):
    """y = x1·x2·...  (elementwise; shapes broadcast as the Array API standard says);
    dx_k = g·Π_{j≠k} x_j, summed over the axes broadcasting stretched for x_k"""

    def fprop(self, x1, x2, *more):
        self.xs = (x1, x2) + more
        self._check_inputs(self.xs, same_shape=False)
        self.out_shape = broadcast_shape(self, self.xs)
        y = x1 * x2
        for x in more:
            y = y * x
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        if not need_input_grad:
            return None
        grads = []
        for k in range(len(self.xs)):
            d = grad_output
            for j, x in enumerate(self.xs):
                if j != k:
                    d = d * x
            grads.append(unbroadcast(xp, d, tuple(self.xs[k].shape)))
        return tuple(grads)


def _axis_slice(axis, start, stop):
    """An index picking [start:stop] along non-negative ``axis``."""
    return (slice(None),) * axis + (slice(start, stop), Ellipsis)


class Concat(_MultiInput):
    """y = [x1, x2, ...] joined along ``axis`` (default the last, the features);
    dx_k = g[slice k along axis]"""

    def __init__(self, axis=-1):
        self.axis = _checks.integer("Concat", "axis", axis, -(1 << 30), "be an integer")

    def config(self):
        return {} if self.axis == -1 else {"axis": self.axis}

    def fprop(self, x1, x2, *more):
        xs = (x1, x2) + more
        xp = self._check_inputs(xs, same_shape=False)
        ndim = x1.ndim
        a = self.axis % ndim if ndim and -ndim <= self.axis < ndim else None
        if a is None or any(x.ndim != ndim or tuple(x.shape[:a]) + tuple(x.shape[a + 1:]) !=
                            tuple(x1.shape[:a]) + tuple(x1.shape[a + 1:]) for x in xs):
            which = "the last axis" if self.axis == -1 else f"axis {self.axis}"
            raise ShapeError(f"{self!r}.fprop: inputs have shapes {_shapes(xs)}; all but "
                             f"{which} must agree")
        self.a = a
        self.widths = [x.shape[a] for x in xs]
        y = xp.concat(xs, axis=a)
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        if not need_input_grad:
            return None
        grads, start = [], 0
        for w in self.widths:
            grads.append(grad_output[_axis_slice(self.a, start, start + w)])
            start += w
        return tuple(grads)


class Split(Module):
    """(y1, y2, ...) = x cut along ``axis`` (default the last) into widths ``sizes``;
    dx = [g1, g2, ...] joined along that axis

    A graph node refers to its k-th output as "name:k".
    """

    def __init__(self, sizes, axis=-1):
        what = "a list of two or more positive integers"
        try:
            self.sizes = [_checks.positive_int("Split", "sizes", s) for s in sizes]
        except TypeError:       # not iterable, or an item that is not an integer
            raise ArgumentTypeError(f"Split: sizes must be {what}, got {sizes!r}") from None
        except ArgumentError:
            raise ArgumentError(f"Split: sizes must be {what}, got {sizes!r}") from None
        if len(self.sizes) < 2:
            raise ArgumentError(f"Split: sizes must be {what}, got {sizes!r}")
        self.axis = _checks.integer("Split", "axis", axis, -(1 << 30), "be an integer")
        self.n_outputs = len(self.sizes)

    def config(self):
        return {"_sizes": self.sizes} if self.axis == -1 else \
            {"_sizes": self.sizes, "axis": self.axis}

    def fprop(self, x):
        namespace(x)
        ndim = x.ndim
        a = self.axis % ndim if ndim and -ndim <= self.axis < ndim else None
        if a is None or x.shape[a] != sum(self.sizes):
            which = "a last axis" if self.axis == -1 else f"an axis {self.axis}"
            raise ShapeError(f"{self!r}.fprop: input has shape {tuple(x.shape)}, expected "
                             f"{which} of {sum(self.sizes)} = {' + '.join(map(str, self.sizes))}")
        self.x, self.a = x, a
        ys, start = [], 0
        for w in self.sizes:
            ys.append(x[_axis_slice(a, start, start + w)])
            start += w
        self.out_shape = tuple(tuple(y.shape) for y in ys)
        return tuple(ys)

    def bprop(self, grad_output, *, need_input_grad=True):
        if self.out_shape is None:
            raise StateError(f"{self!r}.bprop called before fprop: run fprop(x) first")
        grads = tuple(grad_output) if isinstance(grad_output, (tuple, list)) else ()
        if len(grads) != self.n_outputs:
            raise ShapeError(f"{self!r}.bprop: expected a tuple of {self.n_outputs} grads, "
                             f"one per output, got {type(grad_output).__name__}")
        if not need_input_grad:
            return None
        xp = namespace(self.x)
        parts = []
        for k, (g, shape) in enumerate(zip(grads, self.out_shape)):
            if g is None:
                g = xp.zeros_like(self.x[_axis_slice(self.a, 0, shape[self.a])])
            elif tuple(g.shape) != shape:
                raise ShapeError(f"{self!r}.bprop: grad {k} has shape {tuple(g.shape)}, but "
                                 f"output {k} had {shape}")
            parts.append(g)
        return xp.concat(parts, axis=self.a)


class Residual(Module):
    """y = x + f(x) for a module f that keeps the shape;   dx = g + f.bprop(g)"""

    def __init__(self, module):
        if not isinstance(module, Module):
            raise ArgumentTypeError(f"Residual: expected an nnx module, got {type(module).__name__}")
        self.body = module

    def children(self):
        return [self.body]

    def _child_name(self, i):
        return "body"

    def fprop(self, x):
        fx = self.body.fprop(x)
        if tuple(fx.shape) != tuple(x.shape):
            raise ShapeError(f"Residual: {self.body!r} maps {tuple(x.shape)} to "
                             f"{tuple(fx.shape)}; y = x + f(x) needs f to keep the shape")
        y = x + fx
        self.out_shape = tuple(y.shape)
        return y

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        d = self.body.bprop(grad_output, need_input_grad=need_input_grad)
        return d + grad_output if need_input_grad else None

    def __repr__(self):
        return "Residual(\n  " + repr(self.body).replace("\n", "\n  ") + "\n)"
