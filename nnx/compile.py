"""``nnx.compile_step``: the whole training step (fprop, loss, bprop, update) as one call.

On JAX the step is one ``jax.jit`` program: the parameters, the optimiser's state, the
buffers (BatchNorm's running statistics) and the learning rates go in as arguments and come
out as results (the parameter, state and buffer arguments are donated), so the modules'
fprop/bprop are traced once per batch shape and never leave tracers behind.  Dropout's
masks are drawn on the host (as in the eager step) and passed in as arguments.  On torch's
CPU the same pure step is traced by torch.fx and compiled by torch.compile (Inductor)
(``nnx.backends._torch.Program``).  Elsewhere the step runs eagerly (``mode`` "eager"), with
the reason in ``reason``.
"""

import math
import operator
import time

from nnx import backends
from nnx.backends._torch import CompileFailed

from . import _checks, _deferred
from .device import check_same_device, namespace
from .errors import ArgumentError, NNXError, StateError
from .layers.dropout import Dropout
from .layers.embedding import first_embedding
from .losses import Loss
from .losses.base import _range_error
from .module import Module

MODES = ("auto", "jit", "eager")
COMPILED = ("jit", "compiled")      # the modes that run a program: jax.jit, torch.compile


def compile_step(net, loss, opt, *, mode="auto", keep_grads=True, _count_correct=False):
    """``step = compile_step(net, loss, opt)``; ``step(x, t)`` runs ``loss.fprop(net.fprop
    (x), t)``, ``net.bprop(loss.bprop())`` and ``opt.step()`` and returns the batch loss as
    a 0-d array on the device (not read back).  Afterwards the modules hold the new
    parameters, gradients and buffers and the optimiser its new state, as after the eager
    step, so ``nnx.save``, ``evaluate`` and eager steps mix with compiled ones.  A jitted
    step leaves no fprop caches behind: ``net.bprop`` or ``loss.bprop`` right after it
    raises a StateError (until the next eager fprop) instead of using an older batch's.

    ``mode``: "auto" (jax.jit on JAX, torch.compile on torch's CPU, else eager), "jit"
    (refuse what cannot be compiled; on CUDA torch compiles only then), "eager".  On torch
    the step is traced once per batch shape by torch.fx into one graph, which Inductor
    compiles; where it cannot ("auto"), the step warns once and runs eagerly.
    ``step.mode`` ("jit", "compiled" or "eager") and ``step.reason`` say what it does and why;
    ``step.compile_seconds`` maps each batch shape to the seconds its first jitted call took
    (empty when eager: nothing is compiled).  Dropout's masks come from the host generator
    (``nnx.seed``) in the jitted step too, in the eager step's order, passed into the
    program; the first step of each batch shape runs eagerly to learn their shapes.

    Between calls it follows what the eager step follows (hyper-parameters of the optimiser,
    the modules' ``config()`` and the loss, ``net.to``, a replaced layer without parameters;
    one with parameters is refused with the fix), see the guide's "What may change between
    calls".

    ``keep_grads=False``: the step does not hand the gradients back, so the jitted program
    returns only the loss and the new parameters, state and buffers (as a
    ``jax.jit(jax.grad)`` step does), without writing out a gradient array per parameter
    each step; afterwards every gradient attribute is None (``net.grads()`` lists None)
    until the next eager ``bprop``, on every backend, so that no stale gradient is ever
    read as the current one.
    """
    _checks.instance("compile_step", "net", net, Module, "an nnx Module")
    _checks.instance("compile_step", "loss", loss, Loss,
                     "an nnx Loss (e.g. nnx.SoftmaxCrossEntropy())")
    if not (callable(getattr(opt, "step", None)) and getattr(opt, "module", None) is net):
        bound = getattr(opt, "module", None)
        raise _checks.ArgumentTypeError(f"compile_step: opt must be an nnx optimiser bound to "
                                        f"net (e.g. nnx.SGD(net, lr=0.1)), got "
                                        f"{type(opt).__name__}" + (
                                            f" bound to another module ({type(bound).__name__})"
                                            if bound is not None else ""))
    if mode not in MODES:
        raise ArgumentError(f"compile_step: mode must be one of {', '.join(MODES)}, "
                            f"got {mode!r}")
    if not isinstance(keep_grads, bool):
        raise _checks.ArgumentTypeError(f"compile_step: keep_grads must be True or False, "
                                        f"got {keep_grads!r}")
    if not keep_grads and getattr(opt, "_slots", None) is None:
        raise ArgumentError(f"compile_step: keep_grads=False needs an nnx optimiser over the "
                            f"module's own parameters, got {type(opt).__name__}; leave "
                            f"keep_grads=True")
    return Step(net, loss, opt, mode, _count_correct, keep_grads)


class Step:
    """The callable ``compile_step`` returns (see there)."""

    def __init__(self, net, loss, opt, mode, count_correct=False, keep_grads=True):
        self.net, self.loss, self.opt = net, loss, opt
        self._asked = mode
        self.keep_grads = keep_grads
        self.count_correct = count_correct      # fit: also count argmax(z) == t (0-d)
        self.correct = None
        self.compile_seconds = {}
        self._program = None
        self._saved = None
        self.traces = 0                         # how often jax traced the step (per shape)
        self._all = _modules(net)               # the tree as it is now (a new step after
        self._bslots = _buffer_slots(net)       # changing its structure)
        self._owners = self._all + [loss, opt]
        self._dropouts = [m for m in self._all if isinstance(m, Dropout)]
        self._recurrent = [m for m in self._all if hasattr(m, "reset_state")]
        self._table = first_embedding(net)      # its index check runs before the program
        self._n_classes = None                  # the loss's, once a program is traced
        self._value_judge = None                # its value check's (key, verdict), likewise
        self._mask_specs = {}                   # (batch shape, active Dropouts) -> shapes
        params = net.params()
        self._kind = type(params[0]) if params else None
        self._lrs = (None, None)                # (lr, lr_t) and the same as device scalars
        self._has_t = hasattr(opt, "t")         # Adam: a bias-corrected lr each step
        self._hyper = _hyper_getter(opt)
        slots = getattr(opt, "_slots", None) or []
        self._gslots = [(m, "d" + n) for m, n in slots]
        self._pslots = ([m for m, _ in slots], [n for _, n in slots])   # for map(getattr)
        self.mode, self.reason = _choose(mode, _why_not_jit(net, opt, mode), "compile_step",
                                         "this step", "batch shape", params)
        if self.mode in COMPILED and self._dropouts:
            self.reason += ("; Dropout's masks are drawn on the host (nnx.seed), as in "
                            "the eager step, and passed in: the first step of each batch "
                            "shape runs eagerly to learn their shapes")

    def __repr__(self):
        return f"<nnx step: {self.mode} ({self.reason})>"

    def __call__(self, x, t):
        if _modules(self.net) != self._all:     # a module added, removed or replaced since
            self._rebuild()
        if self.mode in COMPILED:
            return self._jitted(x, t)
        return self._eager(x, t)

    def _rebuild(self):
        """Follow a change of the network's structure: a new program for the new modules,
        as long as the optimiser still holds the network's parameters; else say what to do
        (the old optimiser would go on updating the old layers' parameters)."""
        from .optim import _param_slots
        opt = self.opt
        slots = getattr(opt, "_slots", None)
        if slots is not None and _param_slots(self.net) != slots:
            raise StateError(f"compile_step: the network's modules changed since this step "
                             f"was made, and {type(opt).__name__} still holds the old "
                             f"parameters; make a new optimiser and step for the network: "
                             f"opt = nnx.{type(opt).__name__}(net, ...); step = "
                             f"nnx.compile_step(net, loss, opt)")
        _renew(self, self.net, self.loss, opt, self._asked, self.count_correct,
               self.keep_grads)

    def _eager(self, x, t):
        z = _one_output(self.net.fprop(x))
        value = self.loss.fprop(z, t)
        if self.count_correct:
            self.correct = _hits(z, t)
        self.net.bprop(self.loss.bprop(), need_input_grad=False)
        self.opt.step()
        if not self.keep_grads:
            for m, n in self.opt._slots:
                setattr(m, "d" + n, None)
        return value

    # -- JAX ------------------------------------------------------------------------------
    def _jitted(self, x, t):
        net, opt = self.net, self.opt
        if self._program is None:
            self._program = self._make_program()
        slots, bslots = opt._slots, self._bslots
        params = list(map(getattr, *self._pslots))
        kind = type(params[0])
        if kind is not self._kind:              # moved off its backend since (net.to): say so
            self.mode = "eager"
            self.reason = (f"the parameters moved off {_library(self._kind)} "
                           f"({_why_not_jit(net, opt, self._asked)})")
            return self._eager(x, t)
        if "update" in vars(opt):               # replaced since: the program has the old one
            self.mode, self.reason = "eager", _why_not_jit(net, opt, self._asked)
            return self._eager(x, t)
        if type(x) is not kind or type(t) is not kind:     # jax.jit would take it silently
            for what, a in (("input", x), ("targets", t)):
                namespace(a)                    # not an array: say so, as eager fprop does
                check_same_device("compile_step", a, params[0], what)
        if _carries_state(self._recurrent):     # a state carried from call to call: eager
            return self._eager(x, t)
        if self._table is not None and self._table.check_indices:
            self._table.check_once(x)           # a readback (or deferred): not in a trace
        masks = {}
        if self._dropouts:
            key, masks = self._masks(x, t, params[0])
            if masks is None:                   # a new shape: an eager step shows the masks'
                value = self._eager(x, t)       # shapes
                self._mask_specs[key] = [
                    (i, tuple(m.shape), str(m.dtype).rsplit(".", 1)[-1])
                    for i, m in ((i, self._dropouts[i].mask) for i in key[1])]
                return value
        if (self._has_t or getattr(opt, "momentum", 0.0)) and any(s is None for s in opt.state):
            _initial_state(opt, params)         # (momentum may have been switched on since)
        if any(map(operator.is_not, params, opt._placed)):
            for i, p in enumerate(params):      # moved or cast since (net.to): the state
                opt._follow(i, p)               # follows, as in the eager step
        has_t = self._has_t
        lr_t = opt.bias_corrected_lr(opt.t + 1) if has_t else opt.lr
        static = (tuple(map(_TRAINING, self._all)), self._hyper(opt), self.loss.check_labels,
                  _settings(self._all, self.loss))
        if self._lrs[0] != (opt.lr, lr_t):      # a Python float would be sent every call;
            xp = namespace(params[0])           # JAX's stay weakly typed, as a float is;
            wide = None if self.mode == "jit" else xp.float64   # torch's float64 0-d ones
            self._lrs = ((opt.lr, lr_t), tuple(  # take the parameters' dtype as a float does
                xp.asarray(v, dtype=wide, device=params[0].device)
                for v in ((opt.lr, lr_t) if has_t else (opt.lr,))))
        args = (params, list(opt.state), [getattr(m, n) for m, n in bslots] if bslots else [],
                self._lrs[1], masks, x, t, static)
        start = time.perf_counter()
        try:
            out = _run(self, args, "compile_step: the compiled step", x, t)
        except CompileFailed as e:              # no compiler here: eager, and say why
            _give_up(self, e, "compile_step")
            return self._eager(x, t)
        _forget_caches(self._all, self.loss)    # an older eager fprop's: bprop must refuse
        value, hits, grad_norm, labels, checked, states, params, grads, state, buffers = out
        for m, (last, grad) in zip(self._recurrent, states):
            m.last_state, m.state_grad = last, grad     # this call's, not an older eager one's
        if labels is not None:                  # its verdict at the next check_deferred()
            c = self._n_classes
            _deferred.pending(self.loss).record(
                ("range", c), labels,
                lambda v, name=f"{self.loss!r}.fprop": _range_error(name, c, *v))
        for (m, n), p in zip(slots, params):
            setattr(m, n, p)
        if grads is not None:
            for (m, n), g in zip(self._gslots, grads):
                setattr(m, n, g)
        else:                                   # none kept: clear what an eager bprop left
            for m, n in self._gslots:
                if getattr(m, n) is not None:
                    setattr(m, n, None)
        for (m, n), b in zip(bslots, buffers):
            setattr(m, n, b)
        opt.state = state                       # fresh lists from the program's results
        opt._placed = params
        if checked is not None:                 # (the program updated nothing if it fails)
            _value_verdict(self.loss, self._value_judge, checked, static[2])
        self.correct = hits
        if grad_norm is not None:
            opt.grad_norm = grad_norm
        if has_t:
            opt.t += 1
            opt._lr_t = lr_t
        if self._traced:
            _wait(value)
            self.compile_seconds[_shape_key(x, t)] = time.perf_counter() - start
        return value

    def _masks(self, x, t, like):
        """(key, {index in the Dropout list: its mask}): the masks drawn on the host
        (nnx.seed) in the order the eager step draws them, for every Dropout active now,
        under the key (batch shape, active Dropouts) their shapes are kept at; None for the
        masks of a key not seen yet (its step runs eagerly, and the caller keeps the shapes
        at the key)."""
        active = [i for i, d in enumerate(self._dropouts) if d.training and d.p > 0.0]
        key = (_shape_key(x, t), tuple(active))
        if not active:
            return key, {}
        specs = self._mask_specs.get(key)
        if specs is None:
            return key, None
        device = backends.device_of(like)
        return key, {i: backends.from_host(backends.host.bernoulli_mask(
            shape, 1.0 - self._dropouts[i].p, dtype), device) for i, shape, dtype in specs}

    def _restore(self):
        for o, d in zip(self._owners, self._saved):
            vars(o).clear()
            vars(o).update(d)
        self._saved = None

    def _make_program(self):
        """jax.jit of the pure step (params, state, buffers, lrs, masks, x, t) -> (loss, hits,
        params, grads, state, buffers); the first three arguments are donated.  The static
        last argument (training flags, hyper-parameters, label checking) retraces when it
        changes; jax's own cache compiles once per batch shape."""
        net, loss, opt = self.net, self.loss, self.opt
        slots, bslots = opt._slots, self._bslots
        device = backends.device_of(getattr(*slots[0]))
        backend = device.backend
        step = self

        def pure(params, state, buffers, lrs, masks, x, t, static):
            if not step._traced:                # as they were before this trace
                step._saved = [dict(vars(o)) for o in step._owners]
            step._traced = True
            step.traces += 1
            backend.tracing = device.native
            check = static[2]
            old = (params, None, state, buffers)    # for the label guard
            try:
                if backend.mutable:             # torch's update is in place: on copies, so
                    params, state, buffers = _copies((params, state, buffers))  # that the
                    # program never writes into its arguments (even where it stops half-way)
                for (m, n), p in zip(slots, params):
                    setattr(m, n, p)
                for (m, n), b in zip(bslots, buffers):
                    setattr(m, n, b)
                opt.state, opt.lr = list(state), lrs[0]
                if step._has_t:
                    opt._lr_t = lrs[1]
                loss.check_labels = False
                if step._table is not None:     # checked before the program
                    step._table.check_indices = False
                given = _given_masks(step._dropouts, masks)
                for i in masks:
                    step._dropouts[i]._given = given
                z = _one_output(net.fprop(x))
                n_classes = step._n_classes = _classes(z)   # known before the loss runs
                value = loss.fprop(z, t)
                hits = _hits(z, t) if step.count_correct else None
                net.bprop(loss.bprop(), need_input_grad=False)
                opt._step_per_array()
                new = ([getattr(m, n) for m, n in slots],
                       [getattr(m, "d" + n) for m, n in slots] if step.keep_grads else None,
                       list(opt.state), [getattr(m, n) for m, n in bslots])
                grad_norm = opt.grad_norm if opt.clip_norm is not None else None
            finally:
                backend.tracing = None
            xp = namespace(x)
            labels = checked = bad = None       # (min, max) of the labels, for a deferred check
            if check and n_classes is not None and xp.isdtype(t.dtype, "integral"):
                bad = xp.any((t < 0) | (t >= n_classes))
                if check == "deferred":
                    labels = (xp.min(t), xp.max(t)) if math.prod(t.shape) else None
            if check:                           # the loss's own (its inputs, its targets)
                checks = loss._value_checks(xp, z, t)
                if checks is not None:
                    key, arrays, flag, verdict = checks
                    checked = (flag,) + tuple(arrays)   # the flag read first, alone
                    step._value_judge = (key, verdict)
                    bad = flag if bad is None else bad | flag
            if bad is not None:                 # no update, a NaN loss and NaN gradients
                value = xp.where(bad, xp.nan, value)    # (they came from the refused batch)
                new = tuple(n if o is None else _unless(xp, bad, n, o) for n, o in zip(new, old))
                if new[1] is not None:
                    new = (new[0], [xp.where(bad, xp.nan, g) for g in new[1]]) + new[2:]
            states = [(m.last_state, m.state_grad) for m in step._recurrent]
            return (value, hits, grad_norm, labels, checked, states) + new

        return backend.jit(pure, native=device.native, donate_argnums=(0, 1, 2),
                           static_argnums=(7,))


def _run(owner, args, what, x, t=None):
    """``owner._program(*args)``, with the modules put back as they were before whenever it
    was traced (they hold tracers then), and any failure but nnx's own in nnx's words: an
    Embedding's index or a label out of range as the eager fprop says it (torch's gathers
    refuse them inside the program, where JAX's clamp and the program's guard gives NaN)."""
    owner._traced = False                   # the program snapshots the modules as it traces
    try:
        return owner._program(*args)
    except (NNXError, CompileFailed):
        raise
    except Exception as e:     # noqa: BLE001 - what went wrong, in nnx's words
        if owner._traced:                   # the modules as they were (their checks on again)
            owner._traced = False
            owner._restore()
        table = owner._table
        if table is not None and table.check_indices:
            if _deferred.deferring(table, "check_indices", x):
                _deferred.pending(table).forget_last()  # told now (below), not again later
            table.check(x)                  # raises where an index is out of range
        c = getattr(owner, "_n_classes", None)
        if c is not None and hasattr(t, "dtype") and namespace(t).isdtype(t.dtype, "integral"):
            owner.loss._raise_out_of_range(namespace(t), t, c, f"{owner.loss!r}.fprop")
        fix = ""
        if "Concretization" in type(e).__name__ or "TracerBool" in type(e).__name__ or \
                "_local_scalar_dense" in str(e):
            fix = ("; a module reads a value back during the call (a value check, bool() or "
                   "float() of an array), which a compiled program cannot: turn that off or "
                   "use mode='eager'")
        raise ArgumentError(f"{what} failed: {str(e).splitlines()[0]}{fix}") from e
    finally:
        if owner._traced:
            owner._restore()


def _give_up(owner, error, where):
    """After the compiler failed (``CompileFailed``): the eager mode from now on, with the
    reason, where mode was "auto"; refused where "jit" was asked for."""
    if owner._asked == "jit":
        raise ArgumentError(f"{where}: {error}; use mode='eager' (or mode='auto', which "
                            f"falls back to it)") from error
    import warnings
    owner.mode, owner.reason = "eager", f"{error}; it runs eagerly"
    warnings.warn(f"{where}: {owner.reason}", RuntimeWarning, stacklevel=3)


def _wait(value):
    """Wait until ``value`` is computed (the first call's compile seconds include its run)."""
    if hasattr(value, "block_until_ready"):
        value.block_until_ready()
    else:
        backends.synchronize(backends.device_of(value))


def _library(kind):
    return "JAX" if kind is not None and kind.__module__.startswith("jax") else "torch"


def _renew(owner, *args):
    """``owner`` (a Step or an Fprop) made again over the network as it is now, its record of
    compile seconds and traces kept."""
    seconds, traces = owner.compile_seconds, owner.traces
    owner.__init__(*args)
    owner.compile_seconds, owner.traces = seconds, traces


def _one_output(z):
    """The network's output, refused where it is several (a loss takes one array; its own
    error would be 'expected an array, got tuple', as if the input were wrong)."""
    if isinstance(z, (tuple, list)):
        from .errors import ShapeError
        raise ShapeError(f"compile_step: the network returns {len(z)} outputs, but the loss "
                         f"takes one array; give compile_step a network (or a Graph) with a "
                         f"single output")
    return z


def _carries_state(recurrent):
    """Whether a recurrent layer starts its next fprop from a state (``stateful=True`` or
    ``set_state``): a program would bake that state in, so that call runs eagerly."""
    return any(m.stateful or m._state is not None for m in recurrent)


def _settings(modules, loss=None):
    """The modules' hyper-parameters (``config()``: BatchNorm's momentum and eps, a
    LeakyReLU's slope...) and the loss's (eps, margin), which a trace bakes into the
    program: part of its static argument, so that changing one between calls retraces
    instead of being silently ignored."""
    key = [tuple(m.config().items()) for m in modules]
    if loss is not None:
        key.append(tuple((k, v) for k, v in vars(loss).items()
                         if isinstance(v, (int, float, str))))
    key = tuple(key)
    try:
        hash(key)
    except TypeError:                           # lists in a config (a Graph's wiring)
        return repr(key)
    return key


def _forget_caches(modules, loss=None):
    """After a jitted call the modules (and the loss) hold what an older eager fprop left,
    not what the program computed: mark it gone, so that a ``bprop`` now raises a
    StateError rather than silently using another batch's caches."""
    for m in modules:
        if vars(m).get("out_shape") is not None:
            m.out_shape = None
        if isinstance(getattr(type(m), "attention", None), property) and \
                vars(m).get("p") is not None:
            m.p = None                          # MultiHeadAttention.attention: not an older P
    if loss is not None and vars(loss).get("_grad") is not None:
        loss._grad = None


def _value_verdict(loss, judge, checked, check):
    """The verdict ``judge`` = (key, verdict) of the loss's own value check on what the
    program returned (its flag, then the check's arrays), as the eager fprop gives it:
    raised now (one readback, of the flag; the arrays are read only when it is set) or,
    with check_labels = "deferred", at the next check_deferred()."""
    key, verdict = judge
    flag, arrays = checked[0], checked[1:]
    if check == "deferred":
        _deferred.pending(loss).record(key, arrays, verdict)
        return
    if not bool(backends.to_host(flag)):
        return
    error = verdict([backends.to_host(a).item() for a in arrays])
    if error is not None:
        raise error


def _given_masks(dropouts, masks):
    """Dropout._given inside the traced step: the mask passed in for that Dropout, once."""
    left = dict(masks)

    def given(d, x):
        i = next(j for j, m in enumerate(dropouts) if m is d)
        if i not in left:
            raise ArgumentError(f"compile_step: {d!r} ran more than once in one step (or "
                                f"was switched on inside it); use mode='eager'")
        mask = left.pop(i)
        if tuple(mask.shape) != tuple(x.shape):
            raise ArgumentError(f"compile_step: {d!r} got input of shape {tuple(x.shape)} "
                                f"but its mask has shape {tuple(mask.shape)} (the input's "
                                f"shape changes within one batch shape); use mode='eager'")
        return mask
    return given


def _hits(z, t):
    """How many rows of z have their largest score at their class (a 0-d device array): the
    label t, or the argmax of t's one-hot / probability rows, as fit counts them."""
    from .device import index_dtype, namespace
    xp = namespace(z)
    labels = t if xp.isdtype(t.dtype, "integral") else xp.argmax(t, axis=1)
    return xp.sum(xp.astype(xp.argmax(z, axis=1) == labels, index_dtype(xp)))


def _classes(z):
    """The number of classes of scores z: the last axis of (N, C) scores or of a sequence
    model's (N, T, C) (the loss's one-hot width), or None."""
    return int(z.shape[-1]) if len(z.shape) >= 2 else None


def _choose(mode, why, where, what, per, params):
    """(mode, reason): "jit" (JAX) or "compiled" (torch) where ``why`` is None and eager
    was not asked for; mode="jit" with a ``why`` is refused with it."""
    if mode == "eager":
        return "eager", "asked for (mode='eager')"
    if why is None:
        if backends.device_of(params[0]).backend.name == "jax":
            return "jit", f"one jax.jit program per {per}"
        return "compiled", (f"one torch.compile program per {per}: the step traced once "
                            f"(torch.fx) into one graph, compiled by Inductor")
    if mode == "jit":
        raise ArgumentError(f"{where}: cannot jit {what}: {why}; use mode='auto' or 'eager'")
    return "eager", why


_EAGER = {"numpy": "NumPy runs each operation as it is called (nothing to compile)",
          "strict": "array-api-strict runs each operation as it is called"}
_STEP_EAGER = {**_EAGER,
               "cupy": "CuPy: cuBLAS calls cannot be captured in a CUDA graph (CuPy issue "
                       "6290); the flat optimiser keeps the step to few kernels"}


def _why_not_jit(net, opt, asked="auto"):
    """None when the step can be one compiled program, else why not (one line)."""
    why = _why_not_jit_params(net.params(), _STEP_EAGER, asked)
    if why is not None:
        return why
    from .optim import Optimizer
    if not isinstance(opt, Optimizer) or opt._slots is None:
        return (f"{type(opt).__name__} is not an nnx optimiser over the module's own "
                f"parameters (a wrapper such as DataParallel steps eagerly)")
    if "update" in vars(opt):
        return "the optimiser's update was replaced on the instance"
    return None


def _modules(net):
    out = [net]
    for c in net.children():
        out += _modules(c)
    return out


def _buffer_slots(net):
    return [(m, n) for m in _modules(net) for n in m.buffer_names]


def _initial_state(opt, params):
    """Zero state where the optimiser has none yet, so that the first call and every later
    one see the same arguments (v = μ·0 + g is g; Adam's moments start at 0)."""
    if all(s is not None for s in opt.state):
        return
    from .device import namespace
    for i, p in enumerate(params):
        if opt.state[i] is not None:
            continue
        xp = namespace(p)
        dtype = opt._state_dtype(p)
        if hasattr(opt, "beta1"):
            opt.state[i] = (xp.zeros(p.shape, dtype=dtype), xp.zeros(p.shape, dtype=dtype))
        elif getattr(opt, "momentum", 0.0):
            opt.state[i] = xp.zeros(p.shape, dtype=dtype)


def _state_key(state):
    return tuple(None if s is None else len(s) if isinstance(s, tuple) else 1 for s in state)


_HYPER = ("_decoupled", "beta1", "beta2", "clip_norm", "eps", "momentum", "weight_decay")


_TRAINING = operator.attrgetter("training")


def _hyper_getter(opt):
    """``get(opt)``: the optimiser's hyper-parameters that are baked into the program (not
    the lr), read each call (a changed momentum retraces)."""
    names = [k for k in _HYPER if hasattr(opt, k)]
    return operator.attrgetter(*names) if names else (lambda o: ())


def _shape_key(x, t):
    return (tuple(x.shape), str(x.dtype), tuple(getattr(t, "shape", ())),
            str(getattr(t, "dtype", type(t).__name__)))


def _copies(tree):
    """Copies of the arrays in nested lists and tuples (None entries kept)."""
    if tree is None:
        return None
    if isinstance(tree, (list, tuple)):
        return type(tree)(_copies(a) for a in tree)
    return namespace(tree).asarray(tree, copy=True)


def _unless(xp, bad, new, old):
    """``new`` where ``bad`` is false, else ``old``: the same nesting of lists and tuples of
    arrays (None entries kept)."""
    if new is None:
        return None
    if isinstance(new, (list, tuple)):
        return type(new)(_unless(xp, bad, a, b) for a, b in zip(new, old))
    return xp.where(bad, old, new)


def compile_fprop(net, *, mode="auto"):
    """``f = compile_fprop(net)``; ``f(x)`` returns ``net.fprop(x)``, for inference: on JAX
    one ``jax.jit`` program per input shape, with the parameters and buffers passed in (so
    it follows every update of them) and the modules' training flags baked in (switching
    ``net.eval()``/``net.train()`` recompiles once); on torch's CPU one torch.compile
    program per input shape, as ``compile_step`` makes them.  BatchNorm in training mode
    updates its running statistics as the eager fprop does; an active Dropout runs that call
    eagerly.

    A jitted call leaves no caches for bprop behind: a ``net.bprop`` after it refuses
    (StateError) until the next eager ``net.fprop``.  ``mode``: "auto" (jax.jit on JAX,
    torch.compile on torch's CPU, else eager), "jit" (refuse what cannot be compiled),
    "eager"; ``f.mode`` and ``f.reason`` say which and why, ``f.compile_seconds`` maps each
    input shape to its first call's seconds.
    """
    _checks.instance("compile_fprop", "net", net, Module, "an nnx Module")
    if mode not in MODES:
        raise ArgumentError(f"compile_fprop: mode must be one of {', '.join(MODES)}, "
                            f"got {mode!r}")
    return Fprop(net, mode)


class Fprop:
    """The callable ``compile_fprop`` returns (see there)."""

    def __init__(self, net, mode):
        self.net, self._asked = net, mode
        self._all = _modules(net)               # the tree as it is now (rebuilt when it changes)
        self._slots = [(m, n) for m in self._all for n in m.param_names]
        self._bslots = _buffer_slots(net)
        self._dropouts = [m for m in self._all if isinstance(m, Dropout)]
        self._recurrent = [m for m in self._all if hasattr(m, "reset_state")]
        self._table = first_embedding(net)      # its index check runs before the program
        self.compile_seconds = {}
        self.traces = 0
        self._program = None
        self._saved = None
        params = net.params()
        self._kind = type(params[0]) if params else None
        self.mode, self.reason = _choose(mode, _why_not_jit_params(params, _EAGER, mode),
                                         "compile_fprop", "net.fprop", "input shape", params)

    def __repr__(self):
        return f"<nnx fprop: {self.mode} ({self.reason})>"

    def __call__(self, x):
        if _modules(self.net) != self._all:     # a module added, removed or replaced since:
            _renew(self, self.net, self._asked)     # a program for the new structure
        if self.mode not in COMPILED or any(d.training and d.p > 0.0 for d in self._dropouts) or \
                _carries_state(self._recurrent):
            return self.net.fprop(x)            # Dropout's masks come from the host generator
        params = list(map(getattr, *zip(*self._slots)))
        if type(params[0]) is not self._kind:   # moved off its backend since (net.to): say so
            self.mode = "eager"
            self.reason = (f"the parameters moved off {_library(self._kind)} "
                           f"({_why_not_jit_params(params, _EAGER, self._asked)})")
            return self.net.fprop(x)
        if type(x) is not self._kind:           # jax.jit would take it silently
            namespace(x)                        # not an array: say so, as eager fprop does
            check_same_device("compile_fprop", x, params[0], "input")
        if self._table is not None and self._table.check_indices:
            self._table.check_once(x)           # a readback (or deferred): not in a trace
        if self._program is None:
            self._program = self._make_program(params[0])
        buffers = [getattr(m, n) for m, n in self._bslots]
        static = (tuple(map(_TRAINING, self._all)), _settings(self._all))
        start = time.perf_counter()
        try:
            y, buffers, states = _run(self, (params, buffers, x, static),
                                      "compile_fprop: the compiled fprop", x)
        except CompileFailed as e:              # no compiler here: eager, and say why
            _give_up(self, e, "compile_fprop")
            return self.net.fprop(x)
        for m, last in zip(self._recurrent, states):
            m.last_state = last                 # this call's, not an older eager one's
        _forget_caches(self._all)               # no caches for bprop: it must refuse
        for (m, n), b in zip(self._bslots, buffers):
            setattr(m, n, b)
        if self._traced:
            _wait(y)
            self.compile_seconds[(tuple(x.shape), str(x.dtype))] = time.perf_counter() - start
        return y

    def _restore(self):
        for o, d in zip(self._all, self._saved):
            vars(o).clear()
            vars(o).update(d)
        self._saved = None

    def _make_program(self, like):
        net, slots, bslots, fp = self.net, self._slots, self._bslots, self
        device = backends.device_of(like)
        backend = device.backend

        def pure(params, buffers, x, static):
            if not fp._traced:
                fp._saved = [dict(vars(o)) for o in fp._all]
            fp._traced = True
            fp.traces += 1
            backend.tracing = device.native
            try:
                for (m, n), p in zip(slots, params):
                    setattr(m, n, p)
                for (m, n), b in zip(bslots, buffers):
                    setattr(m, n, b)
                if fp._table is not None:       # checked before the program
                    fp._table.check_indices = False
                y = net.fprop(x)
                if isinstance(y, (tuple, list)):
                    raise ArgumentError("compile_fprop: the network returns several outputs; "
                                        "use net.fprop (eagerly) for it")
                return y, [getattr(m, n) for m, n in bslots], [
                    m.last_state for m in fp._recurrent]
            finally:
                backend.tracing = None

        return backend.jit(pure, native=device.native, static_argnums=(3,))


def _why_not_jit_params(params, reasons=_EAGER, asked="auto"):
    """None when a program over ``params`` can be one compiled program (jax.jit; on torch
    torch.compile), else why not.  On CUDA torch compiles only where mode="jit" asks for
    it: nnx has not yet checked that program on a GPU."""
    if not params:
        return "the network has no parameters"
    device = backends.device_of(params[0])
    name = device.backend.name
    if name not in ("jax", "torch"):
        return reasons.get(name, f"{name} runs eagerly")
    if any(backends.device_of(p) != device for p in params):
        return "the parameters live on several devices"
    if name == "torch" and device.native.type != "cpu" and asked != "jit":
        return ("torch on CUDA runs the step eagerly unless mode='jit' asks for torch.compile "
                "(not yet checked on a GPU by nnx's tests)")
    return None
