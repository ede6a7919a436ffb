"""``nnx`` on the command line: ``nnx train``, ``nnx evaluate CHECKPOINT``, ``nnx devices``.

Bad arguments end with one line on stderr and exit status 2, never a traceback.  A bare
``nnx`` (no command) prints the usage with the commands on stderr and exits with status 2;
``nnx --version`` and ``python -m nnx`` work as usual.
"""

import argparse
import dataclasses
import math
import os
import sys
import time
import warnings

from . import checkpoint, datasets, models, outputs
from .epoch_log import MetricsLog, check_log
from ._checks import count
from .device import devices, set_device
from .errors import DeviceError, NNXError


class UsageError(Exception):
    """A bad argument: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):            # argparse's default prints the usage first
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, unless it is None or its help already names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text.lower() \
                or action.default == argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def plain(text):
    """Help text without the docstrings' RST markup."""
    return text.replace("``", "")


def _number(kind, zero_allowed):
    """An argparse type: ``kind`` (int or float), finite, above 0 (or 0 and above)."""
    what = "a whole number" if kind is int else "a number"
    bound = f"{what} of 0 or more" if zero_allowed else f"{what} above 0"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(bad_number(text, what)) from None
        if not (0 <= value if zero_allowed else 0 < value) or not value < math.inf:
            raise argparse.ArgumentTypeError(bad_number(text, bound))
        return value
    return parse


def positive(kind):
    return _number(kind, zero_allowed=False)


def at_least_zero(kind):
    return _number(kind, zero_allowed=True)


def bad_number(text, wanted):
    """The one wording of a bad number, for nnx and nnx-bench alike."""
    return f"{text!r} is not {wanted}"


def fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(bad_number(text, "a number")) from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(bad_number(text, "a number in [0, 1)"))
    return value


# defaults of the options left at None, per model (the cnn's: 87 MNIST test errors, seed 0)
MODEL_DEFAULTS = {"cnn": {"epochs": 10, "lr": 0.05, "momentum": 0.9, "schedule": "cosine"},
                  "lstm": {"optimizer": "adam", "lr": 0.002, "epochs": 10, "hidden": 128,
                           "schedule": "cosine"},
                  "gru": {"optimizer": "adam", "lr": 0.002, "epochs": 10, "hidden": 128,
                          "schedule": "cosine"},
                  # --hidden is d_model, --layers the blocks; 4 heads, d_ff = 4·d_model
                  "transformer": {"epochs": 10, "optimizer": "adam", "schedule": "cosine",
                                  "hidden": 64, "layers": 2},
                  None: {"epochs": 20, "lr": 0.1, "momentum": 0.0, "schedule": "constant"}}


MLP_DEFAULTS = {"hidden": 200, "layers": 1, "activation": "tanh"}   # not for the cnn
ADAM_LR = 1e-3                  # --lr's default with --optimizer adam (lstm, gru: their own)
TRANSFORMER_HEADS = 4


def build_parser():
    from . import __version__
    parser = Parser(prog="nnx", description=plain(__doc__.splitlines()[0]))
    parser.add_argument("--version", action="version", version=f"nnx {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser,
                                title="commands")

    train = sub.add_parser("train", help="train a model on MNIST",
                           description="Train on MNIST (or Fashion-MNIST) and report the "
                                       "test errors out of 10000.")
    train.add_argument("--model", choices=["linear", "mlp", "resmlp", "cnn", "lstm", "gru",
                                            "transformer"],
                       default="mlp",
                       help="linear: 784-10; mlp: 784-(hidden x layers)-10; resmlp: mlp whose "
                            "hidden layers after the first are residual blocks; cnn: "
                            "2 x (conv 5x5, batch norm, max-pool 2, ReLU), linear (defaults: "
                            + ", ".join(f"--{k} {v}" for k, v in MODEL_DEFAULTS["cnn"].items())
                            + "); lstm, gru: each image as 28 steps of 28 pixels, the "
                              "recurrent layer's last state, linear (defaults: "
                            + ", ".join(f"--{k} {v}" for k, v in MODEL_DEFAULTS["lstm"].items())
                            + "); transformer: the 28 rows as a sequence, --layers pre-LN "
                              "blocks of width --hidden with 4 heads, mean over the rows (defaults: "
                            + ", ".join(f"--{k} {v}" for k, v in
                                        MODEL_DEFAULTS["transformer"].items()) + ")")
    train.add_argument("--hidden", type=positive(int), default=None,
                       help="units per hidden layer (default: 200; lstm, gru: 128; "
                            "transformer: d_model, 64; not with cnn)")
    train.add_argument("--layers", type=positive(int), default=None,
                       help="hidden layers (mlp, resmlp; default: 1; transformer: blocks, 2)")
    train.add_argument("--activation", choices=sorted(models.ACTIVATIONS), default=None,
                       help="activation of the hidden layers (default: tanh; not with cnn)")
    train.add_argument("--epochs", type=positive(int), default=None,
                       help="passes over the data (default: 20; cnn: 10)")
    train.add_argument("--batch-size", type=positive(int), default=100,
                       help="examples per step (the global batch with --distributed)")
    train.add_argument("--optimizer", choices=["sgd", "adam"], default=None,
                       help="optimiser (default: sgd; lstm, gru, transformer: adam)")
    train.add_argument("--lr", type=positive(float), default=None,
                       help="learning rate (default: 0.1; cnn: 0.05; adam: 0.001; lstm, gru: 0.002)")
    train.add_argument("--momentum", type=fraction, default=None,
                       help="SGD momentum, in [0, 1) (default: 0; cnn: 0.9; not with adam)")
    train.add_argument("--weight-decay", type=fraction, default=0.0,
                       help="L2 penalty added to the gradients, in [0, 1)")
    train.add_argument("--schedule", choices=["constant", "cosine", "step"], default=None,
                       help="learning rate over the epochs: step multiplies it by 0.1 at 50%% "
                            "and 75%% of them (default: constant; cnn: cosine)")
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                       help="precision of the parameters and data")
    _data_options(train)
    train.add_argument("--seed", type=int, default=0,
                       help="seed of the initial weights and the shuffles")
    train.add_argument("--save", metavar="CHECKPOINT", help="write the model after every epoch")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over MPI ranks: mpirun -n N nnx train --distributed; "
                            "each rank takes its part of every global batch (--batch-size)")
    train.add_argument("--compile", action="store_true",
                       help="compile the whole step (one jax.jit program on JAX devices; "
                            "eager elsewhere, and it says why)")
    train.add_argument("--plot", metavar="FILE.png", help="draw the learning curves")
    train.add_argument("--log", metavar="FILE.csv|FILE.jsonl",
                       help="write one row of metrics per epoch, CSV or JSON lines by the "
                            "extension, on disk after each epoch; an existing file is "
                            "refused unless it is nnx's own log")
    train.add_argument("--malloc-tuning", action=argparse.BooleanOptionalAction, default=True,
                       help="keep freed memory for reuse between steps (glibc; nnx.tune_malloc)")

    ev = sub.add_parser("evaluate", help="test errors of a saved model",
                        description="Count the test errors of a checkpoint written by nnx "
                                    "train --save.")
    ev.add_argument("checkpoint", help="a .npz file written by nnx train --save")
    _data_options(ev)

    sub.add_parser("devices", help="list the devices and why any is unavailable",
                   description="List the device strings that --device accepts here, and why "
                               "any other is unavailable.")
    return parser


def _data_options(p):
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N, torch:cpu, strict, ... (nnx devices lists them; "
                        "default: $NNX_DEVICE, else cpu)")
    p.add_argument("--data", metavar="DIR", help="folder with the IDX files (default: "
                                                 "$NNX_DATA, else the download cache)")
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist",
                   help="which data set")


def main(argv=None):
    args = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:             # a bare `nnx`: the usage and the commands
            parser.print_help(sys.stderr)
            return 2
        return COMMANDS[args.command](args)
    except SystemExit as e:                  # --help, --version
        return e.code
    except UsageError as e:
        return _fail(args, str(e), 2)
    except (NNXError, DeviceError, OSError, ValueError) as e:
        return _fail(args, f"nnx: error: {e}", 1 if isinstance(e, TrainingError) else 2)
    except KeyboardInterrupt:
        return _fail(args, "nnx: interrupted", 130)
    except MemoryError:
        return _fail(args, "nnx: error: out of memory; use a smaller model or batch", 1)
    except Exception as e:                # never a traceback: one line, naming the cause
        return _fail(args, f"nnx: error: {type(e).__name__}: {e}".splitlines()[0], 1)


def _fail(args, message, code):
    """One line on stderr; under MPI, end every rank rather than leave them waiting."""
    print(message, file=sys.stderr, flush=True)
    if getattr(args, "distributed", False):
        from . import distributed
        try:
            many = distributed.size() > 1
        except Exception:                   # no MPI to end (mpi4py missing): nothing to do
            many = False
        if many:
            distributed.abort(code)
    return code


class TrainingError(NNXError):
    """Training failed after it started (a diverged loss): exit status 1."""


def _setup(args, before_data=None, train=True):
    """Select the device and load the data: the parts that fail on bad arguments.
    ``before_data()`` runs once the device is selected, before any data is read."""
    if getattr(args, "distributed", False) and args.device in ("cuda", "torch:cuda"):
        from . import distributed             # one GPU per process, by its local rank
        args.device = f"{args.device}:{distributed.local_rank()}"
    if args.device is not None:
        if not args.device.strip():
            raise UsageError(f"nnx {args.command}: error: --device is empty; give one of "
                             f"those `nnx devices` lists")
        set_device(args.device)
    early = before_data() if before_data is not None else None
    if args.data is not None and not args.data:
        raise UsageError(f"nnx {args.command}: error: --data is an empty path; give the "
                         f"folder with the IDX files")
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always", datasets.DatasetWarning)
        data = datasets.load_mnist(args.data, kind=args.dataset, train=train)
    for note in notes:
        if issubclass(note.category, datasets.DatasetWarning):
            print(f"nnx: note: {note.message}", flush=True)
    return data if before_data is None else (early, data)


def cmd_train(args):
    if args.optimizer is None:
        args.optimizer = MODEL_DEFAULTS.get(args.model, {}).get("optimizer", "sgd")
    if args.optimizer == "adam":
        if args.momentum is not None:
            raise UsageError("nnx train: error: --momentum is SGD's; Adam keeps its own "
                             "moment estimates (drop --momentum or use --optimizer sgd)")
        args.momentum = 0.0
        if args.lr is None:                     # the model's own lr if Adam is its default
            own = MODEL_DEFAULTS.get(args.model, {})
            args.lr = own.get("lr", ADAM_LR) if own.get("optimizer") == "adam" else ADAM_LR
    if args.model in ("lstm", "gru"):
        for key in ("layers", "activation"):
            if getattr(args, key) is not None:
                raise UsageError(f"nnx train: error: --{key} shapes the MLPs; the "
                                 f"{args.model} has one recurrent layer of --hidden units "
                                 f"(drop --{key})")
    if args.model == "transformer":
        if args.activation is not None:
            raise UsageError("nnx train: error: --activation shapes the MLPs; the "
                             "transformer's feed-forward layers use GELU (drop --activation)")
        if args.hidden is not None and args.hidden % TRANSFORMER_HEADS:
            raise UsageError(f"nnx train: error: --hidden {args.hidden} is the transformer's "
                             f"d_model, split over {TRANSFORMER_HEADS} heads: give a multiple "
                             f"of {TRANSFORMER_HEADS} (e.g. 64)")
    if args.model == "cnn":
        for key in ("hidden", "layers", "activation"):
            if getattr(args, key) is not None:
                raise UsageError(f"nnx train: error: --{key} shapes the MLPs; the cnn's "
                                 f"layers are fixed (drop --{key} or use --model mlp)")
    table = {**MLP_DEFAULTS, **MODEL_DEFAULTS[None], **MODEL_DEFAULTS.get(args.model, {})}
    if table.get("optimizer", "sgd") != args.optimizer:     # lstm with --optimizer sgd
        table["lr"] = MODEL_DEFAULTS[None]["lr"]
    for key, value in table.items():
        if getattr(args, key) is None:              # the options the user left out
            setattr(args, key, value)
    from . import train as training
    from .device import set_default_dtype
    from .losses import SoftmaxCrossEntropy
    from .optim import SGD, Adam
    _check_outputs(args)                        # before training, not after it
    _check_size(args)                           # before allocating anything
    if args.compile and args.distributed:
        raise UsageError("nnx train: error: --compile does not combine with --distributed "
                         "yet; drop one of them")
    data = _setup(args)
    if args.malloc_tuning:
        from . import tune_malloc
        tune_malloc()
    set_default_dtype(args.dtype)
    from . import seed
    seed(args.seed)
    if args.model == "cnn":
        net = models.cnn(10)
    elif args.model == "transformer":
        net = models.transformer(10, d_model=args.hidden, heads=TRANSFORMER_HEADS,
                                 d_ff=4 * args.hidden, blocks=args.layers)
    elif args.model in ("lstm", "gru"):
        net = getattr(models, args.model)(10, args.hidden)
    elif args.model == "resmlp":
        net = models.residual_mlp(784, 10, args.hidden, args.layers, args.activation)
    else:
        hidden = [args.hidden] * args.layers if args.model == "mlp" else []
        net = models.mlp(784, 10, hidden, args.activation)
    opt = (SGD(net, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
           if args.optimizer == "sgd" else
           Adam(net, lr=args.lr, weight_decay=args.weight_decay))
    lead = True                                  # the process that prints and saves
    if args.distributed:
        from . import distributed
        opt = distributed.DataParallel(opt)
        lead = distributed.rank() == 0
    x, t = training.to_device(data.x_train, data.y_train)
    x_test, t_test = training.to_device(data.x_test, data.y_test)
    from .device import get_device
    say = print if lead else (lambda *a, **k: None)
    ranks = f" x {count(distributed.size(), 'rank')}" if args.distributed else ""
    say(f"nnx train: {args.model} {_describe(net)} on {get_device()}{ranks}, "
        f"{hyperparameters(args)}")
    if args.compile:
        from .compile import compile_step
        step = compile_step(net, SoftmaxCrossEntropy(), opt)
        say(f"compiled step: {step.mode} ({step.reason})")
    log = MetricsLog(args.log, _log_fields()) if args.log and lead else None

    def on_epoch(s):
        if not lead:
            return
        if log is not None:
            log.write(s)
        if args.save:
            checkpoint.save(net, args.save, epoch=s.epoch, test_errors=s.test_errors,
                            command=vars(args))
            saved.append(s.epoch)

    saved = []

    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # a diverging run's overflow warnings would bury our own one-line report
            warnings.simplefilter("ignore", RuntimeWarning)
            history = training.fit(
                net, SoftmaxCrossEntropy(), opt, x, t, epochs=args.epochs,
                batch_size=args.batch_size, x_test=x_test, t_test=t_test,
                lr_schedule=training.schedule(args.schedule, args.lr, args.epochs),
                on_epoch=on_epoch, verbose=lead, distributed=args.distributed,
                compile=args.compile)
    except training.TrainingDiverged as e:
        kept = (f"; the checkpoint of epoch {saved[-1]} in {args.save} is intact" if saved
                else "; no checkpoint was written" if args.save else "")
        raise TrainingError(f"{e}{kept}") from None
    finally:
        if log is not None:
            log.close()
    elapsed = time.perf_counter() - started
    if args.plot and lead:
        _plot(history, args.plot, f"nnx train --model {args.model}: {_describe(net)}, "
                                  f"{hyperparameters(args)}")
        say(f"learning curves: {args.plot}")
    if args.save:
        say(f"checkpoint: {args.save}")
    say(f"{elapsed / len(history):.2f} s per epoch")
    say(f"test errors: {history[-1].test_errors} / {history[-1].test_total}")
    return 0


def cmd_evaluate(args):
    from .device import asarray, short_dtype
    from .train import evaluate, to_device
    _check_readable("nnx evaluate", args.checkpoint)     # before looking for the data
    net, data = _setup(args, lambda: checkpoint.load(args.checkpoint), train=False)
    x_test, t_test = to_device(data.x_test, data.y_test)
    params = net.params()
    if params:                                   # the checkpoint's dtype, not the default
        x_test = asarray(x_test, dtype=short_dtype(params[0].dtype))
    errors = evaluate(net, x_test, t_test)
    print(f"test errors: {errors} / {x_test.shape[0]}")
    return 0


def cmd_devices(args):
    """Each line starts with a string --device accepts; an unavailable backend is named by
    the device string it would give (cuda for CuPy)."""
    for spec, reason in devices().items():
        print(f"{spec:<18} {'available' if reason is None else 'unavailable: ' + reason}")
    return 0


def _check_readable(command, path):
    if os.path.isdir(path):
        raise UsageError(f"{command}: error: {path} is a folder; give the checkpoint file")
    if not os.path.isfile(path):
        raise UsageError(f"{command}: error: checkpoint {path} does not exist")


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "devices": cmd_devices}


def hyperparameters(args):
    """Every setting that changes the result, for the header line."""
    optimizer = (f"sgd lr {args.lr:g} momentum {args.momentum:g}" if args.optimizer == "sgd"
                 else f"adam lr {args.lr:g}")
    return (f"{optimizer}, weight decay {args.weight_decay:g}, schedule {args.schedule}, "
            f"batch {args.batch_size}, {count(args.epochs, 'epoch')}, {args.dtype}, {args.dataset}, "
            f"seed {args.seed}")


def _describe(net):
    size = sum(math.prod(p.shape) for p in net.params())
    return f"{' -> '.join(type(m).__name__ for m in net)} ({count(size, 'parameter')})"


IMAGE_FORMATS = ("png", "svg", "pdf")


def _check_outputs(args):
    """Refuse, before any work, outputs that are empty, collide with each other or with the
    input data, are folders or unwritable, or would overwrite a file that is not theirs."""
    targets = [(o, p) for o, p in (("--save", args.save), ("--plot", args.plot),
                                   ("--log", args.log)) if p is not None]
    for option, path in targets:
        if not path:
            raise UsageError(f"nnx train: error: {option} is an empty path; give a file name")
        if "\0" in path:
            raise UsageError(f"nnx train: error: {option} {path!r} contains a NUL character")
    clash = same_file_pair(targets)
    if clash:
        raise UsageError(f"nnx train: error: {clash}")
    for option, path in targets:
        for source in _input_files(args):
            if _same_file(path, source):
                raise UsageError(f"nnx train: error: {option} {path} is an input data file "
                                 f"({source}); write the output elsewhere")
    if args.plot is not None:
        ext = os.path.splitext(args.plot)[1].lower().lstrip(".")
        if ext not in IMAGE_FORMATS:
            raise UsageError(f"nnx train: error: --plot: unknown image format "
                             f"{'.' + ext if ext else '(no extension)'} in {args.plot}; "
                             f"end the name with .png, .svg or .pdf")
    try:                                        # nnx.outputs owns the rule for every output
        if args.save is not None:
            outputs.check(args.save, "--save", checkpoint.is_checkpoint, "an nnx checkpoint")
        if args.log is not None:
            check_log(args.log, _log_fields())
        if args.plot is not None:
            outputs.check(args.plot, "--plot", outputs.is_plot, "a plot nnx drew")
    except outputs.OutputError as e:
        raise UsageError(f"nnx train: error: {e}") from None
    if args.plot is not None:
        _require_matplotlib()


def same_file_pair(outputs):
    """'--a and --b name the same file (...); ...' for the first two of [(option, path)]
    that name one file (any spelling, symlink or hard link), else None."""
    for k, (option, path) in enumerate(outputs):
        for other, other_path in outputs[k + 1:]:
            if _same_file(path, other_path):
                return (f"{option} and {other} name the same file ({path}, {other_path}); "
                        f"give each its own")
    return None


def _same_file(a, b):
    """Whether two paths name one file: same real path, or (existing) the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _input_files(args):
    """The data files this run may read (whichever exist), for collision checks."""
    if args.data is not None:
        folder = args.data
    elif os.environ.get("NNX_DATA"):
        folder = os.environ["NNX_DATA"]
    else:
        folder = datasets.cache_dir(args.dataset)
    found = []
    for base in (folder, os.path.join(folder, args.dataset)):
        for name in datasets.FILES:
            for candidate in (name, name + ".gz"):
                full = os.path.join(base, candidate)
                if os.path.lexists(full):
                    found.append(full)
    return found


def _memory_available():
    """Bytes this process may still allocate (MemAvailable and any cgroup limit), or None."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(name) as f:
                text = f.read().strip()
            if text.isdigit():
                limits.append(int(text))
        except OSError:
            pass
    if not limits:
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(limits)


def _log_fields():
    """The --log columns: EpochStats' fields less test_loss (nnx train's models classify,
    so they report test_errors instead)."""
    from .train import EpochStats
    return [f.name for f in dataclasses.fields(EpochStats) if f.name != "test_loss"]


def _check_size(args):
    """Refuse a model that cannot fit before allocating it: parameters, gradients and two
    optimiser states per weight, the activations of one batch, and the data set."""
    h, layers = args.hidden, args.layers
    if args.model == "linear":
        count, widths = 784 * 10 + 10, [10]
    elif args.model == "mlp":
        count = 784 * h + h + (layers - 1) * (h * h + h) + 10 * h + 10
        widths = [h] * layers + [10]
    elif args.model == "transformer":            # 28 steps: attention (heads x 28 x 28), FFN
        count = 57 * h + layers * (12 * h * h + 13 * h) + 13 * h + 10
        widths = [28 * (h * 16 + TRANSFORMER_HEADS * 28 * 2)] * layers + [28 * h, 10]
    elif args.model == "cnn":                    # models.cnn(): its im2col columns dominate
        count, widths = 6_100, [8 * 24 * 24 * 25, 16 * 8 * 8 * 200, 8 * 24 * 24 * 6, 10]
    elif args.model in ("lstm", "gru"):          # per step: the gates, c, h (and caches)
        g = 4 if args.model == "lstm" else 3
        count, widths = g * (28 * h + h * h + 2 * h) + 10 * h + 10, [28 * (3 * g + 2) * h, 10]
    else:                                        # resmlp: first layer + blocks + output
        count = 784 * h + h + layers * (h * h + h) + 10 * h + 10
        widths = [h] * (layers + 1) + [10]
    itemsize = 8 if args.dtype == "float64" else 4
    needed = itemsize * (4 * count + 4 * args.batch_size * sum(widths)
                         + 2 * 70000 * 785)
    available = _memory_available()
    if available is not None and needed > available:
        raise UsageError(f"nnx train: error: the model ({count:,} parameters; about "
                         f"{needed / 2 ** 30:,.1f} GiB with its gradients, optimiser state "
                         f"and one batch) does not fit in memory ({available / 2 ** 30:,.1f} "
                         f"GiB available); lower "
                         f"{'--batch-size' if args.model in ('cnn', 'linear') else '--hidden, --layers or --batch-size'}")


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("nnx train: error: --plot needs matplotlib: pip install "
                         "'nnx-backprop[plot]'") from None


def _plot(history, path, title=None):
    """Training loss and test errors per epoch, with markers (a one-epoch run is a point),
    under a title that says which run it is."""
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [s.epoch for s in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    a.plot(epochs, [s.train_loss for s in history], marker="o")
    a.set(xlabel="epoch", ylabel="training loss", title="training loss")
    b.plot(epochs, [s.test_errors for s in history], marker="o", color="C1")
    b.set(xlabel="epoch", ylabel=f"errors / {history[-1].test_total}", title="test errors")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)      # whole epochs
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        ax.margins(y=0.15)
    if title:
        fig.suptitle("\n".join(textwrap.wrap(title, 120)), fontsize=8)
    fig.tight_layout()
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    fmt = ext if ext in IMAGE_FORMATS else "png"
    outputs.write_atomically(path, lambda f: fig.savefig(
        f, format=fmt, dpi=100, metadata=outputs.plot_metadata("nnx train --plot")),
        ours=outputs.is_plot)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
