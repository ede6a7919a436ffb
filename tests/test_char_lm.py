"""examples/char_lm.py: PyTorch with the same architecture, weights and settings gives the
same training losses, step for step, on a small text."""

import argparse
import importlib.util
import math

import numpy as np
import pytest

import nnx
from conftest import REPO

TEXT = "the quick brown fox jumps over the lazy dog; " * 12 + "pack my box with five dozen jugs."


def example():
    spec = importlib.util.spec_from_file_location("char_lm", REPO / "examples" / "char_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def float64():
    before = nnx.get_default_dtype()
    nnx.set_default_dtype("float64")
    yield
    nnx.set_default_dtype(before)


def torch_twin(lm):
    torch = pytest.importorskip("torch")
    emb, lstm = lm.body[0], lm.body[1]
    net = torch.nn.ModuleDict({
        "emb": torch.nn.Embedding(emb.num_embeddings, emb.dim),
        "lstm": torch.nn.LSTM(lstm.n_in, lstm.n_hidden, batch_first=True),
        "head": torch.nn.Linear(lm.head.n_in, lm.head.n_out)}).double()
    ours = [emb.W] + lstm.params() + [lm.head.W.T, lm.head.b]
    theirs = [net["emb"].weight] + list(net["lstm"].parameters()) + list(net["head"].parameters())
    with torch.no_grad():
        for p, w in zip(theirs, ours):
            p.copy_(torch.from_numpy(np.ascontiguousarray(nnx.to_numpy(w))))
    return net


@pytest.mark.parametrize("optimizer, tol", [("sgd", 1e-11), ("adam", 1e-9)])
def test_char_lm_trains_as_pytorch_does(float64, optimizer, tol):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    char_lm = example()
    nnx.seed(0)
    ids, chars = char_lm.encode(TEXT)
    batches = char_lm.windows(ids, 3, 8)
    lm = char_lm.CharLM("lstm", len(chars), argparse.Namespace(embed=5, hidden=7))
    lm.check(ids)
    net = torch_twin(lm)
    loss = nnx.SoftmaxCrossEntropy()
    if optimizer == "sgd":
        opt, topt = nnx.SGD(lm.net, lr=0.5), torch.optim.SGD(net.parameters(), lr=0.5)
    else:
        # nnx adds ε to √v and folds the bias corrections into lr; torch adds ε to √v̂:
        # the same update but for ε, which is made negligible here
        opt = nnx.Adam(lm.net, lr=3e-2, eps=1e-14)
        topt = torch.optim.Adam(net.parameters(), lr=3e-2, eps=1e-14)
    ours, theirs, state = [], [], None
    for x, y in batches[:8]:                    # the state carried across windows
        ours.append(float(char_lm.step(lm, loss, opt, x, y)))
        topt.zero_grad()
        h, state = net["lstm"](net["emb"](torch.from_numpy(x)), state)
        state = tuple(s.detach() for s in state)            # truncated backprop through time
        value = F.cross_entropy(net["head"](h).reshape(-1, len(chars)),
                                torch.from_numpy(y.reshape(-1)))
        value.backward()
        topt.step()
        theirs.append(value.item())
    assert ours[-1] < ours[0] - 0.05                # it learns
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=0)


def test_char_lm_runs_and_samples(capsys, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT * 3, encoding="utf-8")
    example().main([str(text), "--epochs", "1", "--hidden", "8", "--embed", "4", "--seq", "8",
                    "--batch", "4", "--sample", "20"])
    out = capsys.readouterr().out
    assert "epoch 1: train" in out and "bits/char" in out and "sample:" in out
    first = float(out.split("epoch 0: validation ")[1].split()[0])
    assert first == pytest.approx(math.log2(len(set(TEXT))), abs=0.5)
