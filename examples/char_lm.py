"""A character-level language model: train on any UTF-8 text, report the validation loss in
bits per character, then sample from it.

    .venv/bin/python examples/char_lm.py FILE [FILE ...] [--model lstm|transformer]
        [--epochs 2] [--hidden 128] [--embed 32] [--heads 4] [--blocks 2] [--seq 64]
        [--batch 32] [--lr 2e-3] [--sample 300]

The text is split 90/10 into training and validation characters; each is cut into ``--batch``
contiguous streams read ``--seq`` characters at a time.  The model (a row of ``MODELS``) maps
(batch, seq) character indices to (batch, seq, features); a Linear head gives the scores of
the next character at every position, trained with SoftmaxCrossEntropy (the mean over every
position) and Adam.  A stateful LSTM carries its state from one window to the next
(truncated backprop through time) and starts from zeros at each epoch; the causal
transformer sees one window at a time (each position attends to the ones before it) and
samples from the last ``--seq`` characters.
"""

import argparse
import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))   # run from anywhere
import nnx  # noqa: E402

# name: (vocabulary size, options) -> the body, indices (N, T) -> features (N, T, width)
MODELS = {
    "lstm": lambda vocab, a: nnx.Sequential(nnx.Embedding(vocab, a.embed),
                                            nnx.LSTM(a.embed, a.hidden, stateful=True)),
    # a small causal transformer: width --hidden, a learned vector per position (windows of
    # up to --seq characters), --blocks pre-LN blocks of --heads heads, a final LayerNorm
    "transformer": lambda vocab, a: nnx.Sequential(
        nnx.Embedding(vocab, a.hidden), nnx.PositionalEmbedding(a.seq, a.hidden),
        *[nnx.TransformerBlock(a.hidden, a.heads, 4 * a.hidden, causal=True)
          for _ in range(a.blocks)],
        nnx.LayerNorm(a.hidden)),
}


class CharLM:
    """The body from MODELS and a Linear head on every position's features."""

    def __init__(self, model, vocab, args):
        self.body = MODELS[model](vocab, args)
        width = self.body.fprop(nnx.asarray(np.zeros((1, 1), dtype="int64"))).shape[-1]
        self.reset()
        self.head = nnx.Linear(width, vocab)
        self.net = nnx.Sequential(self.body, self.head)     # params(), the optimiser

    def fprop(self, k):
        """Scores (N·T, vocab) of the character after each of k (N, T)."""
        h = self.body.fprop(k)
        self.shape = tuple(h.shape)
        xp = nnx.device_of(h).xp
        return self.head.fprop(xp.reshape(h, (-1, self.shape[-1])))

    def bprop(self, g):
        xp = nnx.device_of(g).xp
        self.body.bprop(xp.reshape(self.head.bprop(g), self.shape))

    def check(self, ids):
        """Check every index once (one readback), then no more at each step."""
        for m in self.body.children():
            if isinstance(m, nnx.Embedding):
                m.check(nnx.asarray(ids))
                m.check_indices = False

    @property
    def stateful(self):
        return any(getattr(m, "stateful", False) for m in self.body.children())

    def reset(self):
        """Start every stream again from a zero state (stateful recurrent layers)."""
        for m in self.body.children():
            if hasattr(m, "reset_state"):
                m.reset_state()


def load_text(paths):
    text = "".join(pathlib.Path(p).read_text(encoding="utf-8") for p in paths)
    if len(text) < 100:
        raise SystemExit(f"char_lm: the text has {len(text)} characters; give at least 100")
    return text


def encode(text):
    """(indices as an int64 host array, the sorted characters)."""
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    return np.array([lookup[c] for c in text], dtype=np.int64), chars


def windows(ids, batch, seq):
    """[(inputs, next characters)], each (batch, seq): ``batch`` contiguous streams."""
    length = (len(ids) - 1) // batch
    if length < seq:
        raise SystemExit(f"char_lm: {len(ids)} characters do not fill {batch} streams of "
                         f"{seq + 1}; lower --batch or --seq")
    x = ids[:batch * length].reshape(batch, length)
    y = ids[1:batch * length + 1].reshape(batch, length)
    return [(x[:, i:i + seq], y[:, i:i + seq]) for i in range(0, length - seq + 1, seq)]


def step(lm, loss, opt, x, y):
    """One training step on host windows; returns the mean loss (nats) as a device scalar."""
    value = loss.fprop(lm.fprop(nnx.asarray(x)), nnx.asarray(y.reshape(-1)))
    lm.bprop(loss.bprop())
    opt.step()
    return value


def evaluate(lm, loss, batches):
    """Mean loss in bits per character over the windows (one readback)."""
    lm.net.eval()
    lm.reset()
    values = [loss.fprop(lm.fprop(nnx.asarray(x)), nnx.asarray(y.reshape(-1)))
              for x, y in batches]
    lm.net.train()
    lm.reset()
    return float(sum(nnx.to_numpy(v) for v in values)) / len(values) / math.log(2)


def sample(lm, chars, length, prime="\n", temperature=0.8, seed=0, context=64):
    """``length`` characters drawn one at a time after ``prime``."""
    rng = np.random.default_rng(seed)
    lookup = {c: i for i, c in enumerate(chars)}
    lm.net.eval()
    lm.reset()
    out, k = [], [lookup.get(c, 0) for c in prime]
    scores = lm.fprop(nnx.asarray(np.array([k], dtype=np.int64)))
    for _ in range(length):
        z = nnx.to_numpy(scores)[-1] / temperature
        p = np.exp(z - z.max())
        c = int(rng.choice(len(chars), p=p / p.sum()))
        out.append(chars[c])
        if lm.stateful:                             # carries on from its state
            k = [c]
        else:                                       # reads the whole context again
            k = (k + [c])[-context:]
        scores = lm.fprop(nnx.asarray(np.array([k], dtype=np.int64)))
    lm.net.train()
    lm.reset()
    return "".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="UTF-8 text files (joined)")
    parser.add_argument("--model", choices=sorted(MODELS), default="lstm")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128,
                        help="the LSTM's state, or the transformer's width")
    parser.add_argument("--embed", type=int, default=32, help="lstm: the embedding's width")
    parser.add_argument("--heads", type=int, default=4, help="transformer: attention heads "
                        "(they divide --hidden)")
    parser.add_argument("--blocks", type=int, default=2, help="transformer: blocks")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-chars", type=int, default=None,
                        help="use only the first this many characters")
    parser.add_argument("--sample", type=int, default=300, help="characters to sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        run(args)
    except nnx.NNXError as e:           # a bad option: nnx's one-line message, no traceback
        raise SystemExit(f"char_lm: {e}") from None


def run(args):
    nnx.seed(args.seed)
    nnx.set_device(args.device)
    text = load_text(args.files)[:args.max_chars]
    ids, chars = encode(text)
    cut = int(0.9 * len(ids))
    train, valid = windows(ids[:cut], args.batch, args.seq), windows(ids[cut:], args.batch, args.seq)
    lm = CharLM(args.model, len(chars), args)
    loss, opt = nnx.SoftmaxCrossEntropy(), nnx.Adam(lm.net, lr=args.lr)
    lm.check(ids)
    loss.check_labels = False               # checked once by lm.check, not at every step
    print(f"char_lm: {len(text):,} characters, {len(chars)} distinct; {args.model} "
          f"{sum(math.prod(p.shape) for p in lm.net.params()):,} parameters; "
          f"{len(train)} steps per epoch of {args.batch} x {args.seq}")
    print(f"epoch 0: validation {evaluate(lm, loss, valid):.3f} bits/char")
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        lm.reset()
        values = [step(lm, loss, opt, x, y) for x, y in train]
        train_bits = float(np.mean([nnx.to_numpy(v) for v in values])) / math.log(2)
        print(f"epoch {epoch}: train {train_bits:.3f}, validation "
              f"{evaluate(lm, loss, valid):.3f} bits/char, {time.perf_counter() - start:.1f} s",
              flush=True)
    if args.sample:
        print("sample:\n" + sample(lm, chars, args.sample, context=args.seq))


if __name__ == "__main__":
    main()
