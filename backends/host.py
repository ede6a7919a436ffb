"""Host-side (NumPy) arrays: random numbers, raw buffers and checkpoints.

The Array API standard has no random number generator, so every random draw nnx makes
(initial weights, dropout masks, shuffles) comes from one seeded NumPy generator on the host
and is then moved to the device.  That is also what makes the initial weights identical on
every backend.
"""

import os
import secrets
import stat
import time

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


TEMPORARY = ".nnx-tmp-"          # .<name>.nnx-tmp-<pid>-<random>: a write in progress
STALE_SECONDS = 24 * 3600


def write_atomically(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it
    over ``path``: readers see the old file or the whole new one, never a partial one.

    The file gets the mode ``open()`` would give it (0666 less the umask), or keeps the
    mode of the file it replaces.  The temporary is ``.<name>.nnx-tmp-<pid>-<random>``;
    each write first removes such temporaries in the folder whose process is gone or that
    are a day old (left by a save that was killed).  A folder that is missing or not
    writable raises OSError naming ``path`` itself.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(folder)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None
    tmp = None
    for _ in range(100):
        tmp = os.path.join(folder, f".{os.path.basename(path)}{TEMPORARY}{os.getpid()}-"
                                   f"{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise type(e)(e.errno, f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.chmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _remove_stale_temporaries(folder):
    """Remove our own temporaries in ``folder`` whose process is dead or that are old."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    now = time.time()
    for name in names:
        if not name.startswith(".") or TEMPORARY not in name:
            continue
        pid, _, token = name.rsplit(TEMPORARY, 1)[1].partition("-")
        if not (pid.isdigit() and token and all(c in "0123456789abcdef" for c in token)):
            continue
        full = os.path.join(folder, name)
        try:
            old = now - os.lstat(full).st_mtime > STALE_SECONDS
            if old or not _alive(int(pid)):
                os.unlink(full)
        except OSError:
            pass


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True          # someone else's process, or we cannot tell: keep the file
    return True


def save_npz(path, arrays, meta):
    """Host arrays and a JSON string ``meta`` into one .npz file, written atomically."""
    arrays = dict(arrays, __meta__=np.array(meta))
    write_atomically(path, lambda f: np.savez(f, **arrays))


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
