"""The files nnx writes: one rule for which existing file may be replaced, one atomic write.

Every output of ``nnx train`` (``--save``, ``--log``, ``--plot``), of ``nnx-bench``
(``--json``, ``--csv``, ``--plot``), ``nnx.save`` and the data download goes through here:

* ``check(path, kind, option)`` runs before any work.  It refuses an empty path, a folder, a
  missing or unwritable folder, something that is not a regular file, and an existing file
  that is not nnx's own output of that ``kind``.  nnx's own output of that kind is replaced:
  to replace anything else, delete it first (nnx never does).
* ``write_atomically(path, write)`` writes a temporary beside ``path`` and renames it over
  ``path``: a reader sees the old file or the whole new one, never a partial one.

How nnx recognises its own output of each kind (a mark it writes into every such file):

============  ===================================================================
checkpoint    an ``.npz`` whose ``__meta__`` says ``"format": "nnx-checkpoint"``
bench-json    a JSON object with ``"format": "nnx-bench"``
bench-csv,    a CSV whose first line is exactly the header nnx writes for it
log (.csv)    (the benchmark's columns; the metrics log's fields)
log (.jsonl)  JSON lines whose first line is an object with exactly the log's fields
plot          a PNG, SVG or PDF whose metadata ``Creator`` starts with ``nnx``
              (``metadata=plot_metadata(...)`` in matplotlib's ``savefig``)
============  ===================================================================
"""

import json
import os
import re
import secrets
import stat
import time

from .errors import NNXError


class OutputError(NNXError, ValueError):
    """An output path nnx will not write: refused before any work, naming the fix."""


TEMPORARY = ".nnx-tmp-"          # .<name>.nnx-tmp-<pid>-<random>: a write in progress
STALE_SECONDS = 24 * 3600
READ_LIMIT = 64 * 2 ** 20        # a larger file is never taken for one of nnx's own


# -- which existing file may be replaced --------------------------------------------------------
def check(path, option, ours, what, error=OutputError):
    """``path`` (a str) when nnx may write its output there, else ``error`` naming ``option``.

    ``ours(path) -> bool`` recognises nnx's own output of this kind (see the module's table);
    ``what`` names it in the message ("an nnx checkpoint", "an nnx-bench CSV", ...).
    """
    if path is None or not isinstance(path, (str, bytes, os.PathLike)):
        raise error(f"{option}: expected a file path, got {type(path).__name__}")
    path = os.fsdecode(os.fspath(path))
    if not path:
        raise error(f"{option}: the path is empty; give a file name")
    if "\0" in path:
        raise error(f"{option}: the path {path!r} contains a NUL character")
    if os.path.isdir(path):
        raise error(f"{option} {path} is a folder; give a file name inside it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise error(f"{option} {path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise error(f"{option} {path}: the folder {folder} is not writable")
    if os.path.lexists(path):
        if not os.path.isfile(path):
            raise error(f"{option} {path} exists and is not a regular file; refusing to "
                        f"replace it (choose another name)")
        if not _ours(ours, path):
            raise error(f"{option} {path} exists and is not {what}; refusing to overwrite "
                        f"it (delete it or choose another name)")
        if not os.access(path, os.W_OK):
            raise error(f"{option} {path} is not writable")
    return path


def _ours(ours, path):
    try:
        return bool(ours(path))
    except Exception:                   # anything unreadable is not one of ours
        return False


def head(path, size=READ_LIMIT):
    """The first ``size`` bytes of ``path`` (all of it when the file is smaller), or None
    when the file is larger than READ_LIMIT."""
    if os.path.getsize(path) > READ_LIMIT:
        return None
    with open(path, "rb") as f:
        return f.read(size)


def has_csv_header(fields):
    """A recogniser: the file's first line is exactly ``fields`` joined by commas."""
    line = ",".join(fields).encode()

    def ours(path):
        text = head(path, len(line) + 2)
        return text is not None and text.split(b"\n", 1)[0].rstrip(b"\r") == line
    return ours


def has_json_format(name):
    """A recogniser: the file is a JSON object whose "format" is ``name``."""
    def ours(path):
        text = head(path)
        if text is None:
            return False
        value = json.loads(text.decode("utf-8"))
        return isinstance(value, dict) and value.get("format") == name
    return ours


def has_jsonl_keys(fields):
    """A recogniser: the first line is a JSON object with exactly the keys ``fields``."""
    def ours(path):
        text = head(path, 1 << 16)
        first = json.loads(text.split(b"\n", 1)[0].decode("utf-8"))
        return isinstance(first, dict) and list(first) == list(fields)
    return ours


PLOT_MARK = "nnx"
_PLOT_MARKS = {                     # where matplotlib's savefig(metadata=...) puts "Creator"
    b"\x89PNG": re.compile(rb"tEXtCreator\x00nnx"),
    b"<?xml": re.compile(rb"<dc:creator>\s*<cc:Agent>\s*<dc:title>nnx"),
    b"%PDF": re.compile(rb"/Creator \(nnx"),
}


def plot_metadata(command):
    """``savefig``'s ``metadata=`` for a plot ``command`` draws ("nnx train --plot"): the
    mark ``is_plot`` looks for."""
    if not command.startswith(PLOT_MARK):
        command = f"{PLOT_MARK} {command}"
    return {"Creator": command}


def is_plot(path):
    """Whether ``path`` is a PNG, SVG or PDF that nnx drew (its Creator starts with nnx)."""
    text = head(path)
    if text is None:
        return False
    return any(text.startswith(magic) and mark.search(text)
               for magic, mark in _PLOT_MARKS.items())


# -- the atomic write -----------------------------------------------------------------------
def write_atomically(path, write, ours=None):
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it
    over ``path``: readers see the old file or the whole new one, never a partial one.

    The file gets the mode ``open()`` would give it (0666 less the umask), or keeps the
    mode of the file it replaces.  The temporary is ``.<name>.nnx-tmp-<pid>-<random>``;
    each write first removes such temporaries in the folder whose process is gone or that
    are a day old (left by a write that was killed).  A folder that is missing or not
    writable raises OSError naming ``path`` itself.  With ``ours`` (a recogniser, as for
    ``check``), a file that appeared at ``path`` since ``check`` and is not nnx's own output
    of that kind is refused (OutputError) rather than replaced.
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
        if ours is not None and os.path.lexists(path) and not (
                os.path.isfile(path) and _ours(ours, path)):
            raise OutputError(f"{path} appeared while nnx was working and is not nnx's own "
                              f"output of this kind; it is left as it is (delete it or "
                              f"choose another name)")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text, ours=None):
    """``text`` (UTF-8) into ``path``, atomically (``ours``: as for ``write_atomically``)."""
    data = text.encode("utf-8")
    write_atomically(path, lambda f: f.write(data), ours)


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
