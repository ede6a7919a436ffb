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


def log_problem(path):
    """Why ``path`` cannot take a metrics log (None if it can): the format comes from the
    extension, and an existing file is never overwritten or appended to."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in LOG_FORMATS:
        return f"--log {path}: use a .csv or .jsonl file name (the format follows it)"
    if os.path.isdir(path):
        return f"--log {path} is a folder; give a file name"
    if os.path.lexists(path):
        return f"--log {path} exists; nnx never overwrites or appends to a file: pick a new name"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        return f"--log {path}: the folder {folder} does not exist or is not writable"
    return None


class MetricsLog:
    """One row per epoch (the fields of EpochStats), CSV with a header or JSON lines by the
    extension; each row is flushed and fsync'd, so a crash loses at most the epoch underway.
    The file is created exclusively: an existing one is an error, never clobbered."""

    def __init__(self, path, fields):
        problem = log_problem(path)
        if problem:
            raise FileExistsError(problem) if os.path.lexists(path) else ValueError(problem)
        self.path, self.fields = path, list(fields)
        self.csv = path.lower().endswith(".csv")
        self.file = open(path, "x", newline="", encoding="utf-8")
        if self.csv:
            import csv
            self.writer = csv.DictWriter(self.file, fieldnames=self.fields, lineterminator="\n")
            self.writer.writeheader()
            self._sync()

    def write(self, stats):
        values = dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) else dict(stats)
        values = {k: values.get(k) for k in self.fields}
        if self.csv:
            self.writer.writerow({k: "" if v is None else v for k, v in values.items()})
        else:
            self.file.write(json.dumps(values) + "\n")
        self._sync()

    def _sync(self):
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
