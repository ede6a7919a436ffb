"""Finite-difference proof of a module's hand-derived bprop (central differences of fprop).

Jacobian columns come from central differences of fprop, f'(x)·e_i ≈ (f(x+h e_i) - f(x-h e_i))
/ 2h with h = sqrt(eps)·max(|x_i|, 1); Jacobian rows from bprop of unit vectors e_j.  Both
are compared at the same (row, column) entries, for the input and for every parameter.

By default every entry of the Jacobian is compared while that costs at most ``budget``
fprop/bprop calls (two fprops per column, one bprop per row), smallest tensors first; a
tensor too large for the budget gets ``samples`` spread-out columns plus random directions
through all of it: uᵀ J v from one bprop against two fprops, with u over every output and
v over that tensor alone, which a single wrong entry anywhere moves.  The result's str says
what was covered.  Inputs and parameters must be finite; a non-finite Jacobian entry fails.

Multi-input modules and graphs: pass a tuple of inputs (x1, x2, ...); each is checked like x.
Integer inputs (an Embedding's indices) are held fixed: no Jacobian columns for them.
Several outputs (y1, y2, ...) are checked as one output, their entries end to end
(L = Σ_k u_k·y_k).
"""

import copy
import dataclasses
import math
import numbers

from nnx import backends

from .device import dtype_name, namespace, to_numpy
from .errors import ArgumentError, GradcheckError
from .losses import Loss
from .module import check_tree

TOLERANCES = {"float64": (1e-5, 1e-7), "float32": (2e-2, 2e-3), "float16": (1e-1, 5e-2)}
SAMPLES = 12            # columns (and rows) of a tensor too large for the budget
DIRECTIONS = 2          # random directions through each tensor not covered entry by entry


@dataclasses.dataclass
class GradcheckResult:
    ok: bool
    max_abs_error: float
    max_rel_error: float
    where: str           # the worst entry and its two values
    checked: int         # Jacobian entries compared (random directions not counted)
    dtype: str
    device: str
    coverage: str = ""   # what was compared: every entry, samples, random directions
    directions: int = 0  # random directions compared

    def __str__(self):
        verdict = "ok" if self.ok else "FAILED"
        what = (f"{self.checked} entries ({self.coverage})" if self.checked else
                self.coverage)                  # mode="direction": no single entries
        return (f"gradcheck {verdict} on {self.device} in {self.dtype}: {what}, worst abs {self.max_abs_error:.2e}, "
                f"rel {self.max_rel_error:.2e} at {self.where}")


def gradcheck(module, x, t=None, *, dtype=None, samples=None, budget=4000, mode="entries",
              rtol=None, atol=None, seed=0, raise_on_failure=True):
    """Compare bprop with finite differences; return a GradcheckResult (raise if it fails).

    ``module`` is an nnx module, or a loss (then ``t`` are its targets).  ``x``: an array,
    or a tuple of arrays for a module that takes several inputs.  ``dtype``: the
    precision to check in; default float64 where the device has it.  The module is copied,
    never changed.  ``mode``: "entries" (every Jacobian entry up to ``budget`` fprop/bprop
    calls, sampled entries and random directions beyond it) or "direction" (one random
    direction through the input and all parameters at once, any size).  ``samples``: check
    that many spread-out rows and columns of each tensor instead of every entry.
    """
    if mode not in ("entries", "direction"):
        raise ArgumentError(f"gradcheck: mode is 'entries' or 'direction', not {mode!r}")
    for name, value in (("samples", samples), ("budget", budget)):
        if (value is not None or name == "budget") and not (
                isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1):
            raise ArgumentError(f"gradcheck: {name} must be a whole number >= 1"
                                + (" (or None: every entry up to the budget)"
                                   if name == "samples" else "") + f", got {value!r}")
    is_loss = isinstance(module, Loss)
    xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    if not xs or any(backends.device_of(a) is None for a in xs):
        raise TypeError("gradcheck: the input must be an array (nnx.asarray(...)), or a tuple "
                        "of arrays for a module with several inputs")
    if not is_loss:
        check_tree("gradcheck", module)
    device = backends.device_of(xs[0])
    if dtype is None:
        dtype = "float64" if device.backend.has_float64(device.native) else dtype_name(xs[0].dtype)
    dtype = dtype_name(dtype)
    module = copy.deepcopy(module)
    xp = device.xp
    want = getattr(xp, dtype)
    xs = tuple(a if xp.isdtype(a.dtype, "integral") else xp.astype(a, want) for a in xs)
    x = xs if isinstance(x, (tuple, list)) else xs[0]
    if t is not None and xp.isdtype(t.dtype, "real floating"):
        t = xp.astype(t, want)
    if not is_loss and module.params():
        module.to(dtype=dtype)
    _check_finite(module, xs, module.named_params() if not is_loss else [], t)
    check = _Check(module, is_loss, x, t, xp, seed)
    rtol_d, atol_d = TOLERANCES[dtype]
    rtol = rtol_d if rtol is None else rtol
    atol = (atol_d if atol is None else atol) * max(1.0, check.output_scale)
    if mode == "direction":
        pairs, coverage = check.by_direction(None), ("1 random direction through the input and every "
                                                "parameter at once")
    else:
        pairs, coverage = check.by_entries(samples, budget)
    checked = sum(1 for p in pairs if not p.direction)
    if not pairs:
        raise ArgumentError(f"gradcheck: nothing to check: 0 entries (input shapes "
                            f"{[tuple(a.shape) for a in xs]}, output shapes {check.y_shapes})")
    worst, max_abs, max_rel = (-1.0, None), 0.0, 0.0
    for p in pairs:
        tol = atol + p.noise
        if math.isfinite(p.analytic) and math.isfinite(p.numeric):
            err, size = abs(p.analytic - p.numeric), max(abs(p.analytic), abs(p.numeric))
            ratio = err / (tol + rtol * size)          # above 1: this entry fails
            max_rel = max(max_rel, err / max(size, tol))   # entries near 0: relative to atol
        else:
            err = ratio = max_rel = math.inf               # never ok, and named
        if ratio > worst[0]:
            worst = (ratio, p)
        max_abs = max(max_abs, err)
    ok = worst[0] <= 1.0
    p = worst[1]
    where = f"{p.label}: bprop {p.analytic:.6g} vs finite difference {p.numeric:.6g}"
    if not ok and p.kinked(atol, rtol):
        where += (f"; the point sits on a kink (one-sided differences {p.left:.6g} and "
                  f"{p.right:.6g} disagree): move the input or parameters away from it")
    result = GradcheckResult(ok, max_abs, max_rel, where, checked, dtype, str(device),
                             coverage, len(pairs) - checked)
    if not ok and raise_on_failure:
        raise GradcheckError(f"{module!r}: {result}")
    return result


@dataclasses.dataclass
class _Pair:
    label: str
    analytic: float
    numeric: float        # central difference
    left: float           # one-sided differences: they disagree at a kink
    right: float
    noise: float = 0.0    # rounding error of the difference quotient, added to atol
    direction: bool = False

    def kinked(self, atol, rtol):
        if not (math.isfinite(self.left) and math.isfinite(self.right)):
            return False
        gap = abs(self.left - self.right)
        return gap > 2 * (atol + self.noise + rtol * max(abs(self.left), abs(self.right)))


def _check_finite(module, xs, params, t):
    """Name the first NaN or infinity in the inputs, parameters or float targets."""
    named = [(f"x{i}" if len(xs) > 1 else "x", a) for i, a in enumerate(xs)] + list(params)
    if t is not None and namespace(t).isdtype(t.dtype, "real floating"):
        named.append(("t", t))
    for label, a in named:
        host = to_numpy(a)
        xp = namespace(host)
        bad = xp.logical_not(xp.isfinite(host))
        if bool(xp.any(bad)):
            flat = _flat(bad)
            i = int(xp.argmax(xp.astype(flat, xp.int8)))
            v = float(_flat(host)[i])
            raise GradcheckError(f"gradcheck of {module!r}: {label}[{_index(tuple(a.shape), i)}] "
                                 f"is {v!r}; finite differences need finite inputs and "
                                 f"parameters")


class _Check:
    def __init__(self, module, is_loss, x, t, xp, seed):
        self.multi_in = isinstance(x, tuple)
        self.xs = x if self.multi_in else (x,)
        self.module, self.is_loss, self.t, self.xp = module, is_loss, t, xp
        floats = [a for a in self.xs if not xp.isdtype(a.dtype, "integral")]
        self.x = (floats or [p for _, p in module.named_params()] or self.xs)[0]
        # self.x sets the device and dtype of the unit vectors; integer inputs (indices)
        # are held fixed: they have no gradient and no Jacobian columns
        self.rng_state = backends.host.get_state()       # same dropout mask every fprop
        backends.host.seed(seed)
        self.seed_state = backends.host.get_state()
        self.params = [] if is_loss else list(module.named_params())
        y0 = self.fprop(self.xs, [p for _, p in self.params])
        self.multi_out = isinstance(y0, tuple)
        ys = y0 if self.multi_out else (y0,)
        self.y_shapes = [tuple(y.shape) for y in ys]
        self.y_shape = self.y_shapes[0]
        self.output_scale = max([float(xp.max(xp.abs(y))) if y.ndim else abs(float(y))
                                 for y in ys if math.prod(y.shape)] or [0.0])
        self.y0 = self.flat_outputs(y0)
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
        return self.flat_outputs(self.fprop(xs, params))

    def flat_outputs(self, y):
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

    def plan(self, samples, budget):
        """(rows, {tensor number: columns}): every entry while the calls fit the budget
        (smallest tensors first), else ``samples`` (default SAMPLES) spread-out ones."""
        y_size = sum(math.prod(s) for s in self.y_shapes)
        sizes = [0 if self.xp.isdtype(a.dtype, "integral") else math.prod(tuple(a.shape))
                 for _, a in self.tensors()]
        if samples is not None:
            return (_sample(y_size, samples, 1),
                    {w: _sample(n, samples, 2 + w) for w, n in enumerate(sizes)})
        rows = list(range(y_size)) if y_size <= budget // 4 else _sample(y_size, SAMPLES, 1)
        left = budget - len(rows)
        cols = {}
        for w in sorted(range(len(sizes)), key=lambda w: sizes[w]):
            if 2 * sizes[w] <= left:
                cols[w], left = list(range(sizes[w])), left - 2 * sizes[w]
            else:
                cols[w] = _sample(sizes[w], SAMPLES, 2 + w)
        return rows, dict(sorted(cols.items()))

    def by_entries(self, samples, budget):
        """([_Pair], coverage) for the planned entries, plus random directions through
        each tensor whose Jacobian block was not compared entry by entry."""
        rows, cols = self.plan(samples, budget)
        y_size = len(self.y0)
        rows_data = []
        for j in rows:
            if self.y_shape:
                k, i = self.output_entry(j)
                us = [self.unit(s, i if m == k else -1, self.x)       # -1: all zeros
                      for m, s in enumerate(self.y_shapes)]
            else:
                us = [1.0]
            gxs, gps = self.bprop(us)
            rows_data.append([None if g is None else _flat(to_numpy(g)) for g in gxs + gps])
        pairs, full, partial = [], [], []
        for which, (label, a) in enumerate(self.tensors()):
            if self.xp.isdtype(a.dtype, "integral"):
                continue                            # indices: held fixed
            shape = tuple(a.shape)
            values = _flat(to_numpy(a))
            for i in cols[which]:
                h = math.sqrt(_eps(a.dtype)) * max(abs(float(values[i])), 1.0)
                e = self.unit(shape, i, a) * h
                plus, minus = _flat(self.f_perturbed(which, e)), _flat(self.f_perturbed(which, -e))
                for r, j in enumerate(rows):
                    name = f"d {self.output_label(j)} / d {label}[{_index(shape, i)}]"
                    y0, yp, ym = float(self.y0[j]), float(plus[j]), float(minus[j])
                    pairs.append(_Pair(name, float(rows_data[r][which][i]), (yp - ym) / (2.0 * h),
                                       (y0 - ym) / h, (yp - y0) / h))
            size = math.prod(shape)
            if len(cols[which]) == size and len(rows) == y_size:
                full.append(label)
            else:
                partial.append((which, label, f"{len(cols[which])} of {size} columns of {label}"))
        self.restore()
        parts = [f"every entry of {', '.join(full)}"] if full else []
        if partial:
            if len(rows) < y_size:
                parts.append(f"{len(rows)} of {y_size} outputs")
            parts += [text for _, _, text in partial]
            for which, label, _ in partial:
                for k in range(DIRECTIONS):
                    pairs += self.by_direction([which], seed=12345 + 1000 * which + k)
            parts.append(f"{DIRECTIONS} random directions through each of "
                         f"{', '.join(label for _, label, _ in partial)}")
        return pairs, "; ".join(parts)

    def by_direction(self, which, seed=12345):
        """One pair: uᵀ·J·v for random u over the outputs and v over the tensors numbered
        ``which`` (None: the input(s) and every parameter at once)."""
        host = backends.host
        state = host.get_state()
        host.seed(seed)
        us = []
        for shape in self.y_shapes:
            u = backends.from_host(host.normal(shape, 1.0, "float64"), backends.device_of(self.x))
            us.append(self.xp.astype(u, self.x.dtype) if self.y_shape else 1.0)
        gxs, gps = self.bprop(us)
        tensors = self.tensors()
        which = [w for w in (range(len(tensors)) if which is None else which)
                 if not self.xp.isdtype(tensors[w][1].dtype, "integral")]
        analytic, directions = 0.0, {}
        for w in which:
            label, a = tensors[w]
            v = backends.from_host(host.normal(tuple(a.shape), 1.0, "float64"), backends.device_of(a))
            directions[w] = v = self.xp.astype(v, a.dtype)
            analytic += float(self.xp.sum((gxs + gps)[w] * v))
        host.set_state(state)
        scale = max(1.0, max(float(self.xp.max(self.xp.abs(tensors[w][1]))) for w in which))
        h = math.sqrt(_eps(self.x.dtype)) * scale
        n_in = len(self.xs)

        def moved(step):
            xs = [x + step * directions[i] if i in directions else x
                  for i, x in enumerate(self.xs)]
            ps = [p + step * directions[n_in + k] if n_in + k in directions else p
                  for k, (_, p) in enumerate(self.params)]
            return self.dot(self.fprop(xs, ps), us)
        plus, minus = moved(h), moved(-h)
        base = self.dot(self.fprop(list(self.xs), [p for _, p in self.params]), us)
        self.restore()
        # rounding: each output carries ~eps·|y|, summed with weights |u|, divided by 2h
        flat_u = self.flat_outputs(tuple(us) if self.multi_out else us[0]) if self.y_shape else 1.0
        noise = 4 * _eps(self.x.dtype) * float(namespace(self.y0).sum(abs(flat_u * self.y0))) / h
        names = ", ".join(tensors[w][0] for w in which)
        return [_Pair(f"uᵀ·J·v through {names}", analytic, (plus - minus) / (2 * h),
                      (base - minus) / h, (plus - base) / h, noise, direction=True)]

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
