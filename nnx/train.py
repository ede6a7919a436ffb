"""Training and evaluation: the classic mini-batch loop, made convenient.

``fit`` is exactly this loop, with bookkeeping around it::

    for epoch in range(epochs):
        order = permutation(N)                    # on the host; gathered on the device
        for each batch idx of order:
            z = net.fprop(x[idx])
            loss.fprop(z, t[idx])
            net.bprop(loss.bprop(), need_input_grad=False)
            opt.step()

The data set is moved to the device once; per-step losses stay on the device and are read
back once per epoch (no host synchronisation per step on a GPU).
"""

import contextlib
import dataclasses
import math
import time

from nnx import backends

from . import _checks, _deferred
from ._deferred import check_deferred
from .device import asarray, get_device, index_dtype, namespace, permutation, short_dtype
from .layers.embedding import first_embedding
from .errors import ArgumentError, LabelError, NNXError, NonFiniteError, ShapeError
from .losses import Loss
from .module import Module


class TrainingDiverged(NNXError, FloatingPointError):
    """The loss became NaN or infinite, or exploded (see ``fit``)."""


DIVERGENCE_FACTOR = 1000.0      # a step's loss above this × max(first step's loss, 1): diverged


@dataclasses.dataclass
class EpochStats:
    """One epoch of ``fit``.  Classification (SoftmaxCrossEntropy, CrossEntropy, Hinge):
    train_accuracy and test_errors; any other loss (MSE, BCEWithLogits): test_loss, the
    loss's mean over the test set, and None for the two classification metrics."""
    epoch: int
    train_loss: float
    train_accuracy: float | None
    test_errors: int | None
    test_total: int | None
    lr: float
    seconds: float
    test_loss: float | None = None


def to_device(x, t, device=None):
    """Host arrays (or any backend's) onto ``device``: float inputs; integer labels as
    int64, float targets (regression, multi-label) in the default dtype like the inputs."""
    device = get_device() if device is None else backends.resolve(device)
    t_host = backends.to_host(t)
    if namespace(t_host).isdtype(t_host.dtype, "real floating"):
        return asarray(x, device=device), asarray(t_host, device=device)
    return asarray(x, device=device), asarray(backends.host.as_int64(t_host), device=device)


def check_labels(t, n_classes, name="labels"):
    """Once per data set, so that the loss can skip the per-step check (a GPU sync)."""
    xp = namespace(t)
    low, high = int(xp.min(t)), int(xp.max(t))
    if low < 0 or high >= n_classes:
        raise LabelError(f"{name} must lie in [0, {n_classes}) for a network with "
                         f"{n_classes} outputs, got values from {low} to {high}")


def evaluate(net, x, t, batch_size=1000, *, fprop=None):
    """Number of misclassified rows (argmax of the output != label).

    Labels outside [0, classes) raise LabelError; rows whose output is NaN or infinite
    raise NonFiniteError (they have no class).  Two readbacks: the labels' range, the counts.
    Deferred checks still pending are verified first (``nnx.check_deferred``).

    ``fprop``: ``nnx.compile_fprop(net)``, to run each batch as one compiled program (JAX;
    eager elsewhere); keep it and pass it to every evaluation, so that each batch shape is
    compiled once.  None: ``net.fprop``.
    """
    _checks.instance("evaluate", "net", net, Module, "an nnx Module")
    check_deferred()
    batch_size = _checks.positive_int("evaluate", "batch_size", batch_size)
    forward = _forward("evaluate", net, fprop)
    xp = namespace(x)
    _check_pair("evaluate", x, t)
    wrong = bad = None
    n = x.shape[0]
    if n == 0:          # "0 errors" of nothing would read as a perfect score
        raise ArgumentError("evaluate: x has 0 rows; give at least one example to evaluate")
    count = index_dtype(xp)
    with _eval_mode(net):
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)       # the standard leaves overshoot undefined
            z = forward(x[start:stop, ...])
            if start == 0:
                check_scores("evaluate", z, stop - start)
                check_labels(t, int(z.shape[1]), "evaluate: labels")
            miss = xp.sum(xp.astype(xp.argmax(z, axis=1) != t[start:stop], count))
            nan = xp.sum(xp.astype(~xp.all(xp.isfinite(z), axis=1), count))
            wrong = miss if wrong is None else wrong + miss
            bad = nan if bad is None else bad + nan
    counts = backends.to_host(xp.stack([wrong, bad])).tolist()    # one readback
    if counts[1]:
        raise NonFiniteError(f"evaluate: the network's output is not finite for {counts[1]} "
                             f"of {n} rows (NaN or inf has no class); check the weights "
                             f"and the input data")
    return int(counts[0])


def _forward(where, net, fprop):
    """``net.fprop``, or ``fprop`` when it is a ``compile_fprop`` of this very network."""
    if fprop is None:
        return net.fprop
    from .compile import Fprop
    if not isinstance(fprop, Fprop):
        raise _checks.ArgumentTypeError(f"{where}: fprop must be nnx.compile_fprop(net) or "
                                        f"None, got {type(fprop).__name__}")
    if fprop.net is not net:
        raise ArgumentError(f"{where}: fprop was compiled for another network; pass "
                            f"nnx.compile_fprop(net) of the network evaluated")
    return fprop


def check_scores(where, z, rows):
    """The network's output must be one array of (batch, classes) scores for ``rows``
    inputs; anything else (a tuple of outputs, feature maps without Flatten) is refused."""
    if isinstance(z, (tuple, list)):
        raise ShapeError(f"{where}: the network returns {len(z)} outputs, but a classifier "
                         f"needs one (batch, classes) array; give {where} a network (or a "
                         f"Graph) with a single output")
    shape = tuple(getattr(z, "shape", ()))
    if len(shape) != 2 or shape[0] != rows:
        fix = ("add nnx.Flatten() and a Linear layer to the classes at the end"
               if len(shape) > 2 else "end the network with a Linear layer to the classes"
               if len(shape) < 2 else "keep one row per input (a Reshape must keep the "
               "batch axis first)")
        raise ShapeError(f"{where}: the network's output must be (batch, classes) scores, "
                         f"got shape {shape} for {rows} input{'s' * (rows != 1)}; {fix}")


def _modes(module):
    """[(module, its training flag)] for the module and everything inside it."""
    return [(module, module.training)] + [p for c in module.children() for p in _modes(c)]


@contextlib.contextmanager
def _eval_mode(net):
    """``net`` in eval mode for the block; every module's own flag is restored after it."""
    modes = _modes(net)
    net.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def _check_pair(where, x, t):
    """Inputs (N, ...) and integer labels (N,) from the same data set."""
    xp = namespace(t)
    if not xp.isdtype(t.dtype, "integral") or t.ndim != 1:
        raise ShapeError(f"{where}: needs integer class labels of shape (N,), got "
                         f"{short_dtype(t.dtype)} of shape {tuple(t.shape)}")
    if x.shape[0] != t.shape[0]:
        raise ShapeError(f"{where}: {x.shape[0]} inputs but {t.shape[0]} labels")


def fit(net, loss, opt, x, t, *, epochs=10, batch_size=100, x_test=None, t_test=None,
        lr_schedule=None, on_epoch=None, progress=None, distributed=False, verbose=True,
        compile=False):
    """Train ``net`` with the classic loop; return a list of EpochStats.

    Targets: integer labels (N,) or one-hot / probability rows (N, classes) for the
    classification losses (SoftmaxCrossEntropy, CrossEntropy, Hinge), which report train
    accuracy and test errors; float targets shaped like the output for MSE (regression) and
    BCEWithLogits (multi-label), which report the test loss instead (accuracy would mean
    nothing there).  ``loss.classifies`` says which.

    ``verbose`` (True by default, as in Keras and Lightning): a row per epoch (loss, train
    accuracy and test errors, or test loss; lr, seconds) and a progress bar over each epoch's steps
    (tqdm.auto, so it renders in notebooks too; hidden when the output is not a terminal);
    ``verbose=2``: the rows without the bar; ``verbose=False``: silent.

    ``x``, ``t`` (and the test pair) should already be on the device (see ``to_device``).
    ``lr_schedule(epoch) -> lr`` sets ``opt.lr`` before each epoch (epochs count from 1).
    ``on_epoch(stats)`` runs after each epoch (printing, checkpoints); ``progress(steps)``
    wraps the step range (e.g. a tqdm bar).

    Divergence: training stops with TrainingDiverged, naming the epoch and step, before
    ``on_epoch`` sees that epoch (so its checkpoint is never written), when a step's mean
    loss is NaN or infinite, or exceeds DIVERGENCE_FACTOR (1000) × max(L0, 1), where L0 is
    the loss of this call's first step (the network as it came in).  An untrained
    classifier starts near log(classes) (2.3 for 10), so that is a loss in the thousands:
    no learning run gets there, an exploding one passes it within steps.  Inputs with NaN
    or infinite values are refused up front (one check per call, not per step).

    ``compile=True``: each step is ``nnx.compile_step(net, loss, opt)`` (one jax.jit program
    on JAX, compiled once per batch shape; eager elsewhere, see its ``mode`` and ``reason``),
    and the test set is evaluated through one ``nnx.compile_fprop(net)``.

    ``distributed=True`` (under mpirun, with ``opt`` a ``nnx.distributed.DataParallel``):
    every rank draws the same shuffle, trains on its rows of each global batch, and the
    statistics are summed over the ranks, so every rank returns the same history.
    """
    _checks.instance("fit", "net", net, Module, "an nnx Module")
    _checks.instance("fit", "loss", loss, Loss, "an nnx Loss (e.g. nnx.SoftmaxCrossEntropy())")
    if not (callable(getattr(opt, "step", None)) and isinstance(getattr(opt, "module", None),
                                                                  Module)):
        raise _checks.ArgumentTypeError(f"fit: opt must be an nnx Optimizer (e.g. "
                                        f"nnx.SGD(net, lr=0.1)), got {type(opt).__name__}")
    epochs = _checks.positive_int("fit", "epochs", epochs)
    batch_size = _checks.positive_int("fit", "batch_size", batch_size)
    check_deferred()            # a loop of deferred checks before this call: its verdict
    for name, f in (("lr_schedule", lr_schedule), ("on_epoch", on_epoch),
                    ("progress", progress)):
        _checks.function("fit", name, f)
    if (x_test is None) != (t_test is None):
        raise ArgumentError("fit: give x_test and t_test together (test inputs and their "
                            "labels), or neither")
    xp = namespace(x)
    n = x.shape[0]
    if n == 0:
        raise ArgumentError("fit: x must hold at least one example, got 0 rows")
    classify = _classifies(loss, t)
    _check_targets("fit", x, t, classify, loss)
    if x_test is not None:
        _check_targets("fit (test data)", x_test, t_test, classify, loss)
        if x_test.shape[0] == 0:
            raise ArgumentError("fit: the test set is empty (x_test has 0 rows); give test "
                                "examples, or leave x_test and t_test out")
    if distributed and compile:
        raise ArgumentError("fit: compile=True does not combine with distributed=True "
                            "yet; drop one of them")
    if distributed:
        from .distributed import DataParallel
        if not isinstance(opt, DataParallel):
            raise _checks.ArgumentTypeError(
                f"fit: distributed=True needs the optimiser wrapped in "
                f"nnx.distributed.DataParallel (it averages the gradients over the ranks), "
                f"got {type(opt).__name__}; use opt = DataParallel({type(opt).__name__}(...))")
    if [id(p) for p in opt.module.params()] != [id(p) for p in net.params()]:
        raise ArgumentError("fit: the optimiser is bound to another module; "
                            "create it with the network you train, e.g. nnx.SGD(net, lr=0.1)")
    _check_finite("training", x)
    if x_test is not None:
        _check_finite("test", x_test)
    if not classify:
        _check_finite("training", t, "targets")
        if t_test is not None:
            _check_finite("test", t_test, "targets")
    split, total = _parallel(distributed)
    compiled = predict = None
    if compile:
        from .compile import compile_fprop, compile_step
        compiled = compile_step(net, loss, opt, _count_correct=classify)
        predict = compile_fprop(net) if x_test is not None else None   # the test set too
    show = None
    if verbose:
        from .epoch_log import Printer
        show = Printer(epochs, bar=verbose != 2, classify=classify)
        progress = progress or show.progress
    with _eval_mode(net):   # the probe must not update BatchNorm's running statistics (nor
        probe = net.fprop(x[:1, ...])       # fail on a batch of one in training mode)
    _check_batches(net, n, batch_size)
    if classify or isinstance(probe, (tuple, list)):
        check_scores("fit", probe, 1)
    checked = _deferred.setting(loss, "check_labels")
    loss.check_labels = bool(checked)   # the loss's own checks once, at once ("deferred" too)
    try:
        loss.fprop(probe, t[:1, ...])
    finally:
        loss.check_labels = checked
    labels = test_labels = None         # classification: the class of each row, for accuracy
    if classify:
        n_classes = int(probe.shape[1])
        labels = _labels(t, n_classes, "training labels")
        if t_test is not None:
            test_labels = _labels(t_test, n_classes, "test labels")
    loss.check_labels = False           # checked once above; restored when fit returns
    table = first_embedding(net)        # an Embedding reading x: its indices checked once
    tables = table.check_indices if table is not None else None
    if tables:
        for data in (x,) if x_test is None else (x, x_test):
            table.check(data)
        table.check_indices = False
    try:
        device = backends.device_of(x)
        steps = math.ceil(n / batch_size)
        history = []
        first = None                    # the first step's mean loss: the divergence scale
        for epoch in range(1, epochs + 1):
            if lr_schedule is not None:
                opt.lr = _scheduled_lr(lr_schedule, epoch)
            start = time.perf_counter()
            order = permutation(n, device=device)
            net.train()
            losses, counts, correct = [], [], None
            step_range = progress(range(steps)) if progress else range(steps)
            if not hasattr(step_range, "__iter__"):
                raise _checks.ArgumentTypeError(f"fit: progress(steps) must return an "
                                                f"iterable over the steps (e.g. "
                                                f"tqdm(steps)), got {step_range!r}"[:200])
            for step in step_range:
                idx = split(order[step * batch_size:min((step + 1) * batch_size, n)])
                xb, tb = xp.take(x, idx, axis=0), xp.take(t, idx, axis=0)
                if compiled is not None:
                    losses.append(compiled(xb, tb))
                    counts.append(int(idx.shape[0]))
                    if classify:
                        correct = compiled.correct if correct is None else \
                            correct + compiled.correct
                    continue
                z = net.fprop(xb)
                losses.append(loss.fprop(z, tb))
                counts.append(int(idx.shape[0]))
                if classify:
                    lb = tb if labels is t else xp.take(labels, idx, axis=0)
                    hit = xp.sum(xp.astype(xp.argmax(z, axis=1) == lb, index_dtype(xp)))
                    correct = hit if correct is None else correct + hit
                net.bprop(loss.bprop(), need_input_grad=False)
                if distributed:
                    opt.step(count=counts[-1])      # weights this rank's gradient by its rows
                else:
                    opt.step()
            per_step = backends.to_host(xp.stack(losses)).tolist()   # one readback per epoch
            per_step = total([v * c for v, c in zip(per_step, counts)])  # loss sums, all ranks
            means = [v / (min((i + 1) * batch_size, n) - i * batch_size)
                     for i, v in enumerate(per_step)]       # all ranks' rows of step i
            if first is None and math.isfinite(means[0]):
                first = means[0]
            limit = DIVERGENCE_FACTOR * max(first if first is not None else 1.0, 1.0)
            for i, v in enumerate(means):
                if not math.isfinite(v) or v > limit:
                    why = "" if not math.isfinite(v) else (
                        f" (above {DIVERGENCE_FACTOR:g} × max(the first step's {first:.3g}, 1))")
                    raise TrainingDiverged(
                        f"the loss became {v:.4g} at epoch {epoch}, step {i + 1} of {steps}"
                        f"{why}: lower the learning rate (now {opt.lr:g})")
            if distributed and hasattr(opt, "sync_buffers"):
                opt.sync_buffers()      # BatchNorm statistics: the ranks' mean, one collective
            errors = test_loss = None
            if x_test is not None and classify:
                errors = total(evaluate(net, *split((x_test, test_labels)), fprop=predict))
            elif x_test is not None:
                test_loss = total(_loss_sum(net, loss, *split((x_test, t_test)),
                                            fprop=predict)) / int(x_test.shape[0])
            stats = EpochStats(epoch, sum(per_step) / n,
                               total(int(correct)) / n if classify else None, errors,
                               None if x_test is None else int(x_test.shape[0]), opt.lr,
                               time.perf_counter() - start, test_loss)
            history.append(stats)
            if show is not None:
                show.on_epoch(stats)
            if on_epoch is not None:
                on_epoch(stats)
        return history
    finally:
        loss.check_labels = checked
        if tables:
            table.check_indices = tables



def _check_batches(net, n, batch_size):
    """Refuse, before the first step, a batch too small for a module (BatchNorm needs two
    values per feature in training): the last batch of n % batch_size rows, or every one."""
    need, who = 1, None
    for module, _ in _modes(net):
        if module.min_train_batch > need:
            need, who = module.min_train_batch, module
    sizes = {min(batch_size, n)} | ({n % batch_size} if n > batch_size and n % batch_size else set())
    small = min(sizes)
    if small >= need:
        return
    where = f"{who!r} needs {need} or more in training (batch statistics)"
    if n < need:
        raise ArgumentError(f"fit: x holds {_checks.count(n, 'example')}, but {where}; "
                            f"train on more examples")
    if small == batch_size:
        raise ArgumentError(f"fit: batch_size {batch_size} is too small: {where}; use "
                            f"batch_size >= {need}")
    raise ArgumentError(f"fit: the last batch of each epoch holds "
                        f"{_checks.count(small, 'example')} ({n:,} rows, batch_size "
                        f"{batch_size}), but {where}; choose a batch_size that leaves no "
                        f"such remainder, or drop {_checks.count(small, 'row')}: x[:{n - small}]")


def _classifies(loss, t):
    """Whether fit reports accuracy and test errors (class scores) or only losses."""
    if loss.classifies is not None:
        return bool(loss.classifies)
    return namespace(t).isdtype(t.dtype, "integral") and t.ndim == 1


def _check_targets(where, x, t, classify, loss):
    """Targets with one row per input: classification labels (N,) or (N, classes) rows;
    otherwise floating targets of any shape (the loss checks it against the output)."""
    if classify:
        xp = namespace(t)
        integral = xp.isdtype(t.dtype, "integral")
        if not ((integral and t.ndim == 1) or (xp.isdtype(t.dtype, "real floating")
                                              and t.ndim == 2)):
            raise ShapeError(f"{where}: {loss!r} needs integer class labels of shape (N,) or "
                             f"one-hot rows of shape (N, classes), got {short_dtype(t.dtype)} of "
                             f"shape {tuple(t.shape)}")
    elif not namespace(t).isdtype(t.dtype, "real floating") or t.ndim < 1:
        raise ShapeError(f"{where}: {loss!r} needs floating targets of shape (N, ...) like "
                         f"the network's output, got {short_dtype(t.dtype)} of shape "
                         f"{tuple(t.shape)}; convert with nnx.asarray(t, dtype=...)")
    if x.shape[0] != t.shape[0]:
        raise ShapeError(f"{where}: {x.shape[0]} inputs but {t.shape[0]} "
                         f"{'labels' if classify else 'targets'}")


def _labels(t, n_classes, name):
    """Class labels (N,) of classification targets: the labels themselves (range-checked
    once) or the argmax of one-hot / probability rows."""
    xp = namespace(t)
    if xp.isdtype(t.dtype, "integral"):
        check_labels(t, n_classes, name)
        return t
    return xp.argmax(t, axis=1)


def _loss_sum(net, loss, x, t, batch_size=1000, fprop=None):
    """Σ over the rows of x of the loss (its batch mean × rows), in eval mode: one readback."""
    xp = namespace(x)
    total = None
    forward = _forward("fit", net, fprop)
    with _eval_mode(net):
        for start in range(0, x.shape[0], batch_size):
            stop = min(start + batch_size, x.shape[0])
            part = loss.fprop(forward(x[start:stop, ...]), t[start:stop, ...]) * (stop - start)
            total = part if total is None else total + part
    return 0.0 if total is None else float(backends.to_host(total))


def _scheduled_lr(lr_schedule, epoch):
    """The schedule's lr for ``epoch``, refused like an optimiser refuses a bad lr."""
    lr = lr_schedule(epoch)
    try:
        return _checks.learning_rate("fit", f"lr_schedule({epoch})", lr)
    except ArgumentError as e:          # "must return ...": the schedule gave it
        raise type(e)(str(e).replace(" must be ", " must return ", 1)) from None


def _check_finite(which, x, what="inputs"):
    """Refuse inputs (or targets) with NaN or infinite values, naming the first such row."""
    xp = namespace(x)
    if not xp.isdtype(x.dtype, "real floating") or x.shape[0] == 0:
        return
    rows = xp.any(xp.reshape(xp.logical_not(xp.isfinite(x)), (x.shape[0], -1)), axis=1)
    if bool(xp.any(rows)):
        first = int(xp.argmax(xp.astype(rows, xp.int8)))
        raise ArgumentError(f"fit: the {which} {what} contain NaN or infinite values (first "
                            f"at row {first}); clean or drop those rows before training")


def _parallel(distributed):
    """(this rank's part of a batch, sum over ranks) — identities in one process."""
    if not distributed:
        return (lambda batch: batch), (lambda value: value)
    from . import distributed as dist

    def total(value):
        if isinstance(value, list):     # per-step loss sums: one collective for the epoch
            return dist.all_sum(backends.host.as_float64(value)).tolist()
        return dist.all_sum(value)
    return dist.shard, total


def schedule(name, lr, epochs):
    """A learning-rate schedule by name: 'constant', 'cosine' or 'step' (x0.1 at 50%, 75%)."""
    if name == "constant":
        return lambda e: lr
    if name == "cosine":
        return lambda e: lr * 0.5 * (1 + math.cos(math.pi * (e - 1) / max(1, epochs)))
    if name == "step":
        return lambda e: lr * (0.1 ** ((e > epochs // 2) + (e > 3 * epochs // 4)))
    raise ValueError(f"unknown schedule {name!r}: use constant, cosine or step")
