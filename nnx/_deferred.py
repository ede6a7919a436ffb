"""Value checks that wait for a readback nnx makes anyway.

Checking values (labels in range, probabilities in [0, 1]) means reading something back from
the device: on a GPU, a synchronisation that stalls the step.  A deferred check leaves the
reductions it needs on the device (a min and a max, or one flag: no readback) and verifies
everything pending later, at once: ``nnx.check_deferred()``, or the next readback nnx makes
itself (``evaluate``, ``save``, the start of ``fit``).  Losses take it with
``check_labels = "deferred"``, Embedding with ``check_indices = "deferred"``.
"""
import array_api_compat

from nnx import backends

from .errors import ArgumentError

_PENDING = set()    # every Deferred with unverified entries, kept until verified: a loss
                    # dropped after a bad batch still has its verdict said
_FOLD = 256                         # entries kept per check before they fold into one


class Deferred:
    """The unverified checks of one module or loss, in call order.

    An entry is (first call, last call, key, 0-d device arrays, verdict): ``verdict(values)``
    gets the arrays' values as Python numbers and returns the exception to raise, or None.
    Entries of one key fold together (min of the minima, max of the maxima, or of the flags)
    once ``_FOLD`` are pending, so memory stays bounded in a loop that never reads back.
    """

    def __init__(self):
        self.calls = {}             # key -> how many calls recorded it (once per fprop)
        self.entries = []

    def record(self, key, arrays, verdict):
        """Keep ``arrays`` (0-d reductions, on the device) for the verdict later; nothing
        while nnx.compile_step traces a step (a compiled step checks labels its own way)."""
        if backends.tracing():
            return
        call = self.calls.get(key, 0)
        self.calls[key] = call + 1
        self.entries.append((call, call, key, tuple(arrays), verdict))
        _PENDING.add(self)
        if len(self.entries) >= _FOLD:
            self._fold()

    def forget_last(self):
        """Drop the entry just recorded (its verdict was given at once instead)."""
        self.entries = self.entries[:-1]

    def _fold(self):
        """Fold each key's entries into one: array operations only, no readback."""
        from .device import namespace
        by_key = {}
        for entry in self.entries:
            by_key.setdefault(entry[2], []).append(entry)
        folded = []
        for key, group in by_key.items():
            first, last, _, arrays, verdict = group[0][0], group[-1][1], *group[0][2:]
            xp = namespace(arrays[0])
            if len(group) > 1:
                columns = [xp.stack([e[3][i] for e in group]) for i in range(len(arrays))]
                if len(arrays) == 2:        # a range: (min, max)
                    arrays = (xp.min(columns[0]), xp.max(columns[1]))
                else:                       # a flag: any
                    arrays = (xp.any(columns[0]),)
            folded.append((first, last, key, arrays, verdict))
        self.entries = sorted(folded, key=lambda e: e[0])

    def verify(self):
        """Read every entry back (one readback each) and raise the first failure, naming the
        call(s) it came from; the entries are cleared either way."""
        entries, self.entries = self.entries, []
        _PENDING.discard(self)
        from .device import namespace
        for first, last, _, arrays, verdict in entries:
            both = namespace(arrays[0]).stack(arrays) if len(arrays) > 1 else arrays[0]
            values = backends.to_host(both).reshape(-1).tolist()        # one readback
            error = verdict(values)
            if error is not None:
                calls = f"call {first + 1}" if first == last else f"calls {first + 1} to {last + 1}"
                raise type(error)(f"{error} -- found by a deferred check in {calls} of "
                                  f"fprop; the steps since then trained on these values")


def deferring(owner, attribute, x):
    """Whether ``owner``'s checks of ``x`` wait for a later readback: its ``attribute`` is
    "deferred" and x lives away from the host (NumPy checks at once: nothing to read back);
    ArgumentError for a setting other than True, False or "deferred"."""
    return setting(owner, attribute) == "deferred" and not array_api_compat.is_numpy_array(x)


def pending(owner):
    """``owner``'s Deferred (its unverified checks), made on first use."""
    found = vars(owner).get("_deferred_checks")
    if found is None:
        found = owner._deferred_checks = Deferred()
    return found


def setting(owner, attribute):
    """``owner.attribute`` (True, False or "deferred"); ArgumentError for anything else."""
    value = getattr(owner, attribute)
    if value is True or value is False or value == "deferred":
        return value
    raise ArgumentError(f"{owner!r}.{attribute} must be True, False or 'deferred', got "
                        f"{value!r}")


def check_deferred():
    """Verify every deferred check that is still pending: the label ranges of losses with
    ``check_labels = "deferred"`` and the index ranges of Embeddings with
    ``check_indices = "deferred"``.  Raises the first failure (LabelError, ArgumentError),
    naming the call it came from; one readback per pending check, nothing to do when none is.
    ``evaluate``, ``save`` and ``fit`` call it first."""
    for waiting in list(_PENDING):
        waiting.verify()
