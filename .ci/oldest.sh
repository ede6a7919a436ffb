#!/usr/bin/env bash
# CI, second run: the suite on the oldest versions pyproject.toml declares (numpy 2.0, the
# floors of array-api-compat and tqdm, the test extras at their floors), so that a declared
# floor cannot drift from what nnx really needs.  Optional backends (torch, JAX, MPI) are
# left out here: their tests skip, and the main run covers them at current versions.
# Usage: .ci/oldest.sh [pytest arguments]   (run from anywhere; NNX_DATA as in .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-oldest
# the floors, as declared in pyproject.toml ([project] dependencies, the [test] extra);
# a test (tests/test_install.py) checks that this list and pyproject.toml agree
FLOORS=(
    "numpy==2.0.*"              # the first NumPy whose arrays have .device (nnx reads it)
    "array-api-compat==1.14.0"
    "tqdm==4.66.0"
    "pytest==8.0.0"
    "hypothesis==6.100.0"
    "array-api-strict==2.5.0"    # the first whose arrays deep-copy (gradcheck copies modules)
    "pytest-benchmark==4.0.0"
    "matplotlib==3.8.4"         # the first matplotlib built for NumPy 2
    "threadpoolctl==3.0.0"
)
# not a floor of nnx's: the pyparsing of matplotlib 3.8.4's day (later ones warn about the
# camelCase names that matplotlib 3.8 calls, 285 warnings in a run)
CONTEMPORARY=("pyparsing<3.2")

rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet "${FLOORS[@]}" "${CONTEMPORARY[@]}"
"$VENV/bin/pip" install --quiet --no-deps -e .        # nnx itself, on exactly those versions
"$VENV/bin/pip" check
"$VENV/bin/python" -c "import numpy, array_api_compat, tqdm; print('ci: oldest:', 'numpy', numpy.__version__, 'array-api-compat', array_api_compat.__version__, 'tqdm', tqdm.__version__)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
