"""Host-side (NumPy) arrays: random numbers, raw buffers and checkpoints.

The Array API standard has no random number generator, so every random draw nnx makes
(initial weights, dropout masks, shuffles) comes from one seeded NumPy generator on the host
and is then moved to the device.  That is also what makes the initial weights identical on
every backend.
"""

import os
import tempfile

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


def as_int64(host_array):
    return np.asarray(host_array, dtype=np.int64)


def save_npz(path, arrays):
    """Write a dict of host arrays to ``path`` atomically (temp file, fsync, rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nnx-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_npz(path):
    """Read every array of an .npz file into a dict (no pickles are ever loaded)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
