"""Smoke tests of nnx-bench: tiny runs write JSON and CSV that parse; bad arguments exit 2
with one line.  No speed is asserted."""

import csv
import json
import os
import subprocess
import sys

import pytest

from nnx.benchmark import main

TINY = ["--models", "linear", "--batch-sizes", "4", "--repeats", "2", "--min-time", "0",
        "--warmup", "0"]


def test_tiny_run_writes_json_and_csv(tmp_path, capsys):
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    assert main(TINY + ["--backends", "numpy,strict", "--json", str(js), "--csv", str(cs)]) == 0
    out = capsys.readouterr().out
    assert "linear - training step" in out and "samples/s" in out
    data = json.loads(js.read_text())
    assert data["meta"]["cpu"] and data["meta"]["versions"]["numpy"]
    rows = data["results"]
    nnx_rows = {(r["device"], r["mode"]) for r in rows if r["impl"] == "nnx"}
    assert nnx_rows == {(d, m) for d in ("cpu", "strict") for m in ("train", "infer")}
    assert {r["impl"] for r in rows} >= {"nnx", "numpy (hand-written)", "matmul floor"}
    train_cpu = next(r for r in rows if r["label"] == "nnx cpu" and r["mode"] == "train")
    assert train_cpu["samples_per_s"] > 0 and train_cpu["vs_numpy"] > 0
    assert train_cpu["vs_floor"] > 0 and train_cpu["batch"] == 4
    with open(cs, newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert float(table[0]["median_ms"]) > 0 and table[0]["cpu"]


def test_no_references_times_nnx_only(tmp_path):
    js = tmp_path / "r.json"
    assert main(TINY + ["--backends", "numpy", "--no-references", "--json", str(js)]) == 0
    rows = json.loads(js.read_text())["results"]
    assert {r["impl"] for r in rows} == {"nnx"} and len(rows) == 2


def test_float64_run(tmp_path):
    js = tmp_path / "r.json"
    assert main(TINY + ["--backends", "numpy,strict", "--dtype", "float64", "--json", str(js)]) == 0
    rows = json.loads(js.read_text())["results"]
    assert {r["dtype"] for r in rows} == {"float64"} and len(rows) >= 8


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "r.png"
    assert main(TINY + ["--backends", "numpy", "--no-references", "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args", [
    ["--batch-sizes", "0"],
    ["--batch-sizes", "10,x"],
    ["--backends", "nosuchlib"],
    ["--backends", "torch:cuda:99"],
    ["--models", "huge"],
    ["--dtype", "float16"],
    ["--repeats", "0"],
    ["--repeats", "many"],
    ["--json", "/no/such/folder/r.json"],
    ["--frobnicate"],
])
def test_bad_arguments_exit_2_with_one_line(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnx-bench: error:") and "\n" not in err and "Traceback" not in err


def test_console_entry_exits_2():
    r = subprocess.run([sys.executable, "-m", "nnx.benchmark", "--batch-sizes", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "'0' is not a whole number above 0" in r.stderr


def _row(impl, median, q1, q3, label=None):
    return {"impl": impl, "label": label or impl, "batch": 100, "median_ms": median,
            "q1_ms": q1, "q3_ms": q3}


def test_table_notes_explain_the_floor_empty_columns_and_noise():
    from nnx.benchmark import report
    quiet = [_row("nnx", 1.0, 0.95, 1.05, "nnx cpu"), _row(report.NUMPY, 1.0, 0.99, 1.01),
             _row(report.FLOOR, 0.5, 0.49, 0.51)]
    lines = report.notes(quiet, {"versions": {"numpy": "2"}})
    assert lines[0].startswith("matmul floor: the step's matrix products alone")
    assert lines[1:] == ["xtorch is empty: torch is not installed "
                         "(pip install 'nnx-backprop[torch]')"]
    noisy = [_row("nnx", 1.0, 0.8, 1.4, "nnx cpu")]
    lines = report.notes(noisy, {"versions": {"numpy": "2", "torch": "2"}})
    assert "xnumpy is empty: references were not timed (--no-references)" in lines
    assert lines[-1].startswith("warning: wide spread: the IQR of nnx cpu at batch 100 is 60% "
                                "of its median")


def test_ops_and_syncs_columns(tmp_path, capsys):
    """Every nnx and reference row on strict (and torch) counts its operations; nnx rows
    read nothing back inside a step; NumPy rows are not counted."""
    js = tmp_path / "r.json"
    assert main(TINY + ["--backends", "numpy,strict", "--json", str(js)]) == 0
    assert "ops: array operations one step issues" in capsys.readouterr().out
    rows = json.loads(js.read_text())["results"]
    for r in rows:
        if r["device"].startswith(("strict", "torch")):
            assert r["ops_per_step"] > 0, r["label"]
        else:
            assert r["ops_per_step"] is None, r["label"]
        if r["impl"] == "nnx" and r["device"].startswith("strict"):
            assert r["syncs_per_step"] == 0


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                    reason="this OS has no CPU affinity: --threads limits the pools only")
def test_threads_pins_every_thread_of_the_run_to_that_many_cpus(tmp_path):
    """--threads N confines the whole process, threads started before it included, to N
    CPUs (a library's own pool, such as XLA's, would otherwise use more than the label says).
    Run in a child process: pinning is process-wide."""
    pytest.importorskip("threadpoolctl")
    code = ("import os, sys, threading, json\n"
            "from nnx.benchmark import machine, main\n"
            "allowed = sorted(os.sched_getaffinity(0))\n"
            "go = threading.Event(); t = threading.Thread(target=go.wait); t.start()\n"
            "rc = main(sys.argv[1:])\n"
            "early = sorted(os.sched_getaffinity(t.native_id)); go.set(); t.join()\n"
            "print(json.dumps({'rc': rc, 'allowed': allowed, 'early': early,\n"
            "                  'main': sorted(os.sched_getaffinity(0))}))\n")
    js = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-c", code, *TINY, "--backends", "numpy",
                        "--no-references", "--threads", "1", "--json", str(js)],
                       capture_output=True, text=True, timeout=300)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0, r.stderr
    first = got["allowed"][:1]
    assert got["main"] == first and got["early"] == first
    meta = json.loads(js.read_text())["meta"]
    assert meta["cpus"] == first and meta["cpus_pinned"] is True
    assert f"CPUs the run may use: {first[0]} (pinned by --threads)" in r.stdout


def test_without_threads_the_run_keeps_every_cpu(tmp_path):
    js = tmp_path / "r.json"
    before = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    assert main(TINY + ["--backends", "numpy", "--no-references", "--json", str(js)]) == 0
    meta = json.loads(js.read_text())["meta"]
    assert meta["cpus"] == before and meta["cpus_pinned"] is False
