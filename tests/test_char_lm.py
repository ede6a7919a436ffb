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


def optimisers(lm, params, optimizer):
    """(nnx optimiser, torch optimiser) with the same settings.  nnx adds ε to √v and folds
    the bias corrections into lr; torch adds ε to √v̂: the same Adam update but for ε,
    which is made negligible here."""
    import torch
    if optimizer == "sgd":
        return nnx.SGD(lm.net, lr=0.5), torch.optim.SGD(params, lr=0.5)
    return (nnx.Adam(lm.net, lr=3e-2, eps=1e-14),
            torch.optim.Adam(params, lr=3e-2, eps=1e-14))


def assert_tracks_torch(char_lm, lm, opt, topt, windows, torch_loss, tol):
    """Train nnx and torch side by side on ``windows``: the losses agree step for step
    (and fall); ``torch_loss(x, y)`` is torch's loss tensor of one window."""
    loss = nnx.SoftmaxCrossEntropy()
    ours, theirs = [], []
    for x, y in windows:
        ours.append(float(char_lm.step(lm, loss, opt, x, y)))
        topt.zero_grad()
        value = torch_loss(x, y)
        value.backward()
        topt.step()
        theirs.append(value.item())
    assert ours[-1] < ours[0] - 0.05                # it learns
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=0)


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
    opt, topt = optimisers(lm, net.parameters(), optimizer)
    state = [None]

    def torch_loss(x, y):                       # the state carried across windows
        h, state[0] = net["lstm"](net["emb"](torch.from_numpy(x)), state[0])
        state[0] = tuple(s.detach() for s in state[0])    # truncated backprop through time
        return F.cross_entropy(net["head"](h).reshape(-1, len(chars)),
                               torch.from_numpy(y.reshape(-1)))
    assert_tracks_torch(char_lm, lm, opt, topt, batches[:8], torch_loss, tol)


def test_char_lm_runs_and_samples(capsys, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT * 3, encoding="utf-8")
    example().main([str(text), "--epochs", "1", "--hidden", "8", "--embed", "4", "--seq", "8",
                    "--batch", "4", "--sample", "20"])
    out = capsys.readouterr().out
    assert "epoch 1: train" in out and "bits/char" in out and "sample:" in out
    first = float(out.split("epoch 0: validation ")[1].split()[0])
    assert first == pytest.approx(math.log2(len(set(TEXT))), abs=0.5)


def torch_transformer_twin(torch, lm):
    """The char_lm transformer written out in torch with lm's weights: embedding, learned
    positions, the pre-LN causal blocks (test_attention's torch_block), LayerNorm, head."""
    from test_attention import load_into, torch_block
    emb, pos, *blocks, norm = list(lm.body)
    table = torch.nn.Embedding(emb.num_embeddings, emb.dim, dtype=torch.float64)
    load_into(torch, table, [nnx.to_numpy(emb.W)])
    P = torch.nn.Parameter(torch.from_numpy(nnx.to_numpy(pos.P).copy()))
    twins = [torch_block(torch, b) for b in blocks]
    ln = torch.nn.LayerNorm(norm.params()[0].shape[0], dtype=torch.float64)
    load_into(torch, ln, [nnx.to_numpy(p) for p in norm.params()])
    head = torch.nn.Linear(lm.head.n_in, lm.head.n_out, dtype=torch.float64)
    load_into(torch, head, [nnx.to_numpy(lm.head.W).T, nnx.to_numpy(lm.head.b)])

    def forward(k):
        h = table(k) + P[:k.shape[1]]
        for block, _ in twins:
            h = block(h)
        return head(ln(h))
    params = [*table.parameters(), P, *[p for _, ps in twins for p in ps], *ln.parameters(),
              *head.parameters()]
    return forward, params


@pytest.mark.parametrize("optimizer, tol", [("sgd", 1e-11), ("adam", 1e-9)])
def test_char_lm_transformer_trains_as_pytorch_does(float64, optimizer, tol):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    char_lm = example()
    nnx.seed(1)
    ids, chars = char_lm.encode(TEXT)
    batches = char_lm.windows(ids, 3, 8)
    lm = char_lm.CharLM("transformer", len(chars),
                        argparse.Namespace(hidden=8, heads=2, blocks=2, seq=8))
    lm.check(ids)
    forward, params = torch_transformer_twin(torch, lm)
    opt, topt = optimisers(lm, params, optimizer)

    def torch_loss(x, y):
        return F.cross_entropy(forward(torch.from_numpy(x)).reshape(-1, len(chars)),
                               torch.from_numpy(y.reshape(-1)))
    assert_tracks_torch(char_lm, lm, opt, topt, batches[:6], torch_loss, tol)


def test_char_lm_transformer_runs_samples_and_refuses_bad_heads(capsys, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT * 3, encoding="utf-8")
    common = [str(text), "--model", "transformer", "--epochs", "1", "--seq", "8",
              "--batch", "4", "--sample", "20", "--blocks", "1"]
    example().main(common + ["--hidden", "8", "--heads", "2"])
    out = capsys.readouterr().out
    assert "transformer" in out and "epoch 1: train" in out and "sample:" in out
    with pytest.raises(SystemExit, match=r"^char_lm: MultiHeadAttention: heads must divide "
                                         r"d_model = 6 .* got 4"):
        example().main(common + ["--hidden", "6", "--heads", "4"])
