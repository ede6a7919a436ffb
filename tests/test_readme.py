"""The README's code is the real API: its snippets run."""

import re

import pytest

from conftest import REPO

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)


@pytest.mark.mnist
def test_training_loop_snippet_runs(mnist_dir, monkeypatch, capsys):
    monkeypatch.setenv("NNX_DATA", str(mnist_dir))
    code = BLOCKS[0].replace("range(10)", "range(1)")        # one epoch is enough here
    exec(compile(code, "README.md", "exec"), {})
    errors = int(capsys.readouterr().out.split()[2])
    assert errors < 700


def test_graph_snippet_builds_a_residual_mlp():
    scope = {}
    exec("import nnx\n" + BLOCKS[1], scope)
    text = scope["nnx"].summary(scope["g"], input_shape=(1, 784))
    assert "Total params: 199,210" in text          # 784·200+200 + 200·200+200 + 200·10+10


def test_attention_snippet_runs(capsys):
    block = next(b for b in BLOCKS if "TransformerBlock" in b)
    exec(compile(block, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "(2, 3) True"
