#!/usr/bin/env bash
# The GPU run in one command, within 8 minutes, with no package registry:
#
#   bash bench/gpu.sh [--wheels DIR] [--out DIR]      on a machine with an NVIDIA GPU
#   bash bench/gpu.sh --rehearse [--out DIR]          the same steps, cpu and torch:cpu standing in
#
# 1. versions: the GPU, its driver, Python and the array libraries;
# 2. installs what is missing (array-api-compat, array-api-strict, tqdm, threadpoolctl) from
#    the wheel folder (default: .whl/ in the repository; fill it here with
#    pip download --no-deps -d .whl array-api-compat array-api-strict tqdm threadpoolctl,
#    and put the four MNIST .gz files in .whl/mnist/);
# 3. the tests on cuda:0 and torch:cuda:0 (gradcheck of every module in float64 and float32,
#    cross-backend agreement, optimisers, the compiled step) and a short MNIST run on each;
# 4. nnx-bench on cupy, torch:cuda and jax:cuda (with the references: PyTorch eager, the
#    jax.jit(grad) step, the matmul floor; and nnx's compiled rows) for every model at batch
#    100-1000.
# Everything, with the exact commands and their exit statuses, goes into one results
# folder of at most 8 files (the rest packed into rest.tar.gz).  nnx is used from this
# checkout (a folder of links on PYTHONPATH), so nothing needs building.  Each stage has its
# own time limit; a stage that fails or runs out is recorded and the run goes on.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
REHEARSE=0
WHEELS="$REPO/.whl"
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rehearse) REHEARSE=1 ;;
        --wheels) WHEELS=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n 2,19p "$0"; exit 0 ;;
        *) echo "gpu.sh: unknown argument $1 (see bash bench/gpu.sh --help)" >&2; exit 2 ;;
    esac
    shift
done
STAMP=$(date -u +%Y%m%d-%H%M%S)
[ -n "$OUT" ] || OUT="$REPO/bench/results/gpu-$STAMP"
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
    echo "gpu.sh: $OUT exists and is not empty; give another --out" >&2; exit 2
fi
mkdir -p "$OUT/rest" || exit 2
OUT=$(cd "$OUT" && pwd)
RAW="$OUT/rest"
STARTED=$(date +%s)

if [ -z "${PYTHON:-}" ]; then
    if [ "$REHEARSE" = 1 ] && [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"
    else PYTHON=$(command -v python3 || command -v python); fi
fi

if [ "$REHEARSE" = 1 ]; then
    DEVICES=(cpu torch:cpu)
    BENCH_BACKENDS=numpy,torch:cpu,jax:cpu
    TEST_FILES=(tests/test_compile.py)
    DEVICE_SELECT="cpu and not jax:cpu"
    TEST_SELECT="equals and float64 and sgd"
    TRAIN_ARGS=(--model linear --batch-size 1000)
    BENCH_MODELS=(mlp)
    BENCH_ARGS=(--batch-sizes 100 --repeats 2 --min-time 0.01 --warmup 1)
    LIMIT_TESTS=60 LIMIT_TRAIN=60 LIMIT_BENCH=60
else
    DEVICES=(cuda:0 torch:cuda:0)
    BENCH_BACKENDS=cupy,torch:cuda:0,jax:cuda          # jax: the compiled step's rows
    TEST_FILES=(tests/test_gradcheck.py tests/test_cross_backend.py tests/test_optim.py
                tests/test_optim_fused.py tests/test_compile.py tests/test_train.py
                tests/test_compile_torch.py)   # last: Inductor/Triton compiles on torch:cuda
    DEVICE_SELECT="cuda:0"
    TEST_SELECT=""
    TRAIN_ARGS=(--model mlp --batch-size 100)
    BENCH_MODELS=(mlp deep linear cnn)
    BENCH_ARGS=(--batch-sizes 100,200,500,1000 --repeats 5 --min-time 0.02 --warmup 2)
    LIMIT_TESTS=150 LIMIT_TRAIN=30 LIMIT_BENCH=45      # 6 s + 150 + 3 x 30 + 4 x 45 < 8 min
fi

# nnx from this checkout: nnx/, backends/ as nnx.backends, bench/benchmark as nnx.benchmark
SITE="$RAW/site"
mkdir -p "$SITE/nnx"
for f in "$REPO"/nnx/*; do ln -s "$f" "$SITE/nnx/"; done
ln -s "$REPO/backends" "$SITE/nnx/backends"
ln -s "$REPO/bench/benchmark" "$SITE/nnx/benchmark"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0          # float32 matmuls in float32, not TF32
export JAX_DEFAULT_MATMUL_PRECISION=highest        # JAX uses TF32 on NVIDIA GPUs otherwise
export PYTHONDONTWRITEBYTECODE=1
if [ -d "$WHEELS/mnist" ]; then export NNX_DATA="$WHEELS/mnist"; fi

COMMANDS="$OUT/commands.txt"
{
    echo "# bench/gpu.sh $([ $REHEARSE = 1 ] && echo --rehearse) at $STAMP UTC"
    echo "# repository: $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "# PYTHON=$PYTHON PYTHONPATH=$PYTHONPATH NNX_DATA=${NNX_DATA:-unset}"
    echo "# CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest"
    echo "# status seconds command"
} > "$COMMANDS"

# run LIMIT LOG command...: the command (in the repository) with its output appended to LOG
run() {
    local limit=$1 log=$2; shift 2
    local t0 status
    t0=$(date +%s)
    echo "\$ $*" >> "$log"
    (cd "$REPO" && timeout --kill-after=10 "$limit" "$@") >> "$log" 2>&1
    status=$?
    { printf '%s %s' "$status" "$(( $(date +%s) - t0 ))"; printf ' %q' "$@"; echo; } >> "$COMMANDS"
    [ "$status" = 124 ] && echo "(stopped after ${limit} s)" >> "$log"
    return 0
}

# 1. versions -------------------------------------------------------------------------
V="$OUT/versions.txt"
run 20 "$V" nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
run 20 "$V" nvidia-smi
run 60 "$V" "$PYTHON" -c '
import importlib, platform, sys
print("python", sys.version.split()[0], platform.platform())
for name in ("numpy", "cupy", "torch", "jax", "jaxlib", "array_api_compat", "array_api_strict",
             "pytest", "hypothesis", "pytest_benchmark", "tqdm", "threadpoolctl"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"))
    except Exception as e:
        print(name, "missing:", type(e).__name__, e)
try:
    import cupy
    print("cupy CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "devices",
          cupy.cuda.runtime.getDeviceCount())
except Exception as e:
    print("cupy CUDA: none:", type(e).__name__, e)
try:
    import torch
    print("torch CUDA", torch.version.cuda, "available", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as e:
    print("torch CUDA: none:", e)
try:
    import jax
    print("jax devices", jax.devices())
except Exception as e:
    print("jax devices: none:", e)
'

# 2. install what is missing, from the wheel folder --------------------------------------
I="$RAW/install.txt"
MISSING=$("$PYTHON" - <<'EOF'
import importlib.util
print(" ".join(p for p, m in (("array-api-compat", "array_api_compat"),
                               ("array-api-strict", "array_api_strict"), ("tqdm", "tqdm"),
                               ("threadpoolctl", "threadpoolctl"))
               if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$MISSING" ]; then
    # shellcheck disable=SC2086
    run 120 "$I" "$PYTHON" -m pip install --no-index --find-links "$WHEELS" $MISSING
else
    echo "nothing missing" >> "$I"
fi
run 60 "$OUT/versions.txt" "$PYTHON" -c 'import nnx; print("nnx", nnx.__version__, nnx.__file__); print(nnx.devices())'

# 3. tests on the devices, and a short MNIST run on each ---------------------------------
T="$OUT/tests.txt"
# pytest -k matches the device ids in the test names ([cuda:0-...], [torch:cuda:0-...])
K=(-k "($DEVICE_SELECT)${TEST_SELECT:+ and ($TEST_SELECT)}")
run "$LIMIT_TESTS" "$T" "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts="" -rs \
    --junitxml="$RAW/tests.xml" "${K[@]}" "${TEST_FILES[@]}"
M="$OUT/mnist.txt"
if [ -n "${NNX_DATA:-}" ]; then
    for d in "${DEVICES[@]}"; do
        run "$LIMIT_TRAIN" "$M" "$PYTHON" -m nnx train "${TRAIN_ARGS[@]}" --epochs 1 \
            --device "$d" --no-malloc-tuning
    done
    run "$LIMIT_TRAIN" "$M" "$PYTHON" -m nnx train "${TRAIN_ARGS[@]}" --epochs 1 \
        --device "${DEVICES[1]}" --compile --no-malloc-tuning
else
    echo "no MNIST: put the four .gz files in $WHEELS/mnist" >> "$M"
fi

# 4. nnx-bench --------------------------------------------------------------------------
B="$OUT/bench.txt"
for model in "${BENCH_MODELS[@]}"; do
    run "$LIMIT_BENCH" "$B" "$PYTHON" -m nnx.benchmark --backends "$BENCH_BACKENDS" \
        --models "$model" "${BENCH_ARGS[@]}" --json "$RAW/bench-$model.json" \
        --csv "$RAW/bench-$model.csv"
done
"$PYTHON" - "$RAW" "$OUT/bench.csv" <<'EOF' >> "$RAW/pack.txt" 2>&1
import glob, sys
rows = []
for i, path in enumerate(sorted(glob.glob(f"{sys.argv[1]}/bench-*.csv"))):
    lines = open(path).read().splitlines()
    rows += lines if not rows else lines[1:]
open(sys.argv[2], "w").write("\n".join(rows) + "\n")
EOF

# the rest into one archive; the results folder keeps at most 8 files ------------------
printf '# total %s s\n' "$(( $(date +%s) - STARTED ))" >> "$COMMANDS"
rm -rf "$SITE"
tar -czf "$OUT/rest.tar.gz" -C "$OUT" rest && rm -rf "$RAW"
ls -l "$OUT" >> "$COMMANDS"
n=$(find "$OUT" -type f | wc -l)
big=$(find "$OUT" -type f -size +16M | wc -l)
if [ "$n" -gt 8 ] || [ "$big" -gt 0 ]; then
    echo "gpu.sh: $n files, $big over 16 MiB in $OUT: more than can come back" >&2; exit 1
fi
echo "gpu.sh: results in $OUT ($n files, $(( $(date +%s) - STARTED )) s)"
# exit 0 even when a stage failed: commands.txt holds every status
