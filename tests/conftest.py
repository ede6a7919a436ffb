"""Shared fixtures: every test that takes ``device`` runs once per device nnx knows.

``device`` is the ``nnx_device`` fixture of nnx's pytest plugin (nnx.testing.plugin), the
one users get for their own tests: devices that are missing here are skipped with the
reason nnx gives for them.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import tempfile

import pytest

import nnx
from nnx.datasets import FILES, data_folder

REPO = pathlib.Path(__file__).resolve().parent.parent


def pytest_terminal_summary(terminalreporter):
    """Skips summarised by reason, one line each with its count (pytest's -rs lists every
    file and line: a missing GPU would fill a screen).  -rs still gives pytest's own list."""
    reasons = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.write_sep("=", "skipped, by reason")
        for reason, n in sorted(reasons.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{n:>5}  {reason}")


def pytest_configure(config):
    # an install older than the pytest11 entry point (or -p no:nnx): load the plugin here
    from nnx.testing import plugin
    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "nnx.testing.plugin")


@pytest.fixture(autouse=True)
def _device_restored():
    """Whatever device a test selects (nnx.set_device), the next one starts where this one
    did: no test depends on the order the tests run in."""
    with nnx.device(nnx.get_device().spec):
        yield


@pytest.fixture(autouse=True)
def _torch_programs_traced_not_compiled(request):
    """On torch, nnx.compile_step's program is a graph traced by torch.fx, then compiled by
    Inductor (4 to 20 s per program here).  The tests check the traced graph against the
    eager step with no compiler (``compiler = None``: the graph runs as it is); the tests
    marked ``inductor`` (tests/test_compile_torch.py) compile it, as users get it."""
    from nnx import backends
    torch_backend = backends.BACKENDS["torch"]
    if request.node.get_closest_marker("inductor") is None:
        torch_backend.compiler = None
    try:
        yield
    finally:
        vars(torch_backend).pop("compiler", None)


@pytest.fixture
def device(nnx_device):
    """The device spec, selected and seeded for the test's duration."""
    return nnx_device


def mnist_candidates():
    """Where the tests look for MNIST: exactly where nnx looks (nnx.datasets.data_folder:
    $NNX_DATA, else the download cache), so a passing test means `nnx train` finds it too."""
    return [pathlib.Path(data_folder(None, "mnist")[0])]


def find_mnist():
    """The folder holding all four IDX files (gzipped or raw), else None."""
    for path in mnist_candidates():
        if all((path / (n + ".gz")).is_file() or (path / n).is_file() for n in FILES):
            return path
    return None


@pytest.fixture
def mnist_dir():
    """The MNIST folder (see mnist_candidates); tests that use it carry the mnist marker."""
    path = find_mnist()
    if path is None:
        pytest.skip(mnist_missing())
    return path


def mnist_missing():
    """The skip reason of every test that needs MNIST and cannot find it."""
    return (f"MNIST not found in {' or '.join(map(str, mnist_candidates()))} (set NNX_DATA "
            f"to the folder with the IDX files, or run nnx train once to download it)")


# -- long subprocesses, started with the run ---------------------------------------------------
class Started:
    """A subprocess started before the first test (see pytest_collection_finish), in a process
    group of its own (stop ends what it started too), its output in temporary files (a pipe
    nobody reads for minutes would fill and stop it)."""

    def __init__(self, args, **popen):
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=self.err, text=True,
                                     start_new_session=True, **popen)
        self.cleanup = []               # folders to remove when the run ends

    def result(self, timeout):
        """(returncode, stdout, stderr) once it has ended; the return code is None if it
        ran past ``timeout`` seconds from now (it is then stopped)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            code = None
        self.out.seek(0)
        self.err.seek(0)
        return code, self.out.read(), self.err.read()

    def _kill(self):
        try:
            if hasattr(os, "killpg"):
                os.killpg(self.proc.pid, signal.SIGKILL)
            elif self.proc.poll() is None:
                self.proc.kill()        # Windows: no process groups to end
        except ProcessLookupError:
            pass                        # the group has ended
        self.proc.wait()

    def stop(self):
        self._kill()
        self.out.close()
        self.err.close()
        for folder in self.cleanup:
            shutil.rmtree(folder, ignore_errors=True)


EARLY = {}      # test module name -> {name: Started}, from the module's start_early()


def pytest_collection_finish(session):
    """A test module with a ``start_early()`` function, any of whose tests is selected, has it
    called once, here, before the first test runs: it starts the long subprocesses that
    those tests only wait for and check (the executed tutorials, bench/gpu.sh --rehearse),
    so that they run on the machine's other core beside the rest of the suite instead of
    one after another inside it.  They take the environment the run started with."""
    if session.config.option.collectonly:
        return
    for item in session.items:
        module = getattr(item, "module", None)
        start = getattr(module, "start_early", None)
        if start is not None and module.__name__ not in EARLY:
            EARLY[module.__name__] = start()


def pytest_sessionfinish(session):
    for started in EARLY.values():
        for s in started.values():
            s.stop()


def early(module_name, start):
    """What ``start`` (the module's start_early) started, started now if it was not yet (a
    test module imported some other way); the test waits for it with Started.result."""
    if module_name not in EARLY:
        EARLY[module_name] = start()
    return EARLY[module_name]
