#!/usr/bin/env bash
# Install Open MPI (if mpirun is missing) and mpi4py into the given Python.  Idempotent.
#   .ci/install-mpi.sh .venv/bin/python
set -euo pipefail
python="${1:?usage: .ci/install-mpi.sh PYTHON (the interpreter to install mpi4py into)}"

if ! command -v mpirun >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-mpi: mpirun is missing and apt-get is not available; install Open MPI" \
             "(or MPICH) with the system's package manager" >&2
        exit 1
    fi
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openmpi-bin libopenmpi-dev
fi

if ! "$python" -c "import mpi4py" >/dev/null 2>&1; then
    if "$python" -m pip --version >/dev/null 2>&1; then
        "$python" -m pip install --quiet "mpi4py>=4.0"
    else                                    # a venv made by uv has no pip
        uv pip install --quiet --python "$python" "mpi4py>=4.0"
    fi
fi
"$python" -c "import mpi4py; print('install-mpi: mpi4py', mpi4py.__version__)"
mpirun --version | head -n 1
