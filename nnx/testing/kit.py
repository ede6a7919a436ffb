"""``check_module``: the checks nnx's own layers pass, for a layer you wrote."""

import copy
import dataclasses

from nnx import backends

from ..device import asarray, device, device_of, to_numpy
from .. import _checks
from ..module import Module
from ..errors import ArgumentError, ArgumentTypeError, DeviceError, NNXError, StateError
from ..gradcheck import gradcheck

CHECKS = ("keeps its input", "keeps the dtype", "gradcheck", "agrees with cpu",
          "bprop before fprop", "device mixing")
MAX_INPUT = 10 ** 7             # values check_module draws at most (input_shape)
AGREEMENT = {"float64": 1e-10, "float32": 2e-5, "float16": 1e-2}   # rtol = atol
REFERENCE = "cpu"


class ModuleCheckError(NNXError, AssertionError):
    """A module failed a check of ``check_module``; ``.report`` holds every result."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class CheckResult:
    device: str
    dtype: str
    check: str
    status: str          # "ok", "FAILED" or "skipped"
    detail: str = ""

    def __str__(self):
        return f"{self.device:<16} {self.dtype:<8} {self.check:<21} {self.status:<7} {self.detail}"


@dataclasses.dataclass
class CheckReport:
    """Every check on every device and dtype; ``print(report)`` shows them as a table."""
    module: str
    results: list

    @property
    def ok(self):
        return not self.failures

    @property
    def failures(self):
        return [r for r in self.results if r.status == "FAILED"]

    def passed_on(self):
        """The devices on which every check ran and passed (or did not apply)."""
        devices = dict.fromkeys(r.device for r in self.results)
        return [d for d in devices
                if all(r.status == "ok" or (r.status == "skipped" and r.check != "all")
                       for r in self.results if r.device == d)]

    def __str__(self):
        count = {s: sum(r.status == s for r in self.results) for s in ("ok", "FAILED", "skipped")}
        head = (f"check_module({self.module}): {count['ok']} passed, {count['FAILED']} failed, "
                f"{count['skipped']} skipped")
        columns = f"{'device':<16} {'dtype':<8} {'check':<21} {'result':<7} detail"
        return "\n".join([head, columns] + [str(r) for r in self.results])


def device_params():
    """[(device spec, None or why it is unavailable)] for every device nnx knows here.

    array-api-strict's fake devices beyond ``strict:device1`` would repeat its checks, so
    they are left out."""
    rows = []
    for spec, reason in backends.listing():
        if spec.startswith("strict:") and spec != "strict:device1":
            continue
        rows.append((spec, None if reason is None else f"device {spec!r} is unavailable: {reason}"))
    return rows


def check_module(factory, input_shape, *, devices=None, dtypes=("float64", "float32"), x=None,
                 seed=0, samples=None, verbose=False):
    """Check a module on every available device and dtype; return a CheckReport.

    ``factory()`` builds the module (it is built once, on cpu, and copied to each device, so
    every device sees the same weights).  ``input_shape``: the shape of the input drawn for
    it, e.g. ``(4, 5)`` (values with ``|x| >= 0.1``, away from ReLU-like kinks); or give the input
    itself as ``x`` (a list or any array; integers stay integers, for a module that takes
    indices such as an Embedding, whose bprop returns no input gradient).  ``devices``:
    device strings (default: every one nnx knows; unavailable ones are reported as skipped
    with the reason).  ``dtypes``: the
    precisions to check in; gradcheck's and the agreement's tolerances scale with them.
    ``samples``: None (default) lets gradcheck check every Jacobian entry up to its budget
    (then random directions through the rest); a number checks that many rows and columns
    of each tensor instead (faster for big layers, but a single wrong entry can slip by).

    Checks: fprop leaves its input and bprop its grad_output as they were (no in-place
    change); the dtype is kept forward and back; gradcheck; agreement with cpu (output,
    input gradient and parameter gradients, all on the device); bprop before fprop raises
    nnx.StateError; an input on another device
    raises nnx.DeviceError (modules with parameters).  Raises ModuleCheckError (an
    AssertionError) naming the device, dtype and check of every failure; ``verbose=True``
    also prints the report.  The caller's device selection and random state are kept.
    """
    __tracebackhide__ = True        # under pytest a failure shows your test, not nnx's code
    specs, dtypes = _check_arguments(factory, input_shape, devices, dtypes, x, samples)
    state = backends.host.get_state()
    try:
        with device(REFERENCE):
            backends.host.seed(seed)
            base = factory()
            _checks.instance("check_module", "factory()", base, Module, "an nnx Module")
            if x is None:
                x_host = _away_from_zero(tuple(input_shape))
            else:
                try:
                    x_host = backends.to_host(x)
                    if getattr(x_host, "dtype", None) is None or x_host.dtype.kind not in "iu":
                        x_host = backends.host.as_float64(x_host)   # integers stay integers
                except (TypeError, ValueError):
                    raise ArgumentTypeError(f"check_module: x must be numbers of one "
                                            f"rectangular shape, got {x!r}"[:200]) from None
        report = CheckReport(repr(base), [])
        for i, dtype in enumerate(dtypes):
            _check_dtype(report, base, specs, dtype, x_host, seed, samples, i == 0)
    finally:
        backends.host.set_state(state)
    report.results.sort(key=lambda r: [s for s, _ in specs].index(r.device))
    if verbose:
        print(report)
    if not report.ok:
        lines = [f"  {r.check} on {r.device} in {r.dtype}: {r.detail}" for r in report.failures]
        raise ModuleCheckError(f"check_module({report.module}): {len(lines)} check(s) failed\n"
                               + "\n".join(lines), report)
    return report


FLOAT_DTYPES = ("float16", "float32", "float64")


def _check_arguments(factory, input_shape, devices, dtypes, x, samples):
    """check_module's arguments, each refused with one clear nnx error; (specs, dtypes)."""
    __tracebackhide__ = True
    where = "check_module"
    if not callable(factory):
        raise ArgumentTypeError(f"{where}: factory must be callable (a function or class "
                                f"building the module), got {type(factory).__name__}")
    if isinstance(factory, Module):
        raise ArgumentTypeError(f"{where}: factory must build the module, got the module "
                                f"{factory!r} itself; pass its class or a function, e.g. "
                                f"lambda: {type(factory).__name__}(...)")
    if x is None:
        if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, (tuple, list)) \
                or not input_shape:
            raise ArgumentTypeError(f"{where}: input_shape must be a non-empty tuple of "
                                    f"positive ints such as (4, 5), got {input_shape!r}")
        count = 1
        for n in input_shape:
            count *= _checks.positive_int(where, "each entry of input_shape", n)
        if count > MAX_INPUT:
            raise ArgumentError(f"{where}: input_shape must hold at most {MAX_INPUT:,} values "
                                f"(gradcheck perturbs them one by one), got "
                                f"{tuple(input_shape)} ({count:,}); give a small shape such "
                                f"as (4, 5)")
    elif isinstance(x, (str, bytes)) or not hasattr(x, "shape") and not isinstance(
            x, (list, tuple)):
        raise ArgumentTypeError(f"{where}: x must be an array or a (nested) list of numbers, "
                                f"got {x!r}")
    if samples is not None:
        _checks.positive_int(where, "samples", samples)
    dtypes = (dtypes,) if isinstance(dtypes, str) else tuple(dtypes)
    if not dtypes:
        raise ArgumentError(f"{where}: dtypes is empty; give e.g. ('float64', 'float32')")
    for d in dtypes:
        if d not in FLOAT_DTYPES:
            raise ArgumentError(f"{where}: dtypes: unknown dtype {d!r}; use one of "
                                f"{', '.join(FLOAT_DTYPES)}")
    if devices is not None and not isinstance(devices, str):
        devices = list(devices)
        if not devices:
            raise ArgumentError(f"{where}: devices is empty; give device strings such as "
                                f"['cpu'] or None for every one")
        for d in devices:
            if not isinstance(d, str):
                raise ArgumentTypeError(f"{where}: devices must be device strings such as "
                                        f"'cpu', got {d!r}")
    return _devices(devices), dtypes


def _devices(devices):
    if devices is None:
        return device_params()
    if isinstance(devices, str):
        devices = [devices]
    specs = []
    for spec in devices:
        backends.split_spec(spec)            # a typo is an error, not a skip
        try:
            specs.append((backends.resolve(spec).spec, None))
        except DeviceError as e:
            specs.append((spec, str(e).split(". Available here")[0]))
    return specs


def _check_dtype(report, base, specs, dtype, x_host, seed, samples, first):
    add = lambda spec, check, status, detail="": report.results.append(      # noqa: E731
        CheckResult(spec, dtype, check, status, detail))
    try:
        reference = _run(base, REFERENCE, dtype, x_host, None, seed)
        failed = None
    except Exception as e:
        reference, failed = None, _say(e)
    for spec, reason in specs:
        if reason is not None:
            if first:                        # once, not once per dtype
                report.results.append(CheckResult(spec, "-", "all", "skipped", reason))
            continue
        try:
            target = backends.resolve(spec)
            module = copy.deepcopy(base).to(target, dtype)
            x = _input(x_host, target, dtype)
        except Exception as e:               # e.g. a device without float64
            add(spec, "all", "skipped", f"cannot hold {dtype} there: {_say(e)}")
            continue
        with device(target):
            contract = _contract(base, target, dtype, x_host)
            for result in contract:
                add(spec, *result)
            if contract[1][1] == "FAILED":           # a gradient mismatch would mislead
                add(spec, "gradcheck", "skipped", "a dtype changed (see keeps the dtype): "
                                                  "a gradient mismatch would mislead")
            else:
                _gradcheck(add, spec, module, x, dtype, samples)
            if spec == REFERENCE:
                if failed:
                    add(spec, "agrees with cpu", "FAILED", f"fprop/bprop failed: {failed}")
                else:
                    add(spec, "agrees with cpu", "ok", "the reference")
            elif reference is None:
                add(spec, "agrees with cpu", "skipped", "fprop/bprop failed on cpu")
            else:
                add(spec, *_agreement(base, spec, dtype, x_host, reference, seed))
            g_host = None if reference is None else reference[-1]
            add(spec, *_bprop_first(base, target, dtype, x, g_host, seed))
            add(spec, *_mixing(base, target, dtype, x_host, specs))


def _input(x_host, target, dtype):
    """The input on ``target``: in ``dtype``, or as the integers it is (an Embedding's indices,
    which have no gradient)."""
    return asarray(x_host, device=target, dtype=None if x_host.dtype.kind in "iu" else dtype)


def _say(e):
    return f"{type(e).__name__}: {e}"


def _away_from_zero(shape):
    """Standard normal draws pushed to |x| >= 0.1, as nnx's own tests use."""
    n = backends.host.normal(shape, 1.0, "float64")
    return ((n >= 0) * 2.0 - 1.0) * (0.1 + abs(n))


def _run(base, spec, dtype, x_host, g_host, seed):
    """fprop, then bprop of a fixed upstream gradient; host copies of [y, dx, grads...] and
    the upstream gradient.  Raises if an array comes back on another device."""
    target = backends.resolve(spec)
    module = copy.deepcopy(base).to(target, dtype)
    module.train()
    with device(target):
        backends.host.seed(seed + 1)
        y = module.fprop(_input(x_host, target, dtype))
        if g_host is None:
            backends.host.seed(seed + 2)
            g_host = backends.host.uniform(tuple(y.shape), -1.0, 1.0, "float64")
        g = asarray(g_host, device=target, dtype=dtype)
        backends.host.seed(seed + 1)             # a dropout mask drawn in fprop, again
        dx = module.bprop(g)
        arrays = [("output", y), ("input gradient", dx)] + [
            (f"gradient of {name}", grad) for (name, _), grad in
            zip(module.named_params(), module.grads())]
    if dx is None and x_host.dtype.kind in "iu":      # integer input: no gradient to compare
        arrays = arrays[:1] + arrays[2:]
    for what, a in arrays:
        where = device_of(a)
        if where != target:
            raise DeviceError(f"its {what} is on {where}, not on {spec} where it ran")
    return [(what, to_numpy(a)) for what, a in arrays] + [g_host]


def _contract(base, target, dtype, x_host):
    """fprop leaves its input as it was; the output and bprop's gradients keep the input's
    dtype: two results."""
    from ..device import short_dtype
    module = copy.deepcopy(base).to(target, dtype)
    module.train()
    x = _input(x_host, target, dtype)
    before = to_numpy(x).copy()
    try:
        y = module.fprop(x)
    except Exception as e:
        why = f"fprop failed: {_say(e)}"
        return [("keeps its input", "skipped", why), ("keeps the dtype", "skipped", why),
                ("keeps its grad_output", "skipped", why)]
    after = to_numpy(x)
    kept = ((before == after) | ((before != before) & (after != after))).all()
    input_result = ("keeps its input", "ok", "fprop leaves x as it was") if kept else (
        "keeps its input", "FAILED", "fprop changed its input in place (x *= ..., x[...] = "
        "...): the layer before it, and gradcheck of a network holding it, see the changed "
        "values; compute into a new array (y = x * 2)")
    ys = list(y) if isinstance(y, (tuple, list)) else [y]
    got = [short_dtype(a.dtype) for a in ys]
    if any(d != dtype for d in got):
        return [input_result, ("keeps the dtype", "FAILED",
                               f"the dtype changed: {dtype} input gave {', '.join(got)} "
                               f"output; compute in the input's dtype (xp.astype(..., "
                               f"x.dtype), or constants made with dtype=x.dtype)"),
                ("keeps its grad_output", "skipped", "the output's dtype changed")]
    try:                                         # the gradients, from an upstream of ones
        g = [asarray(backends.host.full(tuple(a.shape), 1.0, "float64"), device=target,
                     dtype=dtype) for a in ys]
        g_before = [to_numpy(a).copy() for a in g]
        dx = module.bprop(g[0] if len(g) == 1 and not isinstance(y, (tuple, list))
                          else tuple(g))
        grads = [("input gradient", dx)] + [(f"gradient of {n}", a) for (n, _), a in
                                            zip(module.named_params(), module.grads())]
        g_kept = all((b == to_numpy(a)).all() for b, a in zip(g_before, g))
        grad_result = ("keeps its grad_output", "ok", "bprop leaves grad_output as it was") \
            if g_kept else ("keeps its grad_output", "FAILED",
                            "bprop changed grad_output in place (g *= ..., g[...] = ...): "
                            "a module that shares it (a Residual, a Split, a second use) "
                            "sees the changed values; compute into a new array "
                            "(d = g * mask)")
    except Exception as e:                       # bprop's own failure: the other checks say
        grads = []
        grad_result = ("keeps its grad_output", "skipped", f"bprop failed: {_say(e)}")
    for what, a in grads:
        for one in (a if isinstance(a, (tuple, list)) else (a,)):
            if one is not None and short_dtype(one.dtype) != dtype:
                return [input_result, ("keeps the dtype", "FAILED",
                                       f"the dtype changed: bprop's {what} is "
                                       f"{short_dtype(one.dtype)} for {dtype} input; compute "
                                       f"it in the input's dtype"), grad_result]
    return [input_result, ("keeps the dtype", "ok", f"{dtype} in, {dtype} out, forward "
                                                    f"and back"), grad_result]


def _gradcheck(add, spec, module, x, dtype, samples):
    try:
        result = gradcheck(module, x, dtype=dtype, samples=samples, raise_on_failure=False)
    except Exception as e:
        add(spec, "gradcheck", "FAILED", _say(e))
        return
    add(spec, "gradcheck", "ok" if result.ok else "FAILED",
        f"{result.checked} entries, worst abs {result.max_abs_error:.1e}" if result.ok
        else "FAILED: " + str(result).split(": ", 1)[1])


def _agreement(base, spec, dtype, x_host, reference, seed):
    check = "agrees with cpu"
    try:
        ours = _run(base, spec, dtype, x_host, reference[-1], seed)
    except Exception as e:
        return check, "FAILED", _say(e)
    tol = AGREEMENT[dtype]
    worst = 0.0
    for (what, a), (_, b) in zip(ours[:-1], reference[:-1]):
        if tuple(a.shape) != tuple(b.shape):
            return check, "FAILED", (f"its {what} has shape {tuple(a.shape)}, on cpu "
                                     f"{tuple(b.shape)}")
        if a.size == 0:
            continue
        excess = (abs(a - b) - tol * (1 + abs(b))).max()
        if not excess <= 0:                   # NaN fails too
            err = abs(a - b).max()
            return check, "FAILED", (f"its {what} differs from cpu's by up to {err:.3g} "
                                     f"(tolerance {tol:g} in {dtype})")
        worst = max(worst, float(abs(a - b).max()))
    return check, "ok", f"max difference {worst:.1e}"


def _bprop_first(base, target, dtype, x, g_host, seed):
    check = "bprop before fprop"
    module = copy.deepcopy(base).to(target, dtype)
    try:
        y_shape = tuple(module.fprop(x).shape) if g_host is None else tuple(g_host.shape)
        module = copy.deepcopy(base).to(target, dtype)
        g = asarray(g_host if g_host is not None else backends.host.full(y_shape, 1.0, "float64"),
                    device=target, dtype=dtype)
        module.bprop(g)
    except StateError:
        return check, "ok", "raises StateError"
    except Exception as e:
        return check, "FAILED", (f"raised {_say(e)} instead of nnx.StateError "
                                 f"(start bprop with self.check_grad(grad_output))")
    return check, "FAILED", ("bprop ran before any fprop; it should raise nnx.StateError "
                             "(start bprop with self.check_grad(grad_output))")


def _mixing(base, target, dtype, x_host, specs):
    check = "device mixing"
    if not base.params():
        return check, "skipped", "no parameters: it computes wherever its input lives"
    other = _other_device(target, [s for s, reason in specs if reason is None])
    if other is None:
        return check, "skipped", "no second device here to mix with"
    module = copy.deepcopy(base).to(target, dtype)
    try:
        x = _input(x_host, other, dtype)
    except Exception as e:
        return check, "skipped", f"cannot put the input on {other}: {_say(e)}"
    try:
        module.fprop(x)
    except DeviceError:
        return check, "ok", f"an input on {other} raises DeviceError"
    except Exception as e:
        return check, "FAILED", (f"an input on {other} raised {_say(e)} instead of "
                                 f"nnx.DeviceError (check it with self.check_input(x, width))")
    return check, "FAILED", (f"an input on {other} with parameters on {target} was accepted; "
                             f"fprop should raise nnx.DeviceError (self.check_input(x, width))")


def _other_device(target, available):
    """Another device to put the input on: strict's second fake device for strict, else cpu,
    else any other available one."""
    order = ["strict:device1", "strict"] if target.spec.startswith("strict") else [REFERENCE]
    order += [s for s in available if s not in order]
    for spec in order:
        if spec != target.spec:
            try:
                return backends.resolve(spec).spec
            except DeviceError:
                continue
    return None
