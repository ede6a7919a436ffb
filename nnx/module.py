"""The module contract: ``fprop(x)`` caches what ``bprop(grad_output)`` needs.

A leaf module with parameters lists them in ``param_names`` (``("W", "b")``); its gradients
live beside them as ``dW``, ``db``: zeros until the first bprop, then rebound by each bprop
to fresh arrays (so a gradient read earlier is never changed behind the reader's back).
Containers list their children in ``children()``; ``params()`` and ``grads()`` walk them in
the same stable order.  Non-trainable state (BatchNorm's running statistics) is listed in
``buffer_names``: ``named_buffers()`` walks it like ``named_params()``, ``to()`` moves it and
checkpoints save it; optimisers never see it.
"""

from nnx import backends

from .device import check_same_device, get_device, namespace, resolve_dtype, short_dtype
from .errors import ArgumentError, DeviceError, DTypeError, ShapeError, StateError

registry = {}


def check_distinct(owner, modules, names=None, container=None):
    """Refuse one module instance in two places: its fprop cache would be overwritten and
    its parameters updated twice (share weights explicitly instead).  ``names`` label the
    top-level places (default 0, 1, ...); ``container`` may not appear inside them."""
    seen = {} if container is None else {id(container): "the container itself"}
    def walk(m, where):
        if id(m) in seen:
            if m is container:
                raise ArgumentError(f"{owner}: {where} is the {type(m).__name__} itself; a "
                                    f"module cannot contain itself")
            raise ArgumentError(f"{owner}: {m!r} appears twice (at {seen[id(m)]} and {where}); "
                                f"create a separate module for each place")
        seen[id(m)] = where
        for i, c in enumerate(m.children()):
            walk(c, f"{where}.{m._child_name(i)}")
    for i, m in enumerate(modules):
        walk(m, str(i) if names is None else names[i])


def check_tree(owner, module):
    """check_distinct over everything inside ``module`` (which may have been rewired since
    its constructor checked it)."""
    children = module.children() if isinstance(module, Module) else []
    check_distinct(owner, children, [module._child_name(i) for i in range(len(children))],
                   container=module)


def type_name(cls):
    """How checkpoints name a module class: 'Linear' for nnx's own, 'pkg.mod.Class' for
    anyone else's, so that a user's class never stands in for one of nnx's."""
    if cls.__module__.split(".")[0] == "nnx":
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


class Module:
    """The base class of every layer and container: ``fprop(x)`` computes the output and
    caches what ``bprop(grad_output)`` needs to return dL/dx, and stores the parameters'
    gradients beside them (``W`` and ``dW``).

    ``params()`` and ``grads()`` list the parameters and their gradients in one stable order
    (the order of ``named_params()``); ``train()``/``eval()`` switch modes (Dropout,
    BatchNorm); ``to(device, dtype)`` moves or casts everything.  A subclass lists its
    parameters in ``param_names`` and creates them with ``init_params``; its fprop checks
    the input with ``check_input`` and records ``out_shape``, its bprop starts with
    ``check_grad``.
    """

    param_names = ()
    buffer_names = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        registry[type_name(cls)] = cls

    training = True
    min_train_batch = 1         # the fewest examples a training batch may hold (BatchNorm: 2)
    out_shape = None            # set by fprop; bprop checks grad_output against it

    # -- the contract --------------------------------------------------------------------
    def fprop(self, x):
        """The output for input ``x``, caching what bprop needs."""
        raise NotImplementedError

    def bprop(self, grad_output, *, need_input_grad=True):
        """dL/dx from dL/dy; ``need_input_grad=False`` lets a first layer skip that matmul."""
        raise NotImplementedError

    def __call__(self, x):
        return self.fprop(x)

    def children(self):
        """The modules inside this one (containers), in the order of ``params()``."""
        return []

    def params(self):
        """The parameter arrays, this module's own first, then its children's."""
        own = [getattr(self, n) for n in self.param_names]
        return own + [p for c in self.children() for p in c.params()]

    def grads(self):
        """The gradients of ``params()``, in the same order and shapes."""
        own = [getattr(self, "d" + n) for n in self.param_names]
        return own + [g for c in self.children() for g in c.grads()]

    def named_params(self, prefix=""):
        """[(dotted name, array)], e.g. ('0.W', ...), in the order of ``params()``."""
        own = [(prefix + n, getattr(self, n)) for n in self.param_names]
        return own + [pair for i, c in enumerate(self.children())
                      for pair in c.named_params(f"{prefix}{self._child_name(i)}.")]

    def _child_name(self, i):
        return str(i)

    def named_buffers(self, prefix=""):
        """[(dotted name, array)] of the non-trainable state, e.g. ('1.running_mean', ...)."""
        own = [(prefix + n, getattr(self, n)) for n in self.buffer_names]
        return own + [pair for i, c in enumerate(self.children())
                      for pair in c.named_buffers(f"{prefix}{self._child_name(i)}.")]

    def buffer_problem(self, name, array):
        """What is wrong with ``array`` as this module's buffer ``name`` (checkpoints ask
        before loading it), or None.  Shapes and finiteness are checked by the caller."""
        return None

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    def set_buffers(self, arrays):
        """Rebind the buffers, in the order of ``named_buffers()`` (checkpoints).  The module
        keeps copies, as ``set_params`` does: a compiled step donates its buffers, which
        must not be the caller's (or another module's) arrays."""
        arrays = iter([namespace(a).asarray(a, copy=True) for a in self._replacements(
            "set_buffers", self.named_buffers(), arrays, "buffers")])
        def rebind(m):
            for n in m.buffer_names:
                setattr(m, n, next(arrays))
            for c in m.children():
                rebind(c)
        rebind(self)

    def _replacements(self, where, current, arrays, what):
        """``arrays`` as a list, after checking there is one per (name, array) of ``current``
        with the same shape (ShapeError naming the first mismatch)."""
        arrays = list(arrays)
        if len(arrays) != len(current):
            raise ShapeError(f"{type(self).__name__}.{where}: got {len(arrays)} arrays for "
                             f"{len(current)} {what}")
        for (name, old), new in zip(current, arrays):
            if tuple(getattr(new, "shape", ())) != tuple(old.shape):
                raise ShapeError(f"{type(self).__name__}.{where}: {name} needs shape "
                                 f"{tuple(old.shape)}, got {tuple(getattr(new, 'shape', ()))}")
        return arrays

    def set_params(self, arrays):
        """Rebind parameters (immutable backends, checkpoints); same order as ``params()``.

        Each array must have the shape of the parameter it replaces; the module's device
        becomes theirs.  The module keeps copies: a later optimiser step never writes into
        the caller's arrays (and read-only arrays work).
        """
        arrays = self._replacements("set_params", self.named_params(), arrays, "parameters")
        self._rebind([namespace(a).asarray(a, copy=True) for a in arrays])

    def _rebind(self, arrays):
        for n, a in zip(self.param_names, arrays):
            setattr(self, n, a)
        if self.param_names:
            self.device = backends.device_of(arrays[0])
        arrays = arrays[len(self.param_names):]
        for c in self.children():
            k = len(c.params())
            c._rebind(arrays[:k])
            arrays = arrays[k:]

    def train(self, mode=True):
        """Training mode (``mode=False``: eval mode) for this module and everything inside it;
        returns the module.  Dropout and BatchNorm act differently in the two."""
        self.training = mode
        for c in self.children():
            c.train(mode)
        return self

    def eval(self):
        """Eval mode (``train(False)``): Dropout passes its input through, BatchNorm uses its
        running statistics."""
        return self.train(False)

    def to(self, device=None, dtype=None):
        """Move parameters (and gradients) to ``device`` and/or cast them to ``dtype``.  The
        arrays a module reuses from step to step (a Conv2D's columns) are let go: they
        belong to the old device and dtype, and the next fprop makes new ones."""
        vars(self).pop("_scratch", None)
        if self.param_names:
            target = backends.resolve(device) if device is not None else self.device
            want = resolve_dtype(dtype if dtype is not None else self.dtype, target)
            for n in self.param_names + self.buffer_names:
                for name in (n, "d" + n) if n in self.param_names else (n,):
                    a = getattr(self, name)
                    if a is None:           # a gradient not kept (compile_step)
                        continue
                    if backends.device_of(a) != target:
                        a = backends.from_host(backends.to_host(a), target)
                    setattr(self, name, target.xp.astype(a, want))
            self.device = target
        for c in self.children():
            c.to(device, dtype)
        return self

    # -- description and checkpoints -----------------------------------------------------
    def config(self):
        """The constructor arguments that rebuild this module (for checkpoints and repr)."""
        return {}

    def architecture(self):
        """A JSON-able description: {'type': name, 'args': ..., 'children': [...]}."""
        arch = {"type": type_name(type(self)), "args": self.config()}
        if self.children():
            arch["children"] = [c.architecture() for c in self.children()]
        return arch

    def __repr__(self):
        args = ", ".join(repr(v) if k.startswith("_") else f"{k}={v!r}"
                         for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # -- helpers for subclasses ----------------------------------------------------------
    def init_params(self, dtype, device, **host_arrays):
        """Place host arrays on the device as parameters, with zero gradients beside them."""
        self.device = get_device() if device is None else backends.resolve(device)
        want = resolve_dtype(dtype, self.device)
        xp = self.device.xp
        for name, host in host_arrays.items():
            p = xp.astype(backends.from_host(host, self.device), want)
            setattr(self, name, p)
            setattr(self, "d" + name, xp.zeros_like(p))

    @property
    def dtype(self):
        """The dtype of the parameters (None for a module without parameters)."""
        return getattr(self, self.param_names[0]).dtype if self.param_names else None

    def check_input(self, x, width, leading=False):
        """The namespace of ``x`` after checking its shape (batch, width), dtype and device;
        ``leading=True`` also takes (batch, ..., width), e.g. sequences (N, T, width)."""
        xp = namespace(x)
        shape = tuple(x.shape)
        if len(shape) != 2 and not (leading and len(shape) > 2) or shape[-1] != width:
            raise ShapeError(f"{self!r}.fprop: input has shape {shape}, expected "
                             f"(batch, {width})"
                             + (f" or (batch, ..., {width}) such as (batch, steps, {width})"
                                if leading else ""))
        return self.check_array(x)

    def check_array(self, x):
        """The namespace of ``x`` after checking it shares the parameters' device and dtype
        (a module without parameters: that its dtype is floating, remembered for bprop)."""
        xp = namespace(x)
        if not self.param_names:
            if not xp.isdtype(x.dtype, "real floating"):
                raise DTypeError(f"{self!r}.fprop: input dtype {short_dtype(x.dtype)} is not "
                                 f"a floating type (no gradient); convert with "
                                 f"nnx.asarray(x, dtype=...)")
            self._in_dtype, self._in_like = x.dtype, x    # for bprop's dtype/device check
            return xp
        p = getattr(self, self.param_names[0])
        if type(x) is not type(p) or backends.backend_of(x).native_device(x) != self.device.native:
            check_same_device(f"{self!r}.fprop", x, p)
        if x.dtype != p.dtype:
            raise DTypeError(f"{self!r}.fprop: input dtype {short_dtype(x.dtype)} differs from "
                             f"the parameters' {short_dtype(p.dtype)}; convert with "
                             f"nnx.asarray(x, dtype=...) or module.to(dtype=...)")
        return xp

    def check_grad(self, grad_output):
        """Raise unless fprop ran and ``grad_output`` has the shape of its output (and, for
        modules with parameters, their device and dtype)."""
        if self.out_shape is None:
            if "_out_shape" in vars(self):      # a layer written before the rename
                raise StateError(f"{self!r}.fprop set self._out_shape; the attribute is "
                                 f"called out_shape now: set self.out_shape = "
                                 f"tuple(y.shape) in fprop")
            raise StateError(f"{self!r}.bprop called before fprop: run fprop(x) first, "
                             f"it caches what bprop needs (a layer's fprop sets "
                             f"self.out_shape)")
        xp = namespace(grad_output)
        shape = tuple(grad_output.shape)
        if shape != self.out_shape:
            raise ShapeError(f"{self!r}.bprop: grad_output has shape {shape}, but fprop "
                             f"returned {self.out_shape}")
        if self.param_names:
            p = getattr(self, self.param_names[0])
            if type(grad_output) is not type(p) or \
                    backends.backend_of(p).native_device(grad_output) != self.device.native:
                check_same_device(f"{self!r}.bprop", grad_output, p, "grad_output")
            if grad_output.dtype != p.dtype:
                raise DTypeError(f"{self!r}.bprop: grad_output dtype "
                                 f"{short_dtype(grad_output.dtype)} differs from the "
                                 f"parameters' {short_dtype(p.dtype)}")
        elif getattr(self, "_in_dtype", None) is not None:
            x = self._in_like
            if type(grad_output) is not type(x) or backends.backend_of(x).native_device(
                    grad_output) != backends.backend_of(x).native_device(x):
                raise DeviceError(f"{self!r}.bprop: grad_output is on "
                                  f"{backends.device_of(grad_output)} but fprop's input was on "
                                  f"{backends.device_of(x)}; move grad_output there: "
                                  f"nnx.asarray(g, device='{backends.device_of(x)}')")
            if grad_output.dtype != self._in_dtype:
                raise DTypeError(f"{self!r}.bprop: grad_output dtype "
                                 f"{short_dtype(grad_output.dtype)} differs from the input's "
                                 f"{short_dtype(self._in_dtype)}")
        return xp
