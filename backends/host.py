"""Host-side (NumPy) arrays: random numbers, raw buffers and checkpoint archives.

The Array API standard has no random number generator, so every random draw nnx makes
(initial weights, dropout masks, shuffles) comes from one seeded NumPy generator on the host
and is then moved to the device.  That is also what makes the initial weights identical on
every backend.
"""

import numpy as np

_rng = np.random.default_rng(0)


def seed(value):
    """Re-seed the host generator that all of nnx draws from."""
    global _rng
    _rng = np.random.default_rng(value)


def normal(shape, std, dtype):
    return (_rng.standard_normal(shape) * std).astype(dtype)


def uniform(shape, low, high, dtype):
    return _rng.uniform(low, high, shape).astype(dtype)


def bernoulli_mask(shape, keep, dtype):
    """1/keep where a uniform draw is below ``keep``, else 0 (inverted dropout)."""
    return ((_rng.random(shape) < keep) / keep).astype(dtype)


def permutation(n):
    return _rng.permutation(n)


def get_state():
    return _rng.bit_generator.state


def set_state(state):
    _rng.bit_generator.state = state


def full(shape, value, dtype):
    return np.full(shape, value, dtype=dtype)


def frombuffer(buffer, dtype, shape, offset=0):
    """A read-only host array over ``buffer`` (used by the IDX reader)."""
    count = 1
    for n in shape:
        count *= n
    return np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)


def scale(host_array, factor, dtype):
    """``host_array * factor`` as ``dtype`` (pixels / 255)."""
    return np.multiply(host_array, factor, dtype=dtype)


def eye(n):
    """The (n, n) float64 identity."""
    return np.eye(n)


def as_array(values):
    """``values`` (a list, a scalar, anything NumPy reads) as a NumPy array."""
    return np.asarray(values)


def as_float64(values):
    return np.asarray(values, dtype=np.float64)


def all_finite(host_array):
    """Whether every value of a host array is finite (no NaN, no inf)."""
    return bool(np.isfinite(host_array).all())


def as_int64(host_array):
    return np.asarray(host_array, dtype=np.int64)


def write_npz(file, arrays, meta):
    """Host arrays and a JSON string ``meta`` into one .npz archive, written to ``file`` (an
    open binary file: nnx.outputs makes the write atomic)."""
    np.savez(file, **dict(arrays, __meta__=np.array(meta)))


def load_npz(path):
    """(meta string or None, {name: host array}) of an .npz file; pickles are refused."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = arrays.pop("__meta__", None)
    return (None if meta is None else str(meta)), arrays


def load_npz_meta(path):
    """The ``__meta__`` string of an .npz file (None when it has none); nothing else is read."""
    with np.load(path, allow_pickle=False) as z:
        return str(z["__meta__"]) if "__meta__" in z.files else None
