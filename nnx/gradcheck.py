"""Finite-difference proof of a module's hand-derived bprop (the seeds' method).

Jacobian columns come from central differences of fprop, f'(x)·e_i ≈ (f(x+h e_i) - f(x-h e_i))
/ 2h with h = sqrt(eps)·max(|x_i|, 1); Jacobian rows from bprop of unit vectors e_j.  Both
are compared at the same (row, column) entries, for the input and for every parameter.  Large
tensors are sampled (the same number of entries from each, weights and biases alike); the
random-direction check compares uᵀ J v from one bprop with two fprops, at any size.
"""

import copy
import dataclasses
import math

import backends

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

    ``module`` is an nnx module, or a loss (then ``t`` are its targets).  ``dtype``: the
    precision to check in; default float64 where the device has it.  The module is copied,
    never changed.  ``mode``: "entries" (sampled Jacobian entries) or "direction".
    """
    is_loss = isinstance(module, Loss)
    device = backends.device_of(x)
    if dtype is None:
        dtype = "float64" if device.backend.has_float64(device.native) else dtype_name(x.dtype)
    dtype = dtype_name(dtype)
    module = copy.deepcopy(module)
    xp = device.xp
    want = getattr(xp, dtype)
    x = xp.astype(x, want)
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
        max_rel = max(max_rel, err / size if err > atol else 0.0)
    ok = worst[0] <= 1.0
    where = f"{worst[1]}: bprop {worst[2]:.6g} vs finite difference {worst[3]:.6g}"
    result = GradcheckResult(ok, max_abs, max_rel, where, len(pairs), dtype, str(device))
    if not ok and raise_on_failure:
        raise GradcheckError(f"{module!r}: {result}")
    return result


class _Check:
    def __init__(self, module, is_loss, x, t, xp, seed):
        self.module, self.is_loss, self.x, self.t, self.xp = module, is_loss, x, t, xp
        self.rng_state = backends.host.get_state()       # same dropout mask every fprop
        backends.host.seed(seed)
        self.seed_state = backends.host.get_state()
        self.params = [] if is_loss else list(module.named_params())
        y0 = self.fprop(x, [p for _, p in self.params])
        self.y_shape = tuple(y0.shape)
        self.output_scale = float(xp.max(xp.abs(y0))) if y0.ndim else abs(float(y0))
        backends.host.set_state(self.rng_state)

    def fprop(self, x, params):
        backends.host.set_state(self.seed_state)
        if self.is_loss:
            return self.module.fprop(x, self.t)
        self.module.set_params(params)
        return self.module.fprop(x)

    def bprop(self, u):
        """(dL/dx, [dL/dp]) for L = Σ u·y, after a fresh fprop at the unperturbed point."""
        self.fprop(self.x, [p for _, p in self.params])
        if self.is_loss:
            return self.module.bprop() * u, []
        gx = self.module.bprop(u)
        return gx, list(self.module.grads())

    def unit(self, shape, flat_index, like):
        size = math.prod(shape)
        e = self.xp.arange(size, device=backends.device_of(like).native) == flat_index
        return self.xp.reshape(self.xp.astype(e, like.dtype), shape)

    def tensors(self):
        """(label, array) for the input and each parameter."""
        return [("x", self.x)] + [(n, p) for n, p in self.params]

    def f_perturbed(self, which, delta):
        """fprop with tensor number ``which`` (0 = input) moved by ``delta``."""
        x = self.x + delta if which == 0 else self.x
        params = [p + delta if k + 1 == which else p for k, (_, p) in enumerate(self.params)]
        y = self.fprop(x, params)
        return to_numpy(y)

    def by_entries(self, samples):
        y_size = math.prod(self.y_shape)
        rows = _sample(y_size, samples, 1)
        rows_data = []
        for j in rows:
            u = self.unit(self.y_shape, j, self.x) if self.y_shape else 1.0
            gx, gps = self.bprop(u)
            rows_data.append([_flat(to_numpy(g)) for g in [gx] + gps])
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
                    out = f"y[{_index(self.y_shape, j)}]" if self.y_shape else "L"
                    name = f"d {out} / d {label}[{_index(shape, i)}]"
                    pairs.append((name, float(rows_data[r][which][i]), float(col[j])))
        self.restore()
        return pairs

    def by_direction(self):
        host = backends.host
        host.seed(12345)
        u = backends.from_host(host.normal(self.y_shape, 1.0, "float64"), backends.device_of(self.x))
        u = self.xp.astype(u, self.x.dtype) if self.y_shape else 1.0
        gx, gps = self.bprop(u)
        analytic, pairs = 0.0, []
        directions = []
        for (label, a), g in zip(self.tensors(), [gx] + gps):
            v = backends.from_host(host.normal(tuple(a.shape), 1.0, "float64"), backends.device_of(a))
            v = self.xp.astype(v, a.dtype)
            directions.append(v)
            analytic += float(self.xp.sum(g * v))
        scale = max(1.0, max(float(self.xp.max(self.xp.abs(a))) for _, a in self.tensors()))
        h = math.sqrt(_eps(self.x.dtype)) * scale
        x = self.x + h * directions[0]
        plus = self.fprop(x, [p + h * v for (_, p), v in zip(self.params, directions[1:])])
        plus = float(self.xp.sum(plus * u))
        x = self.x - h * directions[0]
        minus = self.fprop(x, [p - h * v for (_, p), v in zip(self.params, directions[1:])])
        minus = float(self.xp.sum(minus * u))
        self.restore()
        pairs.append(("uᵀ·J·v over the input and all parameters", analytic, (plus - minus) / (2 * h)))
        return pairs

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
