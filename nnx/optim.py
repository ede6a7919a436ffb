"""Optimisers bound to a module: ``opt.step()`` after ``net.bprop(...)``.

bprop overwrites the gradients of the last fprop, so there is nothing to zero.  Hyper-
parameters stay Python floats.

Where arrays can be updated in place (NumPy, CuPy, torch, strict), an optimiser keeps the
parameters of each device and dtype as views of one flat buffer (its state likewise) and
updates them all at once: each step concatenates the gradients into one flat array and
runs a handful of array operations, however many parameters there are.  Creating the
optimiser moves the parameters into those buffers (the module is rebound to the views);
when the module's parameters are rebound later (``set_params``, ``to()``, loading a
checkpoint) the next step builds the buffers again, and the state follows.  JAX's arrays
are immutable: there, and for modules that list their parameters their own way, each
parameter is updated on its own (``update(i, p, g)``) and the new arrays are rebound.

An optimiser is bound to the parameters the module has when it is created (and keeps a
state per parameter): after changing the network's structure, create a new one.
"""

import math

from nnx import backends
from nnx.backends import fused

from . import _checks
from .device import dtype_name, namespace
from .module import Module, check_tree

CLIP_EPS = 1e-6         # scale = min(1, clip_norm / (norm + CLIP_EPS)), as torch's clip_grad_norm_


class Optimizer:
    """Its state (momenta) follows the parameters: after ``net.to(device, dtype)`` the next
    ``step()`` moves it along (once), so training simply continues there.

    ``clip_norm``: before each update, scale all gradients by min(1, clip_norm / (‖g‖ +
    1e-6)), ‖g‖ the norm of all of them together (computed on the device, never read
    back; the last one is ``opt.grad_norm``, a 0-d array).
    """

    _fuse = True        # flat buffers where the backend allows views (False: per array)

    def __init__(self, module, lr, clip_norm=None):
        name = type(self).__name__
        _checks.instance(name, "module", module, Module, "an nnx Module")
        check_tree(name, module)                     # else one array updated twice
        self.module, self.lr = module, lr      # (checked by the setter)
        self.clip_norm = None if clip_norm is None else \
            _checks.positive_number(name, "clip_norm", clip_norm)
        self.grad_norm = None
        self.state = [None] * len(module.params())
        self._placed = [None] * len(self.state)     # the parameter each state was checked for
        self._slots = _param_slots(module)
        self._groups = self._views = None
        if self._fused():
            self._flatten()

    @property
    def lr(self):
        """The learning rate: a finite number >= 0 (0: steps that change nothing, as at
        the end of a decay to zero), checked when set (between steps, as a schedule does, as
        well as at construction)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        if backends.tracing():                  # compile_step passes it in as a device scalar
            self._lr = value
            return
        self._lr = _checks.learning_rate(type(self).__name__, "lr", value)

    # -- the step ------------------------------------------------------------------------
    def step(self):
        if not self._fused():
            return self._step_per_array()
        params = [getattr(m, n) for m, n in self._slots]
        if any(v is not None and p is not v for p, v in zip(params, self._views)):
            self._flatten()                 # rebound since: set_params, to(), load
            params = [getattr(m, n) for m, n in self._slots]
        grads = [getattr(m, "d" + n) for m, n in self._slots]
        self._check_grads(grads)
        if self._step_together(params, grads):
            return
        if self._state_apart():             # replaced since (the multi-tensor update's, a
            self._flatten()                 # compiled step's): the flat update goes on from it
            params = [getattr(m, n) for m, n in self._slots]
        flats = []
        for group in self._groups:
            xp = group.xp
            flats.append(xp.concat([xp.reshape(grads[i], (-1,)) for i in group.index]))
        loose = [i for i, v in enumerate(self._views) if v is None]
        scale = self._clip_scale(flats + [grads[i] for i in loose])
        for group, g in zip(self._groups, flats):
            self._update_flat(group, _scaled(g, scale))
        for i in loose:
            m, name = self._slots[i]
            self._follow(i, params[i])
            new = self.update(i, params[i], _scaled(grads[i], scale))
            if new is not params[i]:
                setattr(m, name, new)

    def _step_per_array(self):
        """One parameter at a time: immutable arrays, modules with their own params()."""
        if self._slots is None:                 # a module with its own params(): ask it
            params, grads = self.module.params(), self.module.grads()
        else:
            params = [getattr(m, n) for m, n in self._slots]
            grads = [getattr(m, "d" + n) for m, n in self._slots]
        self._check_grads(grads)
        scale = self._clip_scale(grads)
        new = []
        for i, (p, g) in enumerate(zip(params, grads)):
            self._follow(i, p)
            new.append(self.update(i, p, _scaled(g, scale)))
        if self._slots is None:
            if any(a is not b for a, b in zip(new, params)):
                self.module.set_params(new)
            return
        for (m, name), p, q in zip(self._slots, params, new):
            if q is not p:
                setattr(m, name, q)

    def _check_grads(self, grads):
        _require_grads(f"{type(self).__name__}.step", grads, "before opt.step()")

    def update(self, i, p, g):
        """Return the updated parameter (the same object when updated in place)."""
        raise NotImplementedError

    def _step_together(self, params, grads):
        """Update every parameter with the library's multi-tensor kernels, where it has
        them (torch): True when done, False to take the flat update."""
        return False

    def _update_flat(self, group, g):
        """Update the flat buffer ``group.flat`` (in place) from its flat gradient ``g``."""
        raise NotImplementedError

    def _fused(self):
        if not self._fuse or self._slots is None or "update" in vars(self):
            return False
        for cls in type(self).__mro__:          # the class that defines update() must
            if "update" in vars(cls):           # define the flat update beside it
                return "_update_flat" in vars(cls)
        return False

    def _clip_scale(self, grads):
        """min(1, clip_norm / (‖grads‖ + eps)) as a 0-d device array (None: no clipping)."""
        if self.clip_norm is None or not grads:
            return None
        total = None
        for g in grads:
            xp = namespace(g)
            if dtype_name(g.dtype) == "float16":        # g² overflows float16 past 256
                g = xp.astype(g, xp.float32)
            s = xp.sum(g * g)
            if total is not None:
                if backends.device_of(s) != backends.device_of(total):
                    from .errors import DeviceError
                    raise DeviceError(f"{type(self).__name__}: clip_norm needs all "
                                      f"parameters on one device, found "
                                      f"{backends.device_of(total)} and "
                                      f"{backends.device_of(s)}; move the module with "
                                      f"net.to(device)")
                if s.dtype != total.dtype:
                    wide = xp.float64 if "float64" in (dtype_name(s.dtype),
                                                       dtype_name(total.dtype)) else xp.float32
                    s, total = xp.astype(s, wide), xp.astype(total, wide)
                s = total + s
            total = s
        xp = namespace(total)
        self.grad_norm = norm = xp.sqrt(total)
        return xp.clip(self.clip_norm / (norm + CLIP_EPS), max=1.0)

    # -- where the state lives -----------------------------------------------------------
    def _follow(self, i, p):
        """Move state ``i`` to the device and dtype of parameter ``p`` if it moved."""
        state = self.state[i]
        if state is None or self._placed[i] is p:   # the same parameter as at the last step
            return
        self._placed[i] = p
        arrays = state if isinstance(state, tuple) else (state,)
        want = self._state_dtype(p)
        if all(type(a) is type(p) and a.dtype == want and
               backends.device_of(a) == backends.device_of(p) for a in arrays):
            return
        target = backends.device_of(p)
        moved = tuple(target.xp.astype(backends.from_host(backends.to_host(a), target), want)
                      for a in arrays)
        self.state[i] = moved if isinstance(state, tuple) else moved[0]

    def _state_dtype(self, p):
        """The dtype this optimiser keeps the state of parameter ``p`` in."""
        return p.dtype

    def _flatten(self):
        """Put the parameters of each (device, dtype) into one flat buffer, the module
        rebound to views of it; the state (moved to its parameter first) likewise.
        Parameters whose backend has no views stay loose (``self._views[i]`` None)."""
        params = [getattr(m, n) for m, n in self._slots]
        keys = {}
        for i, p in enumerate(params):
            self._follow(i, p)
            device = backends.device_of(p)
            key = (type(p), device, dtype_name(p.dtype))
            keys.setdefault(key, []).append(i)
        self._groups, self._views = [], [None] * len(params)
        for (_, device, _), index in keys.items():
            if not (device.backend.mutable and device.backend.flat_updates):
                continue
            xp = namespace(params[index[0]])
            flat = xp.concat([xp.reshape(params[i], (-1,)) for i in index])
            views = _views_of(xp, flat, [tuple(params[i].shape) for i in index])
            if views is None:
                continue                        # no views here: updated one by one
            group = _Group(xp, index, flat)
            states = [self.state[i] for i in index]
            if all(s is not None for s in states):
                parts = [s if isinstance(s, tuple) else (s,) for s in states]
                group.state = tuple(xp.concat([xp.reshape(s[k], (-1,)) for s in parts])
                                    for k in range(len(parts[0])))
                self._share_state(group, params)
            for i, v in zip(index, views):
                m, name = self._slots[i]
                setattr(m, name, v)
                self._views[i] = self._placed[i] = v
            self._groups.append(group)

    def _share_state(self, group, params):
        """Point ``self.state[i]`` at views of the group's flat state buffers."""
        shapes = [tuple(params[i].shape) for i in group.index]
        per = [_views_of(group.xp, s, shapes) for s in group.state]
        for k, i in enumerate(group.index):
            self.state[i] = per[0][k] if len(per) == 1 else tuple(v[k] for v in per)
        group.shared = [self.state[i] for i in group.index]

    def _state_apart(self):
        """Whether ``self.state`` holds other arrays than the flat buffers' views (set since
        by the multi-tensor update, a compiled step or by hand)."""
        for group in self._groups:
            shared = group.shared or [None] * len(group.index)
            if any(self.state[i] is not s for i, s in zip(group.index, shared)):
                return True
        return False


class _Group:
    """Parameters of one device and dtype: their positions, the flat buffer they view, and
    the optimiser's flat state for them (None before the first step)."""

    def __init__(self, xp, index, flat):
        self.xp, self.index, self.flat, self.state = xp, index, flat, None
        self.shared = None          # the views of state in the optimiser's state list


def _views_of(xp, flat, shapes):
    """Views of ``flat`` with ``shapes`` (consecutive), or None where slicing copies."""
    views, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        v = xp.reshape(flat[offset:offset + size], shape)
        if not _shares(v, flat):
            return None
        views.append(v)
        offset += size
    return views


def _shares(view, flat):
    """Whether ``view`` writes through to ``flat``: ``flat`` is on the chain of its bases
    (NumPy/CuPy ``base``, torch ``_base``; array-api-strict wraps a NumPy array)."""
    for a, b in ((view, flat), (getattr(view, "_array", None), getattr(flat, "_array", None))):
        if a is None or b is None:
            continue
        roots = {id(b)}
        own = getattr(b, "_base", None) if getattr(b, "_base", None) is not None else \
            getattr(b, "base", None)
        if own is not None:
            roots.add(id(own))
        for _ in range(4):
            base = getattr(a, "_base", None)
            if base is None:
                base = getattr(a, "base", None)
            if base is None or isinstance(base, (bytes, memoryview)):
                break
            if id(base) in roots:
                return True
            a = base
    return False


def _scaled(g, scale):
    if scale is None:
        return g
    xp = namespace(g)
    return g * (scale if scale.dtype == g.dtype else xp.astype(scale, g.dtype))


def _require_grads(where, grads, when):
    """StateError unless every gradient is there (a compile_step(keep_grads=False) step
    keeps none)."""
    if any(g is None for g in grads):
        from .errors import StateError
        raise StateError(f"{where}: the module holds no gradients (a compile_step(..., "
                         f"keep_grads=False) step keeps none); run net.bprop(...) {when}")


def _param_slots(module):
    """[(leaf module, parameter name)] in the order of ``module.params()``, found once so
    that each step reads parameters and gradients without walking the tree; None when the
    module lists its parameters its own way."""
    def walk(m):
        yield from ((m, n) for n in m.param_names)
        for c in m.children():
            yield from walk(c)
    slots = list(walk(module))
    params = module.params()
    if len(slots) != len(params) or any(getattr(m, n) is not p for (m, n), p in zip(slots, params)):
        return None
    return slots


class SGD(Optimizer):
    """v ← μ·v + g + λ·p;   p ← p - lr·v   (μ = momentum, λ = weight_decay; v = g when μ = 0)

    On torch tensors (and without ``clip_norm``) the step updates every parameter at once
    in torch's multi-tensor kernels (``nnx.backends.fused.sgd_step``)."""

    def __init__(self, module, lr=0.1, momentum=0.0, weight_decay=0.0, clip_norm=None):
        super().__init__(module, lr, clip_norm)
        self.momentum = _checks.fraction("SGD", "momentum", momentum)
        self.weight_decay = _checks.fraction("SGD", "weight_decay", weight_decay, math.inf)

    def update(self, i, p, g):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = self.state[i]
            if v is None:
                v = g * 1.0                      # a copy: g is overwritten by the next bprop
            else:
                v *= self.momentum
                v += g
            self.state[i] = g = v
        p -= self.lr * g
        return p

    def _step_together(self, params, grads):
        if self.clip_norm is not None:          # the flat update clips in one reduction
            return False
        new = fused.sgd_step(params, grads, self.state, self.lr, self.momentum,
                             self.weight_decay)
        if new is None:
            return False
        self.state = new
        return True

    def _update_flat(self, group, g):
        p = group.flat
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            if group.state is None:             # g is a fresh array (concat): keep it
                group.state = (g,)
                self._share_state(group, [getattr(m, n) for m, n in self._slots])
            else:
                v, = group.state
                v *= self.momentum
                v += g
                g = v
        p -= self.lr * g


class Adam(Optimizer):
    """m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;
    p ← p - lr·√(1-β2^t)/(1-β1^t) · m / (√v + ε)      (+ λ·p added to g: weight_decay)

    float16 parameters keep m and v in float32 (ε = 1e-8 rounds to 0 in float16).
    """

    _decoupled = False              # AdamW: the decay acts on p, not through g

    def __init__(self, module, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 clip_norm=None):
        super().__init__(module, lr, clip_norm)
        name = type(self).__name__
        beta1, beta2 = _checks.pair(name, "betas", betas, "a pair (beta1, beta2)")
        self.beta1 = _checks.fraction(name, "betas[0]", beta1)
        self.beta2 = _checks.fraction(name, "betas[1]", beta2)
        self.eps = _checks.positive_number(name, "eps", eps)
        self.weight_decay = _checks.fraction(name, "weight_decay", weight_decay, math.inf)
        self.t = 0
        self._lr_t = None

    def step(self):
        self.t += 1
        self._lr_t = self.bias_corrected_lr()
        super().step()

    def bias_corrected_lr(self, t=None):
        """lr·√(1-β2^t)/(1-β1^t) for step ``t`` (default: the current one), a Python float."""
        t = self.t if t is None else t
        return self.lr * math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)

    def _state_dtype(self, p):
        xp = namespace(p)
        return xp.float32 if dtype_name(p.dtype) == "float16" else p.dtype

    def _moments(self, g, m, v):
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * (g * g)
        return m, v             # new arrays where they are immutable (JAX)

    def _delta(self, m, v):
        denom = v ** 0.5
        denom += self.eps
        return self._lr_t * (m / denom)

    def update(self, i, p, g):
        half = dtype_name(p.dtype) == "float16"
        if self._decoupled and self.weight_decay:
            p *= 1.0 - self.lr * self.weight_decay
        if half:        # ε = 1e-8 is 0 in float16 (0/0 = NaN) and g² overflows past 256:
            xp = namespace(p)                       # m, v and the step in float32
            g, p32 = xp.astype(g, xp.float32), xp.astype(p, xp.float32)
        if self.weight_decay and not self._decoupled:
            g = g + self.weight_decay * (p32 if half else p)
        if self.state[i] is None:
            self.state[i] = (g * 0.0, g * 0.0)
        m, v = self._moments(g, *self.state[i])
        self.state[i] = (m, v)
        step = self._delta(m, v)
        p -= xp.astype(step, p.dtype) if half else step
        return p

    def _update_flat(self, group, g):
        p, xp = group.flat, group.xp
        half = dtype_name(p.dtype) == "float16"
        if self._decoupled and self.weight_decay:
            p *= 1.0 - self.lr * self.weight_decay
        if half:
            g = xp.astype(g, xp.float32)
        if self.weight_decay and not self._decoupled:
            g = g + self.weight_decay * (xp.astype(p, xp.float32) if half else p)
        if group.state is None:
            group.state = (g * 0.0, g * 0.0)
            self._share_state(group, [getattr(m, n) for m, n in self._slots])
        m, v = group.state
        self._moments(g, m, v)                  # in place: the group's backend is mutable
        step = self._delta(m, v)
        p -= xp.astype(step, p.dtype) if half else step


class AdamW(Adam):
    """Adam with decoupled weight decay: p ← p·(1 - lr·λ) before the Adam step, which then
    sees the plain gradient (Adam's ``weight_decay`` adds λ·p to g instead, so the decay is
    rescaled by √v).  λ = ``weight_decay``, 0.01 by default as in torch.optim.AdamW."""

    _decoupled = True

    def __init__(self, module, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 clip_norm=None):
        super().__init__(module, lr, betas, eps, weight_decay, clip_norm)


def clip_grad_norm(module, max_norm):
    """Scale the gradients of ``module`` so that their global norm is at most ``max_norm``:
    g ← g·min(1, max_norm / (‖g‖ + 1e-6)), on the device (no readback).  Returns ‖g‖ before
    clipping as a 0-d array.  Call it between ``bprop`` and ``opt.step()``; the optimisers'
    ``clip_norm=`` does the same inside the step, on the flat gradient."""
    _checks.instance("clip_grad_norm", "module", module, Module, "an nnx Module")
    max_norm = _checks.positive_number("clip_grad_norm", "max_norm", max_norm)
    slots = _param_slots(module)
    if slots is None:
        raise _checks.ArgumentError(f"clip_grad_norm: {type(module).__name__} lists its "
                                    f"parameters its own way; use the optimiser's clip_norm=")
    if not slots:
        raise _checks.ArgumentError("clip_grad_norm: the module has no parameters")
    helper = Optimizer.__new__(Optimizer)
    helper.clip_norm, helper.grad_norm = max_norm, None
    grads = [getattr(m, "d" + n) for m, n in slots]
    _require_grads("clip_grad_norm", grads, "first")
    scale = helper._clip_scale(grads)
    for (m, n), g in zip(slots, grads):
        setattr(m, "d" + n, _scaled(g, scale))
    return helper.grad_norm
