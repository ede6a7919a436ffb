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

from .device import short_dtype
from .errors import NNXError
from .module import Module, registry

FORMAT, VERSION = "nnx-checkpoint", 1


class CheckpointError(NNXError, ValueError):
    """A file that is not an nnx checkpoint, or a damaged or mismatched one."""


def save(module, path, **extra):
    """Write ``module`` (architecture + parameters) to ``path``; ``extra`` is stored as JSON."""
    if not isinstance(module, Module):
        raise TypeError(f"save: expected an nnx module, got {type(module).__name__}")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder: give the checkpoint a file name, e.g. "
                              f"{os.path.join(str(path), 'model.npz')}")
    named = module.named_params()
    meta = {"format": FORMAT, "version": VERSION, "architecture": module.architecture(),
            "dtype": short_dtype(named[0][1].dtype) if named else None,
            "params": {n: list(p.shape) for n, p in named}, "extra": extra}
    buffers = module.named_buffers()
    if buffers:
        meta["buffers"] = {n: list(b.shape) for n, b in buffers}
    arrays = {n: backends.to_host(p) for n, p in named + buffers}
    backends.host.save_npz(path, arrays, json.dumps(meta, default=_plain))


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


def load(path, *, device=None, dtype=None):
    """The module saved at ``path``, on ``device`` (default: the current device), in
    ``dtype`` (default: the saved one).  It comes back in training mode, as modules do."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not an nnx checkpoint (not an .npz archive)")
    try:
        meta, arrays = backends.host.load_npz(path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable nnx checkpoint "
                              f"({type(e).__name__}: {e})") from None
    try:
        meta = json.loads(meta) if meta is not None else {}
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: damaged metadata ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an nnx checkpoint (no nnx metadata)")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')} is not "
                              f"supported (this nnx reads version {VERSION})")
    rng = backends.host.get_state()      # building draws initial weights: give them back
    try:
        module = build(meta["architecture"])
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the architecture ({e})") from None
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
    for name, b in module.named_buffers():
        if name not in arrays:
            raise CheckpointError(f"{path}: buffer {name} of the architecture is missing")
        taken[name] = arrays.pop(name)
        if tuple(taken[name].shape) != tuple(b.shape):
            raise CheckpointError(f"{path}: buffer {name} has shape {tuple(taken[name].shape)}"
                                  f", the architecture needs {tuple(b.shape)}")
    return taken

