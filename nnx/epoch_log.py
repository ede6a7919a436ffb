"""What training shows and keeps per epoch: the printed rows and progress bar of
``fit(verbose=...)``, and the metrics log of ``nnx train --log FILE``."""

import dataclasses
import json
import os

HEAD = f"{'epoch':>5} {'loss':>8} {'train acc':>9} {'test errors':>11} {'lr':>8} {'seconds':>7}"
LOSS_HEAD = f"{'epoch':>5} {'loss':>10} {'test loss':>10} {'lr':>8} {'seconds':>7}"
LOG_FORMATS = (".csv", ".jsonl")


def row(s):
    """One epoch's row under HEAD (classification) or LOSS_HEAD (any other loss)."""
    if s.train_accuracy is None:
        test = "-" if s.test_loss is None else f"{s.test_loss:.4g}"
        return f"{s.epoch:>5} {s.train_loss:>10.4g} {test:>10} {s.lr:>8.4g} {s.seconds:>7.2f}"
    errors = "-" if s.test_errors is None else s.test_errors
    return (f"{s.epoch:>5} {s.train_loss:>8.4f} {100 * s.train_accuracy:>8.2f}% "
            f"{errors:>11} {s.lr:>8.4g} {s.seconds:>7.2f}")


class Printer:
    """``fit``'s output: HEAD, then a row per epoch; with ``bar``, a progress bar over each
    epoch's steps (tqdm.auto: a widget in notebooks, text in a terminal, nothing when the
    output is not a terminal)."""

    def __init__(self, epochs, bar=True, classify=True):
        from tqdm.auto import tqdm
        self.tqdm, self.epochs, self.bar, self.epoch = tqdm, epochs, bar, 0
        self.tqdm.write(HEAD if classify else LOSS_HEAD)

    def progress(self, steps):
        self.epoch += 1
        if not self.bar:
            return steps
        return self.tqdm(steps, desc=f"epoch {self.epoch}/{self.epochs}", leave=False,
                         unit="step", disable=None, dynamic_ncols=True)

    def on_epoch(self, stats):
        self.tqdm.write(row(stats))


def check_log(path, fields, option="--log", error=None):
    """``path`` when a metrics log with ``fields`` may be written there, else ``error``
    (nnx.outputs.OutputError): the format comes from the extension; an existing file is
    replaced only when it is nnx's own log with the same fields (``nnx.outputs.check``)."""
    from . import outputs
    error = error or outputs.OutputError
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.fsdecode(os.fspath(path))
        if os.path.splitext(path)[1].lower() not in LOG_FORMATS:
            raise error(f"{option} {path}: use a .csv or .jsonl file name (the format "
                        f"follows it)")
    if not isinstance(path, str):
        raise error(f"{option}: expected a file path, got {type(path).__name__}")
    return outputs.check(path, option, _recogniser(path, fields),
                         "an nnx metrics log with the same fields", error=error)


def _recogniser(path, fields):
    from . import outputs
    if os.fsdecode(os.fspath(path)).lower().endswith(".csv"):
        return outputs.has_csv_header(fields)
    return outputs.has_jsonl_keys(fields)


class MetricsLog:
    """One row per epoch (the fields of EpochStats), CSV with a header or JSON lines by the
    extension.  After each row the whole file is written again atomically (temporary, fsync,
    rename), so a crash loses at most the epoch underway and a reader never sees half a row.
    An existing file is refused unless it is nnx's own log with the same fields (then it is
    replaced): see ``check_log``."""

    def __init__(self, path, fields):
        self.fields = list(fields)
        self.path = check_log(path, self.fields)
        self.csv = self.path.lower().endswith(".csv")
        self.ours = _recogniser(self.path, self.fields)
        self.lines = [",".join(self.fields)] if self.csv else []
        if self.csv:
            self._sync()

    def write(self, stats):
        values = dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) else dict(stats)
        values = {k: values.get(k) for k in self.fields}
        if self.csv:
            import csv
            import io
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="").writerow(
                ["" if v is None else v for v in values.values()])
            self.lines.append(buffer.getvalue())
        else:
            self.lines.append(json.dumps(values))
        self._sync()

    def _sync(self):
        from . import outputs
        outputs.write_text(self.path, "".join(line + "\n" for line in self.lines),
                           ours=self.ours)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
