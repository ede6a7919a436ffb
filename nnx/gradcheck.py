"""Finite-difference proof of a module's hand-derived bprop (the seeds' method).

Jacobian columns come from central differences of fprop, f'(x)·e_i ≈ (f(x+h e_i) - f(x-h e_i))
/ 2h with h = sqrt(eps)·max(|x_i|, 1); Jacobian rows from bprop of unit vectors e_j.  Both
are compared at the same (row, column) entries, for the input and for every parameter.  Large
tensors are sampled (the same number of entries from each, weights and biases alike); the
random-direction check compares uᵀ J v from one bprop with two fprops, at any size.

Multi-input modules and graphs: pass a tuple of inputs (x1, x2, ...); each is checked like x.
Several outputs (y1, y2, ...) are checked as one output, their entries end to end
(L = Σ_k u_k·y_k).
"""

import copy
import dataclasses
import math

from nnx import backends

from .device import dtype_name, namespace, to_numpy
from .errors import GradcheckError
from .losses import Loss

TOLERANCES = {"float64": (1e-5, 1e-7), "float32": (2e-2, 2e-3), "float16": (1e-1, 5e-2)}


@dataclasses.dataclass
class GradcheckResult:
    ok: bool
    max_abs_error: float
    max_rel_error: float
    where: str           # the worst entry and its two values
    checked: int         # entries compared
    dtype: str
    device: str

    def __str__(self):
        verdict = "ok" if self.ok else "FAILED"
        return (f"gradcheck {verdict} on {self.device} in {self.dtype}: {self.checked} entries, "
                f"worst abs {self.max_abs_error:.2e}, rel {self.max_rel_error:.2e} at {self.where}")


def gradcheck(module, x, t=None, *, dtype=None, samples=12, mode="entries", rtol=None,
              atol=None, seed=0, raise_on_failure=True):
    """Compare bprop with finite differences; return a GradcheckResult (raise if it fails).

    ``module`` is an nnx module, or a loss (then ``t`` are its targets).  ``x``: an array,
    or a tuple of arrays for a module that takes several inputs.  ``dtype``: the
    precision to check in; default float64 where the device has it.  The module is copied,
    never changed.  ``mode``: "entries" (sampled Jacobian entries) or "direction".
    """
    if mode not in ("entries", "direction"):
        raise ValueError(f"gradcheck: mode is 'entries' or 'direction', not {mode!r}")
    is_loss = isinstance(module, Loss)
    xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    if not xs or any(backends.device_of(a) is None for a in xs):
        raise TypeError("gradcheck: the input must be an array (nnx.asarray(...)), or a tuple "
                        "of arrays for a module with several inputs")
    device = backends.device_of(xs[0])
    if dtype is None:
        dtype = "float64" if device.backend.has_float64(device.native) else dtype_name(xs[0].dtype)
    dtype = dtype_name(dtype)
    module = copy.deepcopy(module)
    xp = device.xp
    want = getattr(xp, dtype)
    xs = tuple(xp.astype(a, want) for a in xs)
    x = xs if isinstance(x, (tuple, list)) else xs[0]
    if t is not None and xp.isdtype(t.dtype, "real floating"):
        t = xp.astype(t, want)
    if not is_loss and module.params():
        module.to(dtype=dtype)
    check = _Check(module, is_loss, x, t, xp, seed)
    rtol_d, atol_d = TOLERANCES[dtype]
    rtol = rtol_d if rtol is None else rtol
    atol = (atol_d if atol is None else atol) * max(1.0, check.output_scale)
    pairs = check.by_direction() if mode == "direction" else check.by_entries(samples)
    worst, max_abs, max_rel = (-1.0, "nowhere", 0.0, 0.0), 0.0, 0.0
    for label, analytic, numeric in pairs:
        err, size = abs(analytic - numeric), max(abs(analytic), abs(numeric))
        ratio = err / (atol + rtol * size)          # above 1: this entry fails
        if ratio > worst[0]:
            worst = (ratio, label, analytic, numeric)
        max_abs = max(max_abs, err)
        max_rel = max(max_rel, err / max(size, atol))     # entries near 0: relative to atol
    ok = worst[0] <= 1.0
    where = f"{worst[1]}: bprop {worst[2]:.6g} vs finite difference {worst[3]:.6g}"
    result = GradcheckResult(ok, max_abs, max_rel, where, len(pairs), dtype, str(device))
    if not ok and raise_on_failure:
        raise GradcheckError(f"{module!r}: {result}")
    return result


class _Check:
    def __init__(self, module, is_loss, x, t, xp, seed):
        self.multi_in = isinstance(x, tuple)
        self.xs = x if self.multi_in else (x,)
        self.x = self.xs[0]                 # sets device and dtype of the unit vectors
        self.module, self.is_loss, self.t, self.xp = module, is_loss, t, xp
        self.rng_state = backends.host.get_state()       # same dropout mask every fprop
        backends.host.seed(seed)
        self.seed_state = backends.host.get_state()
        self.params = [] if is_loss else list(module.named_params())
        y0 = self.fprop(self.xs, [p for _, p in self.params])
        self.multi_out = isinstance(y0, tuple)
        ys = y0 if self.multi_out else (y0,)
        self.y_shapes = [tuple(y.shape) for y in ys]
        self.y_shape = self.y_shapes[0]
        self.output_scale = max(float(xp.max(xp.abs(y))) if y.ndim else abs(float(y))
                                for y in ys)
        backends.host.set_state(self.rng_state)

    def fprop(self, xs, params):
        backends.host.set_state(self.seed_state)
        if self.is_loss:
            return self.module.fprop(xs[0], self.t)
        self.module.set_params(params)
        return self.module.fprop(*xs)

    def bprop(self, us):
        """([dL/dx_i], [dL/dp]) for L = Σ_k u_k·y_k, after a fresh fprop at the unperturbed
        point; ``us`` holds one u per output."""
        self.fprop(self.xs, [p for _, p in self.params])
        if self.is_loss:
            return [self.module.bprop() * us[0]], []
        gx = self.module.bprop(tuple(us) if self.multi_out else us[0])
        return (list(gx) if self.multi_in else [gx]), list(self.module.grads())

    def unit(self, shape, flat_index, like):
        size = math.prod(shape)
        e = self.xp.arange(size, device=backends.device_of(like).native) == flat_index
        return self.xp.reshape(self.xp.astype(e, like.dtype), shape)

    def tensors(self):
        """(label, array) for the input(s) and each parameter."""
        inputs = [(f"x{i}" if self.multi_in else "x", x) for i, x in enumerate(self.xs)]
        return inputs + [(n, p) for n, p in self.params]

    def f_perturbed(self, which, delta):
        """fprop with tensor number ``which`` (inputs first) moved by ``delta``; all outputs
        flattened end to end on the host."""
        n_in = len(self.xs)
        xs = [x + delta if i == which else x for i, x in enumerate(self.xs)]
        params = [p + delta if k + n_in == which else p for k, (_, p) in enumerate(self.params)]
        y = self.fprop(xs, params)
        ys = y if self.multi_out else (y,)
        flat = [_flat(to_numpy(v)) for v in ys]
        return flat[0] if len(flat) == 1 else namespace(flat[0]).concat(flat)

    def output_entry(self, j):
        """(output number, index inside it) of entry ``j`` of the outputs laid end to end."""
        for k, shape in enumerate(self.y_shapes):
            if j < math.prod(shape):
                return k, j
            j -= math.prod(shape)

    def output_label(self, j):
        if not self.y_shape:
            return "L"
        k, i = self.output_entry(j)
        return f"y{k if self.multi_out else ''}[{_index(self.y_shapes[k], i)}]"

    def by_entries(self, samples):
        y_size = sum(math.prod(s) for s in self.y_shapes)
        rows = _sample(y_size, samples, 1)
        rows_data = []
        for j in rows:
            if self.y_shape:
                k, i = self.output_entry(j)
                us = [self.unit(s, i if m == k else -1, self.x)       # -1: all zeros
                      for m, s in enumerate(self.y_shapes)]
            else:
                us = [1.0]
            gxs, gps = self.bprop(us)
            rows_data.append([_flat(to_numpy(g)) for g in gxs + gps])
        pairs = []
        for which, (label, a) in enumerate(self.tensors()):
            shape = tuple(a.shape)
            values = _flat(to_numpy(a))
            for i in _sample(math.prod(shape), samples, 2 + which):
                h = math.sqrt(_eps(a.dtype)) * max(abs(float(values[i])), 1.0)
                e = self.unit(shape, i, a) * h
                col = (_flat(self.f_perturbed(which, e)) - _flat(self.f_perturbed(which, -e)))
                col = col / (2.0 * h)
                for r, j in enumerate(rows):
                    name = f"d {self.output_label(j)} / d {label}[{_index(shape, i)}]"
                    pairs.append((name, float(rows_data[r][which][i]), float(col[j])))
        self.restore()
        return pairs

    def by_direction(self):
        host = backends.host
        host.seed(12345)
        us = []
        for shape in self.y_shapes:
            u = backends.from_host(host.normal(shape, 1.0, "float64"), backends.device_of(self.x))
            us.append(self.xp.astype(u, self.x.dtype) if self.y_shape else 1.0)
        gxs, gps = self.bprop(us)
        analytic, pairs = 0.0, []
        directions = []
        for (label, a), g in zip(self.tensors(), gxs + gps):
            v = backends.from_host(host.normal(tuple(a.shape), 1.0, "float64"), backends.device_of(a))
            v = self.xp.astype(v, a.dtype)
            directions.append(v)
            analytic += float(self.xp.sum(g * v))
        scale = max(1.0, max(float(self.xp.max(self.xp.abs(a))) for _, a in self.tensors()))
        h = math.sqrt(_eps(self.x.dtype)) * scale
        n_in = len(self.xs)
        plus = self.fprop([x + h * v for x, v in zip(self.xs, directions)],
                          [p + h * v for (_, p), v in zip(self.params, directions[n_in:])])
        plus = self.dot(plus, us)
        minus = self.fprop([x - h * v for x, v in zip(self.xs, directions)],
                           [p - h * v for (_, p), v in zip(self.params, directions[n_in:])])
        minus = self.dot(minus, us)
        self.restore()
        pairs.append(("uᵀ·J·v over the input and all parameters", analytic, (plus - minus) / (2 * h)))
        return pairs

    def dot(self, y, us):
        """Σ_k u_k·y_k as a float."""
        ys = y if self.multi_out else (y,)
        return sum(float(self.xp.sum(v * u)) for v, u in zip(ys, us))

    def restore(self):
        if not self.is_loss:
            self.module.set_params([p for _, p in self.params])
        backends.host.set_state(self.rng_state)


def _eps(dtype):
    return {"float64": 2.220446049250313e-16, "float32": 1.1920929e-07,
            "float16": 9.765625e-04}[dtype_name(dtype)]


def _flat(host_array):
    return namespace(host_array).reshape(host_array, (-1,))


def _sample(size, samples, salt):
    """All indices when few, else ``samples`` spread-out indices (deterministic)."""
    if size <= samples:
        return list(range(size))
    step = size / samples
    return sorted({int(k * step + (salt * 7919) % max(1, int(step))) % size for k in range(samples)})


def _index(shape, flat):
    idx = []
    for n in reversed(shape):
        idx.append(flat % n)
        flat //= n
    return ", ".join(str(i) for i in reversed(idx))
