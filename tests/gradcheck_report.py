"""Print the gradient-check table (module x backend x dtype, worst relative error).

    python tests/gradcheck_report.py > table.md

The same cases as tests/test_gradcheck.py; a relative error counts only where the
absolute error exceeds the tolerance floor (so exact zeros do not dominate).
"""

import numpy as np

import nnx
from cases import LOSSES, MODULES, as_device, module_input
from nnx.testing.kit import device_params


def rows():
    usable = [spec for spec, reason in device_params() if reason is None]
    print("| case | dtype | " + " | ".join(usable) + " |")
    print("| --- | --- |" + " --- |" * len(usable))
    for name in list(MODULES) + list(LOSSES):
        for dtype in ("float64", "float32"):
            if name == "MLP-deep" and dtype == "float32":     # see test_gradcheck.CASES
                print(f"| {name} | {dtype} | " + " | ".join(["not checked: kinks within h"]
                                                            * len(usable)) + " |")
                continue
            cells = []
            for spec in usable:
                with nnx.device(spec):
                    nnx.seed(0)
                    r = _check(name, dtype)
                cells.append(f"{r.max_abs_error:.1e} abs, {r.max_rel_error:.1e} rel"
                             + ("" if r.ok else " FAIL"))
            print(f"| {name} | {dtype} | " + " | ".join(cells) + " |")


def _check(name, dtype):
    rng = np.random.default_rng(1)
    if name in MODULES:
        x = as_device(module_input(name, rng), dtype)
        return nnx.gradcheck(MODULES[name](), x, dtype=dtype, raise_on_failure=False)
    make, scores, targets = LOSSES[name]
    rng = np.random.default_rng(2)
    z, t = as_device(scores(rng), dtype), as_device(targets(rng), dtype)
    return nnx.gradcheck(make(), z, t, dtype=dtype, raise_on_failure=False)


if __name__ == "__main__":
    rows()
