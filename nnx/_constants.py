"""Device constants built from host arrays once per key and device: gather indices, masks,
aranges, pad columns.  Placed by ``backends.from_host`` (which CuPy honours where array
creation ignores ``device=``, and which gives concrete arrays even while a compiled step is
being traced, so no tracer is ever cached)."""

from nnx import backends


def on_device(key, like, build):
    """The cached device copy of ``build()`` (host arrays), keyed by ``key`` and the device
    of ``like``; built and moved once per shape and device (``from_host`` places it on that
    device, CuPy included).  The least recently used entry goes first when the cache is
    full, so what a layer just used stays."""
    device = backends.device_of(like)
    key = key + (device.spec,)
    hit = _cache.pop(key, None)
    if hit is None:
        if len(_cache) >= _SIZE:
            del _cache[next(iter(_cache))]          # the least recently used
        hit = tuple(backends.from_host(a, device) if hasattr(a, "dtype") else a
                    for a in build())
    _cache[key] = hit                               # now the most recently used
    return hit


_SIZE = 256
_cache = {}                 # insertion order is the order of last use
