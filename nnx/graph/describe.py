"""``nnx.summary(module, input_shape=(1, 784))``: a table of layers, output shapes and
parameter counts (containers count their whole subtree), with the total at the bottom."""

import copy
import functools
import math
import warnings

from nnx import backends

from .. import _checks
from ..device import get_default_dtype, get_device, index_dtype, resolve_dtype, short_dtype

_BYTES = {"float16": 2, "float32": 4, "float64": 8}


def summary(module, input_shape=None):
    """The table as a string.  ``input_shape``: one shape, or a list of shapes for a graph
    with several inputs; without it the output shapes are left out.  A copy of the module
    runs one fprop in eval mode on ones, so the module itself is left untouched."""
    from ..module import Module
    _checks.instance("summary", "module", module, Module, "an nnx Module")
    if input_shape is not None:
        input_shape = _input_shapes(input_shape)
        wanted = getattr(module, "n_inputs", 1)         # a Graph says; any other module: one
        if len(input_shape) != wanted:
            raise _checks.ArgumentError(
                f"summary: input_shape must be {'one shape' if wanted == 1 else f'{wanted} shapes'}"
                f" for {type(module).__name__}, which takes {wanted} input"
                f"{'s' * (wanted != 1)}, got {len(input_shape)}: {input_shape!r}")
    module = copy.deepcopy(module)
    rows = []
    _walk(module, "", "", 0, rows)
    if input_shape is not None:
        _record_shapes(module, input_shape, rows)
    params = module.params()
    total = sum(math.prod(p.shape) for p in params)
    with_inputs = any(r["inputs"] for r in rows)
    header = ["Layer", "Inputs", "Output shape", "Params"] if with_inputs else \
             ["Layer", "Output shape", "Params"]
    table = [header] + [[r["label"]] + ([r["inputs"]] if with_inputs else [])
                        + [r.get("shape", "-"), f"{r['count']:,}"] for r in rows]
    widths = [max(len(line[c]) for line in table) for c in range(len(header))]

    def fmt(line):
        return "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()

    rule = "-" * len(fmt([c.ljust(w) for c, w in zip(header, widths)]))
    out = [fmt(header), rule] + [fmt(line) for line in table[1:]] + [rule]
    size = ""
    if params:
        name = short_dtype(params[0].dtype)
        size = f" ({_human(total * _BYTES.get(name, 4))} as {name})"
    out.append(f"Total params: {total:,}{size}")
    return "\n".join(out)


def _walk(module, name, inputs, depth, rows):
    children = module.children()
    text = type(module).__name__ if children or "\n" in repr(module) else repr(module)
    label = "  " * depth + (f"{name}: " if name else "") + text
    count = sum(math.prod(p.shape) for p in module.params())
    rows.append({"label": label, "inputs": inputs, "count": count, "module": module})
    sources = getattr(module, "nodes", None)
    for i, child in enumerate(children):
        child_name = module._child_name(i)
        ins = ", ".join(sources[child_name].sources) if isinstance(sources, dict) else ""
        _walk(child, child_name, ins, depth + 1, rows)


def _input_shapes(input_shape):
    """[shape, ...] from one shape or a list of them, each a tuple of integers >= 0."""
    what = "a shape such as (1, 784) or a list of shapes (one per graph input)"
    try:
        shapes = [input_shape] if _is_shape(input_shape) else list(input_shape)
        shapes = [tuple(_checks.non_negative_int("summary", "input_shape", n) for n in s)
                  for s in shapes]
    except TypeError:
        raise _checks.ArgumentTypeError(f"summary: input_shape must be {what}, "
                                        f"got {input_shape!r}") from None
    except _checks.ArgumentError:
        raise _checks.ArgumentError(f"summary: input_shape must be {what} (sizes >= 0), "
                                    f"got {input_shape!r}") from None
    if not shapes:
        raise _checks.ArgumentError(f"summary: input_shape must be {what}, got {input_shape!r}")
    return shapes


def _record_shapes(module, shapes, rows):
    for row in rows:
        m = row["module"]
        m.fprop = _recording(m.fprop, row)
    params = module.params()
    device = backends.device_of(params[0]) if params else get_device()
    dtype = params[0].dtype if params else resolve_dtype(get_default_dtype(), device)
    from ..layers.embedding import first_embedding
    if first_embedding(module) is not None:         # indices: row 0 of the table
        xs = [device.xp.zeros(s, dtype=index_dtype(device.xp), device=device.native)
              for s in shapes]
    else:
        xs = [device.xp.ones(s, dtype=dtype, device=device.native) for s in shapes]
    state = backends.host.get_state()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module.eval().fprop(*xs)
    finally:
        backends.host.set_state(state)


def _recording(fprop, row):
    @functools.wraps(fprop)
    def run(*xs):
        y = fprop(*xs)
        ys = y if isinstance(y, tuple) else (y,)
        row["shape"] = ", ".join(str(tuple(v.shape)) for v in ys)
        return y
    return run


def _is_shape(s):
    if isinstance(s, (str, bytes)):
        raise TypeError
    return len(s) == 0 or all(not hasattr(n, "__len__") for n in s)


def _human(n_bytes):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
