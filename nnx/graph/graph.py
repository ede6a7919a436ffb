"""Networks as graphs: named nodes, each a module applied to earlier nodes or graph inputs.

    g = nnx.Graph(inputs="x")
    g.add("h", nnx.Linear(4, 4), "x")
    g.add("a", nnx.Tanh(), "h")
    g.add("out", nnx.Add(), "a", "x")        # a skip connection: x feeds two nodes
    g.outputs("out")
    y = g.fprop(x);  dx = g.bprop(dy)

fprop runs the nodes in topological order; bprop runs them in reverse, adding the
gradients of a value that feeds several nodes (fan-out).  A node refers to the k-th output
of a multi-output module (Split, a Graph with several outputs) as "name:k".  Errors about
the wiring (unknown names, cycles, unused inputs or nodes) come when ``outputs`` is called
or at the first fprop; shape errors at the first fprop, naming the node.
"""

import difflib
import inspect
import math

from nnx.backends.errors import DeviceError

from ..device import namespace
from ..errors import ArgumentError, ArgumentTypeError, NNXError, ShapeError, StateError
from ..module import Module, check_distinct


class _Node:
    def __init__(self, module, sources):
        self.module, self.sources = module, list(sources)
        self.refs = None            # [(base name, output index or None)], set by _build


class Graph(Module):
    """A module made of named nodes; fprop(x) or fprop(x1, x2, ...), bprop(g) or bprop((g1, ...)).

    ``inputs``: a name or a list of names; ``nodes``: [(name, module, source or [sources])];
    ``outputs``: a name or a list of names.  Or build it step by step with add/outputs.
    With one input bprop returns dL/dx, with several a tuple; ``need_input_grad=False``
    returns None and skips every node that only leads back to the inputs.
    """

    def __init__(self, inputs="x", nodes=(), outputs=None):
        names = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not names:
            raise ArgumentError("Graph: give at least one input name, e.g. Graph(inputs='x')")
        for n in names:
            self._check_name(n, "input")
        if len(set(names)) != len(names):
            raise ArgumentError(f"Graph: input names {names} repeat a name")
        self.input_names = names
        self.nodes = {}
        self.output_names = []
        self._plan = None           # the nodes in topological order, once built
        self._values = None         # every value of the last fprop
        for spec in nodes:
            if not isinstance(spec, (tuple, list)) or len(spec) != 3:
                raise ArgumentError(f"Graph: a node is (name, module, sources), got {spec!r}")
            name, module, sources = spec
            self.add(name, module, *([sources] if isinstance(sources, str) else sources))
        if outputs is not None:
            self.outputs(*([outputs] if isinstance(outputs, str) else outputs))

    # -- construction --------------------------------------------------------------------
    def add(self, name, module, *sources):
        """Add node ``name`` computing ``module(*sources)``; returns the graph (chainable)."""
        self._check_name(name, "node")
        if name in self.nodes or name in self.input_names:
            raise ArgumentError(f"Graph.add: the name '{name}' is already taken by "
                             f"{'a node' if name in self.nodes else 'a graph input'}")
        if not isinstance(module, Module):
            raise ArgumentTypeError(f"Graph.add('{name}'): expected an nnx module, got "
                            f"{type(module).__name__}")
        if _contains(module, self):
            raise ArgumentError(f"Graph.add('{name}'): the graph would contain itself (the "
                                f"{type(module).__name__} given holds this graph); a graph "
                                f"cannot be its own node")
        # a module caches its fprop: each node (and everything inside it) needs its own
        check_distinct(f"Graph.add('{name}')", self.children() + [module],
                       [f"node '{n}'" for n in [*self.nodes, name]], container=self)
        if not sources:
            raise ArgumentError(f"Graph.add('{name}'): name the node's inputs, e.g. "
                             f"g.add('{name}', module, '{self.input_names[0]}')")
        for s in sources:
            if not isinstance(s, str):
                raise ArgumentTypeError(f"Graph.add('{name}'): inputs are node or input names "
                                f"(strings), got {s!r}")
        self.nodes[name] = _Node(module, sources)
        self._plan = self._values = None
        return self

    def outputs(self, *names):
        """Declare the output node(s) and check the wiring; returns the graph."""
        if not names:
            raise ArgumentError("Graph.outputs: name at least one node, e.g. g.outputs('out')")
        self.output_names = list(names)
        self._plan = self._values = None
        self._build()
        return self

    @staticmethod
    def _check_name(name, what):
        if not isinstance(name, str) or not name or any(c in name for c in ".:/ "):
            raise ArgumentError(f"Graph: {what} name {name!r} must be a non-empty string "
                             f"without '.', ':', '/' or spaces")

    @classmethod
    def from_config(cls, config, modules):
        """Rebuild from ``config()`` and the modules of ``children()`` (checkpoints)."""
        nodes = [(n, m, s) for (n, s), m in zip(config["wiring"], modules)]
        return cls(config["inputs"], nodes, config["outputs"])

    # -- module protocol -----------------------------------------------------------------
    @property
    def n_inputs(self):
        return len(self.input_names)

    @property
    def n_outputs(self):
        return len(self.output_names)

    def __getitem__(self, name):
        """The module of node ``name``."""
        return self.nodes[name].module

    def children(self):
        return [node.module for node in self.nodes.values()]

    def _child_name(self, i):
        return list(self.nodes)[i]

    def config(self):
        return {"inputs": list(self.input_names),
                "wiring": [[n, list(node.sources)] for n, node in self.nodes.items()],
                "outputs": list(self.output_names)}

    def __call__(self, *xs):
        return self.fprop(*xs)

    def __repr__(self):
        lines = [f"  ({n} <- {', '.join(node.sources)}): " + repr(node.module).replace("\n", "\n  ")
                 for n, node in self.nodes.items()]
        head = f"Graph(inputs={self.input_names}, outputs={self.output_names})"
        return head + ("\n" + "\n".join(lines) if lines else "")

    # -- checking the wiring -------------------------------------------------------------
    def _build(self):
        if self._plan is not None:
            return self._plan
        if not self.output_names:
            raise StateError("Graph has no outputs: call g.outputs('name') after adding "
                             "the nodes")
        for name, node in self.nodes.items():
            node.refs = [self._ref(s, f"node '{name}'") for s in node.sources]
            lo, hi = _arity(node.module)
            if not lo <= len(node.sources) <= hi:
                want = lo if lo == hi else (f"{lo} or more" if hi == math.inf else f"{lo} to {hi}")
                raise ArgumentError(f"Graph node '{name}': {type(node.module).__name__} takes "
                                 f"{want} input(s), but {len(node.sources)} were given "
                                 f"({', '.join(node.sources)})")
        self._output_refs = [self._ref(s, "Graph.outputs") for s in self.output_names]
        order = self._topological_order()
        needed = self._needed()
        for name in self.nodes:
            if name not in needed:
                raise ArgumentError(f"Graph node '{name}' leads to no output "
                                 f"({', '.join(self.output_names)}); remove it or add it "
                                 f"to g.outputs(...)")
        for name in self.input_names:
            if name not in needed:
                raise ArgumentError(f"Graph input '{name}' is not used by any node that leads "
                                 f"to an output; remove it from inputs or connect it")
        self._has_params = {n: bool(self.nodes[n].module.params()) for n in order}
        self._plan = order
        return order

    def _ref(self, source, where):
        """'h' -> ('h', None); 's:1' -> ('s', 1), after checking the name and the index."""
        base, colon, index = source.partition(":")
        if base not in self.nodes and base not in self.input_names:
            known = self.input_names + list(self.nodes)
            close = difflib.get_close_matches(base, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ArgumentError(f"{where}: unknown input '{base}'{hint}; graph inputs: "
                             f"{', '.join(self.input_names)}; nodes: "
                             f"{', '.join(self.nodes) or 'none'}")
        n_out = getattr(self.nodes[base].module, "n_outputs", 1) if base in self.nodes else 1
        if not colon:
            if n_out > 1:
                raise ArgumentError(f"{where}: '{base}' has {n_out} outputs; pick one as "
                                 f"'{base}:0' ... '{base}:{n_out - 1}'")
            return base, None
        if not index.isdigit() or int(index) >= n_out or n_out == 1:
            raise ArgumentError(f"{where}: '{source}' names output {index} of '{base}', which "
                             f"has {n_out} output(s)"
                             + (f"; write '{base}'" if n_out == 1 else ""))
        return base, int(index)

    def _topological_order(self):
        """Kahn's algorithm, ties broken by insertion order; a cycle is named in full."""
        waiting = {n: {b for b, _ in node.refs if b in self.nodes}
                   for n, node in self.nodes.items()}
        order = []
        while waiting:
            ready = [n for n, deps in waiting.items() if not deps]
            if not ready:
                raise ArgumentError(f"Graph has a cycle: {self._find_cycle(waiting)}; a node may only "
                                 f"depend on inputs and nodes that do not depend on it")
            for n in ready:
                order.append(n)
                del waiting[n]
            for deps in waiting.values():
                deps.difference_update(ready)
        return order

    def _find_cycle(self, waiting):
        """'a -> b -> a': a cycle among the nodes that never became ready."""
        path, seen = [], {}
        n = next(iter(waiting))
        while n not in seen:
            seen[n] = len(path)
            path.append(n)
            n = next(b for b, _ in self.nodes[n].refs if b in waiting)
        return " -> ".join(path[seen[n]:] + [n])

    def _needed(self):
        """The names (inputs and nodes) that some output depends on."""
        needed, stack = set(), [b for b, _ in self._output_refs]
        while stack:
            n = stack.pop()
            if n not in needed:
                needed.add(n)
                if n in self.nodes:
                    stack.extend(b for b, _ in self.nodes[n].refs)
        return needed

    # -- fprop and bprop -----------------------------------------------------------------
    def fprop(self, *xs):
        order = self._build()
        if len(xs) != len(self.input_names):
            raise ArgumentError(f"Graph.fprop: got {len(xs)} array(s) for the inputs "
                             f"({', '.join(self.input_names)}); call fprop("
                             f"{', '.join(self.input_names)})")
        values = dict(zip(self.input_names, xs))
        for name in order:
            node = self.nodes[name]
            args = [_pick(values, ref) for ref in node.refs]
            with _blame(name, node.module, args):
                values[name] = node.module.fprop(*args)
        self._values = values
        out = tuple(_pick(values, ref) for ref in self._output_refs)
        return out[0] if len(out) == 1 else out

    def bprop(self, grad_output, *, need_input_grad=True):
        if self._values is None:
            raise StateError("Graph.bprop called before fprop: run fprop first, it caches "
                             "what bprop needs")
        values, order = self._values, self._plan
        grads = {}
        for ref, g in zip(self._output_refs, self._output_grads(grad_output)):
            if g is not None:
                _accumulate(grads, ref, g)
        wants = {n: need_input_grad for n in self.input_names}   # does this value need dL/d?
        for name in order:
            wants[name] = self._has_params[name] or any(wants[b] for b, _ in self.nodes[name].refs)
        for name in reversed(order):
            if not wants[name]:
                continue
            node = self.nodes[name]
            g = self._grad_of(name, grads, values[name])
            need_in = any(wants[b] for b, _ in node.refs)
            with _blame(name, node.module, [_pick(values, r) for r in node.refs], "bprop"):
                result = node.module.bprop(g, need_input_grad=need_in)
            if not need_in:
                continue
            result = (result,) if len(node.refs) == 1 else tuple(result)
            for ref, gi in zip(node.refs, result):
                if wants[ref[0]]:
                    _accumulate(grads, ref, gi)
        if not need_input_grad:
            return None
        gx = tuple(grads.get((n, None)) for n in self.input_names)
        gx = tuple(g if g is not None else _zeros(values[n]) for g, n in zip(gx, self.input_names))
        return gx[0] if len(gx) == 1 else gx

    def _output_grads(self, grad_output):
        n = len(self._output_refs)
        if n == 1:
            grad_output = (grad_output,)
        elif not isinstance(grad_output, (tuple, list)) or len(grad_output) != n:
            raise ShapeError(f"Graph.bprop: the graph has {n} outputs "
                             f"({', '.join(self.output_names)}); pass a tuple of {n} grads "
                             f"(None for an output that gets no gradient)")
        for name, ref, g in zip(self.output_names, self._output_refs, grad_output):
            want = tuple(_pick(self._values, ref).shape)
            if g is not None and tuple(getattr(g, "shape", ())) != want:
                raise ShapeError(f"Graph.bprop: the grad for output '{name}' has shape "
                                 f"{tuple(getattr(g, 'shape', ()))}, but fprop returned {want}")
        return grad_output

    def _grad_of(self, name, grads, value):
        """The accumulated gradient of node ``name``'s output(s); zeros where none arrived."""
        if isinstance(value, tuple):
            return tuple(grads.pop((name, k), None) if (name, k) in grads else _zeros(v)
                         for k, v in enumerate(value))
        g = grads.pop((name, None), None)
        return _zeros(value) if g is None else g


def _contains(module, target):
    """Whether ``target`` is ``module`` or anywhere inside it (walked without recursion)."""
    stack, seen = [module], set()
    while stack:
        m = stack.pop()
        if m is target:
            return True
        if id(m) not in seen:
            seen.add(id(m))
            stack.extend(m.children())
    return False


def _arity(module):
    """(fewest, most) positional arrays ``module.fprop`` takes."""
    n = getattr(module, "n_inputs", None)
    if isinstance(n, int):
        return n, n
    lo, hi = 0, 0
    for p in inspect.signature(module.fprop).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            hi += 1
            lo += p.default is p.empty
        elif p.kind == p.VAR_POSITIONAL:
            hi = math.inf
    return lo, hi


def _pick(values, ref):
    base, k = ref
    return values[base] if k is None else values[base][k]


def _accumulate(grads, ref, g):
    """Fan-out: the gradients of a value used several times add up (never in place: a
    module may hand back its grad_output itself)."""
    grads[ref] = g if ref not in grads else grads[ref] + g


def _zeros(value):
    return namespace(value).zeros_like(value)


class _blame:
    """Re-raise a module's error with the node's name and its input shapes in front."""

    def __init__(self, name, module, args, step="fprop"):
        self.name, self.module, self.args, self.step = name, module, args, step

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None:
            return False
        shapes = ", ".join(str(tuple(getattr(a, "shape", ()))) for a in self.args)
        where = (f"Graph node '{self.name}' ({type(self.module).__name__} on input shapes "
                 f"{shapes}, {self.step})")
        if isinstance(err, (NNXError, DeviceError)) and len(err.args) == 1:
            raise type(err)(f"{where}: {err}") from err
        err.add_note(where)
        return False
