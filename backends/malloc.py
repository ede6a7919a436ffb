"""glibc malloc tuning for training loops: keep freed memory for reuse (an explicit opt-in).

NumPy's large temporaries come from glibc malloc, which by default hands freed memory above
a dynamic threshold back to the OS and faults it in again on the next step (hundreds of page
faults per step at batch 1000).  ``tune_malloc()`` raises M_MMAP_THRESHOLD and
M_TRIM_THRESHOLD so the process keeps that memory (up to ``TRIM_THRESHOLD`` freed bytes) and
reuses it, and sets M_MMAP_MAX to 0, so that blocks above glibc's largest mmap threshold
(32 MiB: a CNN's im2col columns at batch 1000, which Inductor's compiled step allocates
afresh each step) come from the heap too: the compiled torch CNN step at batch 1000 took
148 ms with 39,000 page faults per step without it, 112 ms with none.  It changes the whole process, so nothing calls it on import: ``nnx.tune_malloc()``
does, and so do ``nnx train`` and ``nnx-bench`` unless given ``--no-malloc-tuning``.
"""

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4   # glibc's mallopt numbers
MMAP_THRESHOLD = 32 << 20       # glibc's largest: blocks below this come from the heap
TRIM_THRESHOLD = 128 << 20      # freed memory kept for reuse before the heap shrinks

_malloc = "glibc defaults"


def tune_malloc():
    """Keep up to 128 MiB of freed memory at the top of the heap for reuse instead of
    returning it to the OS, and take every block, however large, from the heap (glibc
    only; elsewhere nothing changes).  Freed blocks below the top stay with the process for
    reuse, so its resident memory stays near its peak (one large evaluation batch, say)
    rather than going back down.  Process-wide and not undone.  Returns a line describing
    the setting now in force."""
    global _malloc
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and \
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        no_mmap = ok and libc.mallopt(M_MMAP_MAX, 0)
    except (OSError, AttributeError):
        ok = False                                  # not glibc: nothing to tune
    if ok:
        _malloc = (f"mallopt M_MMAP_THRESHOLD={MMAP_THRESHOLD >> 20} MiB, "
                   f"M_TRIM_THRESHOLD={TRIM_THRESHOLD >> 20} MiB"
                   + (", M_MMAP_MAX=0" if no_mmap else ""))
    return _malloc


def malloc_setting():
    return _malloc
