"""Honest timing: warm-up, calibrated blocks, candidates interleaved round by round.

The machine may be shared, so the cases of one (model, batch size) are timed in turns: each
round runs one block of every case, in an order rotated each round (and reversed in every
second pass), so that no case always follows the same one.  Noise then hits all of
them alike and the ratios between them stay meaningful.  A block is a number of steps lasting
at least ``min_time`` seconds; the device is synchronised before the clock is read.
"""

import dataclasses
import resource
import statistics
import time
import tracemalloc


@dataclasses.dataclass
class Stats:
    median: float       # seconds per step
    q1: float
    q3: float
    min: float
    max: float
    blocks: int
    steps_per_block: int
    faults_per_step: float      # minor page faults (memory handed back and taken again)


def _faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _block(fn, sync, steps):
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - t0) / steps


def calibrate(fn, sync, min_time, warmup):
    """Warm up, then the number of steps that makes a block last at least ``min_time``."""
    for _ in range(warmup):
        fn()
    steps = 1
    while True:
        t = _block(fn, sync, steps)
        if t * steps >= min_time or steps >= 1 << 16:
            return steps
        steps = max(steps * 2, min(1 << 16, int(min_time / max(t, 1e-9) * 1.2) + 1))


def interleaved(jobs, repeats, min_time, warmup):
    """{key: Stats} for ``jobs`` = {key: (fn, sync)}, timed in rotating turns."""
    steps = {k: calibrate(fn, sync, min_time, warmup) for k, (fn, sync) in jobs.items()}
    keys = list(jobs)
    times = {k: [] for k in keys}
    faults = dict.fromkeys(keys, 0)
    for r in range(repeats):
        for k in _turns(keys, r):
            fn, sync = jobs[k]
            f0 = _faults()
            times[k].append(_block(fn, sync, steps[k]))
            faults[k] += _faults() - f0
    out = {}
    for k in keys:
        ts = sorted(times[k])
        q1, q3 = quartiles(ts)
        out[k] = Stats(statistics.median(ts), q1, q3, ts[0], ts[-1], len(ts), steps[k],
                       faults[k] / (repeats * steps[k]))
    return out


def _turns(keys, r):
    """The order of round ``r``: the keys rotated by r, and reversed in every second pass of
    len(keys) rounds, so that each case takes every place in turn and follows more than one
    other case (one that always ran right after the same memory-hungry case would carry its
    cache and page-fault cost)."""
    i = r % len(keys)
    order = keys[i:] + keys[:i]
    return order[::-1] if (r // len(keys)) % 2 else order


def quartiles(values):
    """(q1, q3) of the measured values, interpolated between them, never outside [min, max]
    (statistics' default, "exclusive", extrapolates past the data for few values)."""
    if len(values) == 1:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def traced_peak(fn, sync):
    """Peak bytes allocated during one step, as tracemalloc sees them (NumPy-based only).

    A first traced step allocates what is kept between steps; the second step's peak then
    counts those arrays and every temporary alive at once.
    """
    tracemalloc.start()
    try:
        fn()
        sync()
        tracemalloc.reset_peak()
        fn()
        sync()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
