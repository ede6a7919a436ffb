"""The README's code is the real API: its snippets run."""

import re

import pytest

from conftest import REPO

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def block(marker):
    """The first python block of the README that contains ``marker``."""
    return next(b for b in BLOCKS if marker in b)


@pytest.mark.mnist
def test_training_loop_snippet_runs(mnist_dir, monkeypatch, capsys):
    monkeypatch.setenv("NNX_DATA", str(mnist_dir))
    code = BLOCKS[0].replace("range(10)", "range(1)")        # one epoch is enough here
    exec(compile(code, "README.md", "exec"), {})
    errors = int(capsys.readouterr().out.split()[2])
    assert errors < 700


def test_graph_snippet_builds_a_residual_mlp():
    scope = {}
    exec("import nnx\n" + block("nnx.Graph"), scope)
    text = scope["nnx"].summary(scope["g"], input_shape=(1, 784))
    assert "Total params: 199,210" in text          # 784·200+200 + 200·200+200 + 200·10+10


@pytest.mark.parametrize("marker", ["nnx.AdamW(", "nnx.compile_step("])
def test_optimiser_and_compiled_step_snippets_run(marker, capsys):
    exec(compile(block(marker), "README.md", "exec"), {})
    out = capsys.readouterr().out
    # the mode printed depends on the current device (eager on NumPy, jit on JAX)
    assert ("gradient norm" in out) if "AdamW" in marker else \
        (out.split()[0] in ("eager", "jit") and "loss:" in out)
