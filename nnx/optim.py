"""Optimisers bound to a module: ``opt.step()`` after ``net.bprop(...)``.

bprop overwrites the gradients of the last fprop, so there is nothing to zero.  Updates use
augmented assignment on local names: on mutable arrays (NumPy, CuPy, torch, strict) that
updates the parameters in place; on immutable ones (JAX) it makes new arrays, which are then
rebound into the module.  Hyper-parameters stay Python floats.

An optimiser is bound to the parameters the module has when it is created (and keeps a
state per parameter): after changing the network's structure, create a new one.
"""

import math

from nnx import backends

from . import _checks
from .device import dtype_name, namespace
from .module import Module, check_tree


class Optimizer:
    """Its state (momenta) follows the parameters: after ``net.to(device, dtype)`` the next
    ``step()`` moves it along (once), so training simply continues there."""

    def __init__(self, module, lr):
        name = type(self).__name__
        _checks.instance(name, "module", module, Module, "an nnx Module")
        check_tree(name, module)                     # else one array updated twice
        self.module, self.lr = module, _checks.positive_number(name, "lr", lr)
        self.state = [None] * len(module.params())
        self._placed = [None] * len(self.state)     # the parameter each state was checked for
        self._slots = _param_slots(module)

    def step(self):
        if self._slots is None:                 # a module with its own params(): ask it
            params = self.module.params()
            new = []
            for i, (p, g) in enumerate(zip(params, self.module.grads())):
                self._follow(i, p)
                new.append(self.update(i, p, g))
            if any(a is not b for a, b in zip(new, params)):
                self.module.set_params(new)
            return
        for i, (m, name) in enumerate(self._slots):
            p = getattr(m, name)
            self._follow(i, p)
            new = self.update(i, p, getattr(m, "d" + name))
            if new is not p:
                setattr(m, name, new)

    def update(self, i, p, g):
        """Return the updated parameter (the same object when updated in place)."""
        raise NotImplementedError

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
    """v ← μ·v + g + λ·p;   p ← p - lr·v   (μ = momentum, λ = weight_decay; v = g when μ = 0)"""

    def __init__(self, module, lr=0.1, momentum=0.0, weight_decay=0.0):
        super().__init__(module, lr)
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


class Adam(Optimizer):
    """m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;
    p ← p - lr·√(1-β2^t)/(1-β1^t) · m / (√v + ε)      (+ λ·p added to g: weight_decay)

    float16 parameters keep m and v in float32 (ε = 1e-8 rounds to 0 in float16).
    """

    def __init__(self, module, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(module, lr)
        beta1, beta2 = _checks.pair("Adam", "betas", betas, "a pair (beta1, beta2)")
        self.beta1 = _checks.fraction("Adam", "betas[0]", beta1)
        self.beta2 = _checks.fraction("Adam", "betas[1]", beta2)
        self.eps = _checks.positive_number("Adam", "eps", eps)
        self.weight_decay = _checks.fraction("Adam", "weight_decay", weight_decay, math.inf)
        self.t = 0

    def step(self):
        self.t += 1
        super().step()

    def _state_dtype(self, p):
        xp = namespace(p)
        return xp.float32 if dtype_name(p.dtype) == "float16" else p.dtype

    def update(self, i, p, g):
        half = dtype_name(p.dtype) == "float16"
        if half:        # ε = 1e-8 is 0 in float16 (0/0 = NaN) and g² overflows past 256:
            xp = namespace(p)                       # m, v and the step in float32
            g, p32 = xp.astype(g, xp.float32), xp.astype(p, xp.float32)
        if self.weight_decay:
            g = g + self.weight_decay * (p32 if half else p)
        if self.state[i] is None:
            self.state[i] = (g * 0.0, g * 0.0)
        m, v = self.state[i]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * (g * g)
        self.state[i] = (m, v)
        lr_t = self.lr * math.sqrt(1.0 - self.beta2 ** self.t) / (1.0 - self.beta1 ** self.t)
        denom = v ** 0.5
        denom += self.eps
        step = lr_t * (m / denom)
        p -= xp.astype(step, p.dtype) if half else step
        return p
