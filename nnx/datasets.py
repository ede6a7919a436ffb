"""MNIST and Fashion-MNIST: a checked IDX reader, a search path and a verified download.

    x_train, y_train, x_test, y_test = nnx.datasets.load_mnist()

Where the four files come from, in order: the ``path`` argument, the ``NNX_DATA``
environment variable, then the per-user cache ``$XDG_CACHE_HOME/nnx/<kind>`` (default
``~/.cache/nnx/<kind>``).  Only the cache is ever downloaded into; a folder you name
yourself (``path`` or ``NNX_DATA``) that lacks the files is an error, never a download.
"""

import gzip
import hashlib
import os
import struct
import warnings
import zlib
from typing import NamedTuple

from nnx.backends import host

from . import outputs
from .errors import NNXError


class DatasetError(NNXError, ValueError):
    """A data file is missing, truncated, corrupt, or does not match its partner."""


class DatasetWarning(UserWarning):
    """A valid data file whose checksum is not the published one (accepted, with a note)."""


FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGES, LABELS = 0x00000803, 0x00000801          # magic: 0, 0, type 0x08 (ubyte), ndim
UBYTE = 0x08
SIDE = 28
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/",
              "http://yann.lecun.com/exdb/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
                      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/"
                      "master/data/fashion/"),
}
# A download is accepted when the sha256 of its bytes, or of its decompressed bytes,
# is listed.  MNIST: the decompressed IDX files (mirrors recompress them differently);
# Fashion-MNIST: the .gz files as published by Zalando.
SHA256 = {
    "mnist": {
        FILES[0]: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        FILES[1]: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        FILES[2]: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        FILES[3]: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        FILES[0]: "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        FILES[1]: "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        FILES[2]: "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        FILES[3]: "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
}


class Dataset(NamedTuple):
    """Host arrays: float32 images in [0, 1] of shape (N, 784) and int64 labels."""
    x_train: object
    y_train: object
    x_test: object
    y_test: object


def _raw_bytes(path):
    """The file's bytes, decompressed when they start with the gzip magic 1f 8b."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read it ({e.strerror or e})") from None
    if data[:2] != b"\x1f\x8b":
        _remember_digests(path, data, data)
        return data
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: corrupt or truncated gzip data ({e}); "
                           f"delete it and download it again") from None
    _remember_digests(path, data, raw)
    return raw


_digests = {}          # (real path, size, mtime) -> sha256 of the file and of its IDX bytes


def _key(path):
    st = os.stat(path)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


def _remember_digests(path, data, raw):
    try:
        key = _key(path)
    except OSError:
        return
    if key not in _digests:
        file_digest = hashlib.sha256(data).hexdigest()
        _digests[key] = (file_digest, file_digest if raw is data
                         else hashlib.sha256(raw).hexdigest())


def identify(path):
    """Which data set (``"mnist"``, ``"fashion-mnist"``) a file is by its published
    checksum, of its bytes or its decompressed bytes; None when the checksum is unknown.
    Each file is hashed once (remembered by path, size and modification time)."""
    path = os.fspath(path)
    try:
        key = _key(path)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read it ({e.strerror or e})") from None
    if key not in _digests:
        _raw_bytes(path)
    digests = _digests.get(key, ())
    for kind, known in SHA256.items():
        if any(d in known.values() for d in digests):
            return kind
    return None


def _balanced(labels):
    """Whether every class 0..9 has exactly 1/10 of the labels (Fashion-MNIST's splits)."""
    counts = [0] * 10
    for value in labels.tolist():
        counts[value] += 1
    return len(set(counts)) == 1


def _check_kind(path, name, kind, labels=None):
    """Refuse a file of the other data set; return a note for an unknown but valid file."""
    found = identify(path)
    if found == kind:
        return None
    if found is not None:
        name = "MNIST" if found == "mnist" else found
        raise DatasetError(f"{path}: these are {name} files, not {kind}; point the path (or NNX_DATA, or --data) at "
                           f"the {kind} files, or ask for kind={found!r}")
    if labels is not None and labels.shape[0] in (60000, 10000):
        # the published splits: Fashion-MNIST has exactly 6000 / 1000 images per class,
        # MNIST does not; this tells raw copies (whose checksum is not listed) apart
        looks = "fashion-mnist" if _balanced(labels) else "mnist"
        if looks != kind:
            raise DatasetError(f"{path}: these look like {looks} files, not {kind} (the "
                               f"labels are {'' if looks == 'fashion-mnist' else 'not '}"
                               f"exactly balanced over the 10 classes); point the path "
                               f"(or NNX_DATA, or --data) at the {kind} files")
    return path


def _parse(path, magic=None):
    """(dims, data bytes, header length) of an unsigned-byte IDX file, fully checked."""
    data = _raw_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: truncated header ({len(data)} bytes; an IDX file "
                           f"starts with a 4-byte magic number)")
    (found,) = struct.unpack(">I", data[:4])
    kinds = {IMAGES: "an images file", LABELS: "a labels file"}
    if found >> 16 != 0:
        raise DatasetError(f"{path}: bad magic number 0x{found:08x}; not an IDX file "
                           f"(expected 0x{IMAGES:08x} for images, 0x{LABELS:08x} for labels)")
    if (found >> 8) & 0xFF != UBYTE:
        raise DatasetError(f"{path}: element type 0x{(found >> 8) & 0xFF:02x} is not "
                           f"unsigned byte (0x{UBYTE:02x})")
    if magic is not None and found != magic:
        what = kinds.get(found, f"an IDX file with {found & 0xFF} dimensions")
        raise DatasetError(f"{path}: expected {kinds[magic]} (magic 0x{magic:08x}) but "
                           f"this is {what} (magic 0x{found:08x}); are the files swapped?")
    ndim = found & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated header ({len(data)} bytes, "
                           f"{ndim} dimensions need {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    size = 1
    for n in dims:
        size *= n
    if len(data) - header != size:
        problem = "truncated" if len(data) - header < size else "has trailing bytes"
        raise DatasetError(f"{path}: {problem}: dimensions {'x'.join(map(str, dims))} need "
                           f"{size} bytes of data after the header, found {len(data) - header}")
    return dims, data, header


def read_idx(path):
    """The read-only uint8 host array of an IDX file (gzip or raw), shaped as its header says."""
    dims, data, header = _parse(os.fspath(path))
    return host.frombuffer(data, "uint8", dims, offset=header)


def _load_pair(images_path, labels_path):
    """(float32 images (N, 784) in [0, 1], int64 labels (N,)) from one split's files."""
    dims, images, offset = _parse(images_path, IMAGES)
    if dims[1:] != (SIDE, SIDE):
        raise DatasetError(f"{images_path}: images are {'x'.join(map(str, dims[1:]))}, "
                           f"MNIST images are {SIDE}x{SIDE}")
    (count,), labels, label_offset = _parse(labels_path, LABELS)
    if count != dims[0]:
        raise DatasetError(f"{images_path} has {dims[0]} images but {labels_path} has "
                           f"{count} labels; the two files must come from the same split")
    if count == 0:
        raise DatasetError(f"{images_path} holds no images (0 in its header); the file is "
                           f"truncated or not a real split: download it again")
    top = max(labels[label_offset:], default=0)
    if top > 9:
        raise DatasetError(f"{labels_path}: labels must lie in 0..9, found {top}")
    pixels = host.frombuffer(images, "uint8", (count, SIDE * SIDE), offset=offset)
    y = host.frombuffer(labels, "uint8", (count,), offset=label_offset)
    return host.scale(pixels, 1 / 255, "float32"), host.as_int64(y)


def cache_dir(kind="mnist"):
    """The per-user download folder: ``$XDG_CACHE_HOME/nnx/<kind>`` or ~/.cache/nnx/<kind>."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "nnx", kind)


def _find(folder, name):
    """``folder/name`` or ``folder/name.gz``, whichever exists, else None."""
    for candidate in (name, name + ".gz"):
        full = os.path.join(folder, candidate)
        if os.path.isfile(full):
            return full
    return None


def _fetch(url):
    """The bytes at ``url`` (replaced by tests; raises OSError when offline)."""
    import urllib.request                 # http, ssl, email: only when downloading
    request = urllib.request.Request(url, headers={"User-Agent": "nnx"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def _verified(blob, digest):
    if hashlib.sha256(blob).hexdigest() == digest:
        return True
    try:
        return hashlib.sha256(gzip.decompress(blob)).hexdigest() == digest
    except (OSError, EOFError, zlib.error):
        return False


def _download(kind, name, folder):
    """Fetch ``name.gz`` from the first mirror that serves bytes with the right checksum."""
    failures = []
    for base in MIRRORS[kind]:
        url = base + name + ".gz"
        try:
            blob = _fetch(url)
        except Exception as e:      # URLError, HTTPError, timeouts, IncompleteRead, ...
            failures.append(f"{url}: {e}")
            continue
        if not _verified(blob, SHA256[kind][name]):
            failures.append(f"{url}: checksum mismatch")
            continue
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, name + (".gz" if blob[:2] == b"\x1f\x8b" else ""))
        outputs.write_atomically(path, lambda f: f.write(blob))
        return path
    raise DatasetError(f"could not download {name}.gz ({'; '.join(failures)})")


def _missing_error(kind, missing, folder, source, offer_download):
    how = ("nnx train --data DIR, the NNX_DATA variable, or load_mnist(DIR)"
           + (", or call with download=True" if offer_download else ""))
    if os.path.lexists(folder) and not os.path.isdir(folder):
        return DatasetError(f"{folder} ({source}) is a file, not a folder; name the folder "
                            f"that holds the {kind} IDX files: {how}")
    files = ", ".join(f"{name}[.gz]" for name in missing)
    where = (f"looked in {folder} ({source})" if os.path.isdir(folder)
             else f"the folder {folder} ({source}) does not exist")
    return DatasetError(f"{kind} files missing: {files}; {where}. Put the files (gzip "
                        f"or raw IDX) there, or name the folder that holds them: {how}")


def data_folder(path=None, kind="mnist"):
    """(folder, where the name came from) that ``load_mnist(path, kind=kind)`` reads:
    ``path``, else ``$NNX_DATA``, else ``cache_dir(kind)``; a ``<kind>/`` subfolder of a
    folder you name is used when present.  The tests look exactly here too."""
    if path is not None:
        folder, source = os.fspath(path), "the path argument"
    elif os.environ.get("NNX_DATA"):
        folder, source = os.environ["NNX_DATA"], "NNX_DATA"
    else:
        folder, source = cache_dir(kind), "cache"
    if source != "cache" and os.path.isdir(os.path.join(folder, kind)):
        folder = os.path.join(folder, kind)
    return folder, source


def load_mnist(path=None, *, download=True, kind="mnist", train=True):
    """MNIST (or ``kind="fashion-mnist"``) as ``Dataset(x_train, y_train, x_test, y_test)``.

    ``path`` (or else ``NNX_DATA``) names a folder holding the four IDX files, gzipped or
    raw; a ``<kind>/`` subfolder of it is used when present.  Without either, the files
    are read from ``cache_dir(kind)``, downloaded there first (checksums verified, each
    written atomically) when missing and ``download`` is true.  ``train=False`` needs and
    reads only the two test files (``x_train`` and ``y_train`` are then None).
    """
    if not isinstance(kind, str) or kind not in MIRRORS:     # a list is not hashable
        raise DatasetError(f"load_mnist: unknown dataset kind {kind!r}; use one of "
                           f"{', '.join(MIRRORS)}")
    folder, source = data_folder(path, kind)
    names = FILES if train else FILES[2:]
    paths = {name: _find(folder, name) for name in names}
    missing = [name for name, found in paths.items() if found is None]
    if missing and not (download and source == "cache"):
        raise _missing_error(kind, missing, folder, source, source == "cache")
    for name in missing:
        try:
            paths[name] = _download(kind, name, folder)
        except DatasetError as e:
            raise DatasetError(f"{_missing_error(kind, missing, folder, source, False)}. {e}") \
                from None
    train = _load_pair(paths[FILES[0]], paths[FILES[1]]) if train else (None, None)
    test = _load_pair(paths[FILES[2]], paths[FILES[3]])
    labels = {FILES[1]: train[1], FILES[3]: test[1]}
    unknown = [note for name in names
               for note in [_check_kind(paths[name], name, kind, labels.get(name))] if note]
    if unknown:
        warnings.warn(f"{kind}: the checksum is not the published {kind} one for "
                      f"{', '.join(os.path.basename(p) for p in unknown)} in "
                      f"{os.path.dirname(unknown[0])}; using them because they are valid "
                      f"IDX files", DatasetWarning, stacklevel=2)
    return Dataset(train[0], train[1], test[0], test[1])


__all__ = ["DatasetError", "DatasetWarning", "Dataset", "identify", "load_mnist", "read_idx", "cache_dir",
           "data_folder"]
