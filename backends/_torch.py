import operator
import warnings

from .base import Backend


class TorchBackend(Backend):
    """PyTorch tensors through array-api-compat (``torch:cpu``, ``torch:cuda:N``)."""

    name, module, prefixes = "torch", "torch", ("torch",)

    def namespace(self):
        import array_api_compat.torch
        return array_api_compat.torch

    def parse(self, prefix, rest):
        import torch
        rest = rest or "cpu"
        if rest == "cuda":
            rest = "cuda:0"
        dev = torch.device(rest)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError("torch was built without CUDA or sees no GPU")
            if dev.index >= torch.cuda.device_count():
                raise ValueError(f"torch sees {torch.cuda.device_count()} GPU(s)")
        elif dev.type != "cpu":
            raise ValueError("nnx supports torch:cpu and torch:cuda:N")
        return self.spec_of(dev), dev

    def listed(self):
        import torch
        return ["torch:cpu"] + [f"torch:cuda:{i}" for i in range(torch.cuda.device_count())]

    def from_host(self, host_array, native):
        import torch
        return torch.from_numpy(host_array.copy()).to(native)

    def to_host(self, x):
        return x.detach().cpu().numpy()

    def native_device(self, x):
        return x.device

    def spec_of(self, native):
        return "torch:cpu" if native.type == "cpu" else f"torch:cuda:{native.index or 0}"

    def synchronize(self, native):
        import torch
        if native.type == "cuda":
            torch.cuda.synchronize(native)

    compiler = "inductor"   # what torch.compile makes of the traced graph (see jit)

    def jit(self, fn, *, native=None, static_argnums=(), donate_argnums=()):
        """``fn`` as compiled programs, one per value of its static arguments and per
        shapes, dtypes and devices of its array arguments (see ``Program``)."""
        return Program(fn, tuple(static_argnums), self)


class Program:
    """A pure function of (nested lists, tuples and dicts of) tensors, traced and compiled
    once per key (the static arguments and the shapes, memory layouts, dtypes and devices
    of the tensors) and then called.

    Tracing is torch.fx's ``make_fx``: ``fn`` runs once on copies of the arguments (so
    nothing the caller holds changes while tracing), each aten operation recorded into one
    graph.  An in-place update in ``fn`` of one of its arguments is an in-place update of the
    program's argument (nnx.compile_step's step copies what it updates first, so that its
    program never writes into its arguments; an inference updates BatchNorm's running
    statistics in place, as torch's eager fprop does).  ``donate_argnums`` is JAX's notion
    and is ignored here.  A value read back while tracing (``bool()``,
    ``float()`` of a traced tensor) raises, as under ``jax.jit``: a readback would be baked
    into the program as a constant.  The graph is then compiled with the backend's
    ``compiler``: "inductor" (C++ on the CPU, Triton on CUDA) is called on it directly, with
    no torch.compile guards around it (the key above is the guard); another compiler goes
    through ``torch.compile``; ``None`` runs the
    traced graph as it is, with no compiler (nnx's tests use that for speed; a few tests use
    Inductor).  A failure of the compiler itself raises ``CompileFailed``."""

    def __init__(self, fn, static_argnums, backend):
        self.fn, self.static_argnums, self.backend = fn, static_argnums, backend
        self.graphs = {}            # key -> [callable, compiled yet, the outputs' builder]

    def __call__(self, *args):
        import torch
        from torch.utils import _pytree
        static = tuple(args[i] for i in self.static_argnums)
        dynamic = [a for i, a in enumerate(args) if i not in self.static_argnums]
        leaves = []
        key = (static, _shape_of(dynamic, leaves, torch.Tensor))
        entry = self.graphs.get(key)
        if entry is None:
            theirs = _pytree.tree_flatten(dynamic)[0]
            if len(theirs) != len(leaves) or any(map(operator.is_not, theirs, leaves)):
                raise CompileFailed("nnx's order of the arguments differs from torch's "
                                    "pytree order (an nnx bug: please report it)")
            graph, build = self._trace(static, dynamic)
            entry = self.graphs[key] = [graph, False, build]
        with torch.no_grad():
            if entry[1]:
                return entry[2](iter(entry[0](*leaves)))
            direct = self.backend.compiler == "inductor"    # compiled before it runs
            try:                        # the first call compiles
                with warnings.catch_warnings():     # torch's own, from inside its compiler
                    warnings.filterwarnings("ignore", r".*torch\.jit\.script_method",
                                            DeprecationWarning)
                    compiled = self._compile(entry[0], leaves)
                    out = None if direct else compiled(*leaves)     # torch.compile: lazily
            except Exception as e:      # noqa: BLE001 - the compiler's failure, in one line
                del self.graphs[key]
                compiler = self.backend.compiler
                root = _root_cause(e)
                raise CompileFailed(f"torch.compile ({getattr(compiler, '__name__', compiler)}"
                                    f") failed: {type(root).__name__}: {_first_line(root)}") \
                    from e
            entry[:2] = compiled, True
            # a failure of the program itself (not of its compiler) is the caller's to report
            return entry[2](iter(compiled(*leaves) if direct else out))

    def _trace(self, static, dynamic):
        import torch
        from torch.fx.experimental.proxy_tensor import make_fx
        from torch.utils import _pytree
        positions = self.static_argnums

        def copy(tree):
            return _pytree.tree_map(
                lambda a: a.clone() if isinstance(a, torch.Tensor) else a, tree)

        def traced(*dynamic):
            rest, fixed, args = iter(dynamic), iter(static), []
            for i in range(len(dynamic) + len(static)):
                args.append(next(fixed) if i in positions else next(rest))
            return self.fn(*args)

        with torch.no_grad():
            graph = make_fx(traced)(*copy(dynamic))
        # called with the arguments' leaves and returning its outputs' leaves: the key above
        # flattened the arguments already, and torch.fx's own nesting code (or Inductor's,
        # around it) flattened them again and rebuilt the outputs every call, a third of the
        # host time of a small compiled step
        codegen = graph.graph._codegen
        graph.graph._codegen = torch.fx.graph.CodeGen()
        graph.recompile()
        return graph, _builder(codegen.pytree_info.out_spec)

    def _compile(self, graph, leaves):
        """The traced graph compiled for these arguments: by Inductor directly (the graph
        and this program's key already fix what torch.compile's guards would check again on
        every call, 40-150 us of a 0.3 ms step), by torch.compile for another compiler, or
        as it is where there is none."""
        import torch
        compiler = self.backend.compiler
        if compiler is None:
            return graph
        if compiler == "inductor":
            import torch._inductor
            return torch._inductor.compile(graph, list(leaves))
        return torch.compile(graph, backend=compiler, fullgraph=True, dynamic=False)


def _shape_of(tree, leaves, tensor):
    """A hashable description of nested lists, tuples and dicts of tensors (and other
    values), appending the leaves to ``leaves`` in torch's pytree order (dicts in their keys'
    order; None is a leaf too): for each tensor its shape, its strides where it is not
    contiguous (torch.fx records a reshape of a contiguous tensor as a view, which fails on
    a transposed one of the same shape), its dtype and device.  A few times faster than
    torch's pytree flattening and the hashing of its spec, which every call pays."""
    kind = type(tree)
    if kind is list or kind is tuple:
        return (kind, tuple([_shape_of(a, leaves, tensor) for a in tree]))
    if kind is dict:
        return (dict, tuple(tree), tuple([_shape_of(a, leaves, tensor) for a in tree.values()]))
    leaves.append(tree)
    if isinstance(tree, tensor):
        return (tuple(tree.shape), None if tree.is_contiguous() else tree.stride(), tree.dtype,
                tree.device)
    return (kind, tree)


def _builder(spec):
    """``build(leaves)``: the nesting of lists, tuples and dicts that a torch pytree ``spec``
    describes, filled from the iterator ``leaves``, made once per spec (torch's unflattening
    walks the spec on every call; other containers keep it)."""
    from torch.utils import _pytree
    if spec.is_leaf():
        return next
    children = spec.children() if hasattr(spec, "children") else spec.children_specs
    kind, parts = spec.type, [_builder(c) for c in children]
    if kind is list:
        return lambda leaves: [part(leaves) for part in parts]
    if kind is tuple:
        return lambda leaves: tuple([part(leaves) for part in parts])
    if kind is dict:
        keys = list(spec.context)
        return lambda leaves: dict(zip(keys, [part(leaves) for part in parts]))
    return lambda leaves: _pytree.tree_unflatten([next(leaves) for _ in range(spec.num_leaves)],
                                                 spec)


class CompileFailed(RuntimeError):
    """torch.compile could not compile a traced program (no C++ compiler, a Triton error):
    nnx.compile_step runs that step eagerly instead and says why."""


def _root_cause(e):
    """The innermost exception under torch's wrappers (BackendCompilerFailed and others)."""
    seen = {id(e)}
    while True:
        inner = getattr(e, "inner_exception", None) or e.__cause__
        if inner is None or id(inner) in seen:
            return e
        seen.add(id(inner))
        e = inner


def _first_line(e):
    lines = [s for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__
