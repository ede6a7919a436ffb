"""Checkpoints: a model's architecture and parameters in one file.

Format (version 1): a NumPy ``.npz`` archive (a zip of ``.npy`` arrays; nothing pickled)
holding one array per parameter, named by ``module.named_params()`` (``0.W``, ``0.b``, ...),
and ``__meta__``, a JSON string::

    {"format": "nnx-checkpoint", "version": 1,
     "architecture": {"type": "Sequential", "args": {}, "children": [...]},
     "dtype": "float32", "params": {"0.W": [784, 200], ...}, "extra": {...}}

Buffers (non-trainable state such as BatchNorm's running statistics, ``named_buffers()``)
are arrays beside the parameters, listed under "buffers" in the metadata.

It is written to a temporary file and renamed, so a crash never leaves half a checkpoint.
"""

import json
import os
import zipfile

from nnx import backends

from . import outputs
from ._deferred import check_deferred
from .device import short_dtype
from .errors import NNXError
from .module import Module, registry

FORMAT, VERSION = "nnx-checkpoint", 1


class CheckpointError(NNXError, ValueError):
    """A file that is not an nnx checkpoint, or a damaged or mismatched one."""


def save(module, path, **extra):
    """Write ``module`` (architecture + parameters) to ``path``; ``extra`` is stored as JSON.

    ``path`` may be a new file or an existing nnx checkpoint (replaced atomically, keeping
    its file mode); any other existing file is refused, never overwritten.  Deferred checks
    still pending are verified first (``nnx.check_deferred``).
    """
    if not isinstance(module, Module):
        raise CheckpointError(f"save: expected an nnx module, got {type(module).__name__}")
    check_deferred()            # parameters trained on bad labels are not written silently
    path = check_target(path)
    named = module.named_params()
    meta = {"format": FORMAT, "version": VERSION, "architecture": module.architecture(),
            "dtype": short_dtype(named[0][1].dtype) if named else None,
            "params": {n: list(p.shape) for n, p in named}, "extra": extra}
    buffers = module.named_buffers()
    if buffers:
        meta["buffers"] = {n: list(b.shape) for n, b in buffers}
    arrays = {n: backends.to_host(p) for n, p in named + buffers}
    folder = os.path.dirname(os.path.abspath(path))
    text = json.dumps(meta, default=_plain)
    try:
        outputs.write_atomically(path, lambda f: backends.host.write_npz(f, arrays, text),
                                 ours=is_checkpoint)
    except (FileNotFoundError, NotADirectoryError):
        raise CheckpointError(f"cannot save {path}: the folder {folder} does not exist; "
                              f"create it first") from None
    except PermissionError:
        raise CheckpointError(f"cannot save {path}: the folder {folder} is not writable"
                              ) from None


def check_target(path):
    """``path`` as a string when a checkpoint may be written there, else CheckpointError:
    an empty path, a folder, or an existing file that is not an nnx checkpoint (the rule of
    every output nnx writes: ``nnx.outputs.check``)."""
    return outputs.check(path, "save", is_checkpoint, "an nnx checkpoint",
                         error=CheckpointError)


def is_checkpoint(path):
    """Whether ``path`` is a regular file holding nnx checkpoint metadata."""
    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return False
    try:
        meta = json.loads(backends.host.load_npz_meta(path) or "null")
    except Exception:                   # anything unreadable is not one of ours
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def _plain(value):
    """JSON for NumPy scalars and the like in ``extra`` (their Python value, else text)."""
    return value.item() if hasattr(value, "item") else str(value)


def build(architecture):
    """A fresh module from an ``architecture()`` description."""
    kind = architecture.get("type")
    cls = registry.get(kind)
    if cls is None:
        raise CheckpointError(f"unknown module type {kind!r}")
    children = [build(c) for c in architecture.get("children", [])]
    if hasattr(cls, "from_config"):
        return cls.from_config(architecture.get("args", {}), children)
    args = architecture.get("args", {})
    positional = [v for k, v in args.items() if k.startswith("_")]
    keywords = {k: v for k, v in args.items() if not k.startswith("_")}
    return cls(*children, *positional, **keywords)


MAX_DEPTH = 64                 # nesting of modules in a checkpoint's architecture
DTYPES = ("float16", "float32", "float64")
SHAPE_FIELDS = ("params", "buffers")   # top-level meta fields: array name -> shape
SMALL = 1 << 20                # elements any module may allocate without stored arrays


def check_meta(meta, arrays):
    """Validate the metadata's structure against the stored ``arrays`` before anything is
    built: field types, nesting depth, declared shapes, and sizes that the stored arrays
    bound.  Raises CheckpointError (without the file name) on the first problem."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"the metadata is not a JSON object (found "
                              f"{type(meta).__name__})")
    if meta.get("format") != FORMAT:
        raise CheckpointError("not an nnx checkpoint (no nnx metadata)")
    version = meta.get("version")
    if type(version) is not int or version != VERSION:
        raise CheckpointError(f"checkpoint version {version!r} is not supported (this nnx "
                              f"reads version {VERSION})")
    if meta.get("dtype") is not None and meta.get("dtype") not in DTYPES:
        raise CheckpointError(f"dtype: {meta.get('dtype')!r} is not one of "
                              f"{', '.join(DTYPES)}")
    if not isinstance(meta.get("extra", {}), dict):
        raise CheckpointError(f"extra: expected an object, found "
                              f"{type(meta['extra']).__name__}")
    declared = {}
    for field in SHAPE_FIELDS:
        shapes = meta.get(field, {})
        if not isinstance(shapes, dict):
            raise CheckpointError(f"{field}: expected an object (name -> shape), found "
                                  f"{type(shapes).__name__}")
        for name, shape in shapes.items():
            if not (isinstance(shape, list) and
                    all(type(n) is int and n >= 0 for n in shape)):
                raise CheckpointError(f"{field}.{name}: expected a list of sizes, found "
                                      f"{shape!r:.60}")
            if name not in arrays:
                continue                       # reported below, all names at once
            stored = tuple(arrays[name].shape)
            if stored != tuple(shape):
                raise CheckpointError(f"{field}.{name}: declared shape {tuple(shape)} but the "
                                      f"stored array has shape {stored}")
            if getattr(arrays[name].dtype, "kind", "f") != "f":
                raise CheckpointError(f"{field}.{name}: stored as {arrays[name].dtype}, "
                                      f"expected floating point")
            declared[name] = stored
    names = [n for field in SHAPE_FIELDS for n in meta.get(field, {})]
    if sorted(arrays) != sorted(names):
        raise CheckpointError(f"parameters {sorted(arrays)} do not match the "
                              f"architecture's {sorted(names)} (stored arrays against "
                              f"declared ones)")
    total = 0
    for shape in declared.values():
        size = 1
        for n in shape:
            size *= n
        total += size
    _check_node(meta.get("architecture"), "architecture", 0, max(total, SMALL))


def _check_node(node, where, depth, budget):
    if depth > MAX_DEPTH:
        raise CheckpointError(f"the architecture is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(node, dict):
        raise CheckpointError(f"{where}: expected an object, found {type(node).__name__}")
    if not isinstance(node.get("type"), str):
        raise CheckpointError(f"{where}.type: expected a module name, found "
                              f"{node.get('type')!r:.60}")
    args, children = node.get("args", {}), node.get("children", [])
    if not isinstance(args, dict):
        raise CheckpointError(f"{where}.args: expected an object, found {type(args).__name__}")
    if not isinstance(children, list):
        raise CheckpointError(f"{where}.children: expected a list, found "
                              f"{type(children).__name__}")
    size = 1
    for n in _integers(args, 0):
        size *= max(abs(n), 1)
        if size > budget:
            raise CheckpointError(f"{where}: {node['type']} declares sizes {args} larger than "
                                  f"the stored parameters allow")
    for i, child in enumerate(children):
        _check_node(child, f"{where}.children[{i}]", depth + 1, budget)


def _integers(value, depth):
    """The integers (not bools) inside a JSON value, nested lists and objects included."""
    if depth > MAX_DEPTH:
        raise CheckpointError(f"module arguments nested more than {MAX_DEPTH} levels deep")
    if type(value) is int:
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _integers(v, depth + 1)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _integers(v, depth + 1)


def load(path, *, device=None, dtype=None):
    """The module saved at ``path``, on ``device`` (default: the current device), in
    ``dtype`` (default: the saved one).  It comes back in training mode, as modules do.

    The metadata is checked against the stored arrays before anything is built: a damaged
    or hostile file raises one CheckpointError naming it."""
    path = os.fsdecode(os.fspath(path)) if isinstance(path, (str, bytes, os.PathLike)) \
        else str(path)
    if not path:
        raise CheckpointError("load: the path is empty; give a checkpoint file")
    if "\0" in path:
        raise CheckpointError(f"load: the path {path!r} contains a NUL character")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path}: not an nnx checkpoint (not an .npz archive)")
        meta, arrays = backends.host.load_npz(path)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError,
            NotImplementedError, RuntimeError, MemoryError) as e:
        raise CheckpointError(f"{path}: not a readable nnx checkpoint "
                              f"({type(e).__name__}: {e})") from None
    try:
        meta = json.loads(meta) if meta is not None else {}
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: damaged metadata ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: damaged metadata (nested too deeply to read)") \
            from None
    try:
        check_meta(meta, arrays)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    rng = backends.host.get_state()      # building draws initial weights: give them back
    try:
        module = build(meta["architecture"])
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except Exception as e:              # a constructor refusing its arguments, whatever it is
        raise CheckpointError(f"{path}: cannot rebuild the architecture "
                              f"({type(e).__name__}: {e})") from None
    finally:
        backends.host.set_state(rng)
    if device is not None or dtype or meta.get("dtype"):
        module.to(device, dtype or meta.get("dtype"))
    buffers = _take_buffers(path, module, arrays)
    names = [n for n, _ in module.named_params()]
    if sorted(names) != sorted(arrays):
        raise CheckpointError(f"{path}: parameters {sorted(arrays)} do not match the "
                              f"architecture's {sorted(names)}")
    for (name, p) in module.named_params():
        if tuple(arrays[name].shape) != tuple(p.shape):
            raise CheckpointError(f"{path}: parameter {name} has shape "
                                  f"{tuple(arrays[name].shape)}, the architecture needs "
                                  f"{tuple(p.shape)}")
    target = backends.device_of(module.params()[0]) if names else None
    xp = target.xp if names else None
    module.set_params([xp.astype(backends.from_host(arrays[n], target), p.dtype)
                       for n, p in module.named_params()])
    if buffers:
        module.set_buffers([xp.astype(backends.from_host(buffers[n], target), b.dtype)
                            for n, b in module.named_buffers()])
    return module


def _take_buffers(path, module, arrays):
    """Remove the module's buffers from ``arrays`` (checked for name and shape) and return
    them; the parameters are left."""
    taken = {}
    owners = {}
    def walk(m, prefix):
        for n in m.buffer_names:
            owners[prefix + n] = (m, n)
        for i, c in enumerate(m.children()):
            walk(c, f"{prefix}{m._child_name(i)}.")
    walk(module, "")
    for name, b in module.named_buffers():
        if name not in arrays:
            raise CheckpointError(f"{path}: buffer {name} of the architecture is missing")
        taken[name] = arrays.pop(name)
        if tuple(taken[name].shape) != tuple(b.shape):
            raise CheckpointError(f"{path}: buffer {name} has shape {tuple(taken[name].shape)}"
                                  f", the architecture needs {tuple(b.shape)}")
        if not backends.host.all_finite(taken[name]):
            raise CheckpointError(f"{path}: buffer {name} holds NaN or infinite values (a "
                                  f"damaged file, or saved from a diverged run)")
        owner, local = owners[name]
        problem = owner.buffer_problem(local, taken[name])
        if problem:
            raise CheckpointError(f"{path}: buffer {name} {problem} (a damaged file)")
    return taken

