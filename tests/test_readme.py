"""The code in README.md and in the documentation's markdown pages (docs/**/*.md) is the real
API: every ```python block runs as written, and what a page says a block prints, or what a
command's defaults are, is checked where that page says it.

Each block runs on its own, in a fresh namespace (a reader may start at any section, so
every block carries its imports).  A ```text block right after a python block is what that
block prints, compared as a doctest would (``...`` matches anything, whitespace is
normalised).  The training-loop block reads MNIST through nnx's search path; here it gets
a small real subset (the first 2000 / 1000 rows, written as IDX files), so it runs as
written in seconds.
"""

import doctest
import gzip
import re

import numpy as np
import pytest

import nnx
from conftest import REPO, find_mnist, mnist_missing

README = (REPO / "README.md").read_text()
# the pages that hold what moved out of the README
PAGES = {p.relative_to(REPO).as_posix(): p.read_text()
         for p in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
         if not {"_build", "auto_tutorials"} & set(p.parts)}
GUIDE = {name: PAGES[f"docs/guide/{name}.md"] for name in ("cli", "testing")}
# (page, python code, the text block after it or None), in each page's order
BLOCKS = [(page, code, shown or None) for page, text in PAGES.items() for code, shown in
          re.findall(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```\n)?", text, re.S)]


def _id(block):
    page, code = block[0], block[1]
    for line in code.splitlines():
        if line.strip() and not line.startswith(("import", "from")):
            return f"{page}: {line.strip()[:40]}"
    return f"{page}: {code[:40]}"


def _needs_mnist(code):
    return "load_mnist" in code


def _mnist_subset(folder, source):
    """The first 2000 training and 1000 test rows of MNIST as IDX files in ``folder``."""
    folder.mkdir()
    for name, rows in (("train", 2000), ("t10k", 1000)):
        for kind, magic, dims in (("images", 0x803, (rows, 28, 28)), ("labels", 0x801, (rows,))):
            file = f"{name}-{kind}-idx{len(dims)}-ubyte"
            full = nnx.datasets.read_idx(next(p for p in (source / (file + ".gz"), source / file)
                                              if p.is_file()))
            header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
            (folder / (file + ".gz")).write_bytes(gzip.compress(header + full[:rows].tobytes()))
    return folder


@pytest.mark.parametrize("block", BLOCKS, ids=[_id(b) for b in BLOCKS])
def test_every_python_block_runs_as_written(block, capsys, monkeypatch, tmp_path, recwarn):
    page, code, shown = block
    if _needs_mnist(code):
        source = find_mnist()
        if source is None:
            pytest.skip(mnist_missing())
        monkeypatch.setenv("NNX_DATA", str(_mnist_subset(tmp_path / "mnist", source)))
    nnx.set_device("cpu")
    exec(compile(code, page, "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    if shown is not None:
        checker = doctest.OutputChecker()
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        assert checker.check_output(shown, out, flags), \
            f"{page} shows:\n{shown}\nthe block printed:\n{out}"
    if _needs_mnist(code):               # 10 epochs on 2000 rows: far better than chance
        errors, total = map(int, re.fullmatch(r"test errors: (\d+) / (\d+)\n", out).groups())
        assert total == 1000 and errors < 200, out
    assert not [w for w in recwarn if not issubclass(w.category, nnx.datasets.DatasetWarning)]


def test_the_blocks_claims_hold(capsys):
    """What the prose says the blocks show: the CNN's shapes, the regression fit improving."""
    (cnn,) = [c for _, c, _ in BLOCKS if "nnx.Conv2D(1, 8, 5)" in c]
    exec(cnn, {})
    summary = capsys.readouterr().out
    for shape in ("(100, 8, 12, 12)", "(100, 16, 4, 4)", "(100, 256)", "(100, 10)"):
        assert shape in summary, summary
    (fit,) = [c for _, c, _ in BLOCKS if "nnx.MSE()" in c]
    exec(fit, {})
    first, last = map(float, re.findall(r"\d+\.\d+", capsys.readouterr().out))
    assert last < first / 2


def test_the_cli_synopsis_shows_the_real_defaults():
    from nnx.cli import MLP_DEFAULTS, MODEL_DEFAULTS, build_parser
    synopsis = re.search(r"```sh\n(nnx train --model .*?)\nnnx train --log", GUIDE["cli"],
                         re.S)[1]
    shown = dict(re.findall(r"--([a-z-]+) (\S+)", synopsis.replace("\\\n", " ")))
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    defaults = {a.dest: a.default for a in train._actions}
    defaults.update({k: v for k, v in {**MLP_DEFAULTS, **MODEL_DEFAULTS[None]}.items()})
    choices = {a.dest: a.choices for a in train._actions}
    for option, value in shown.items():
        dest = option.replace("-", "_")
        if value.startswith("{"):                           # --model {linear,...}
            assert value.strip("{}").split(",") == list(choices[dest]), option
        elif option in ("data", "save", "plot"):            # placeholders, no default
            assert defaults[dest] is None, option
        elif option == "device":
            assert value == "cpu"                           # the default device
        elif option == "optimizer":                         # None: the model's own, else sgd
            assert defaults[dest] is None and value == "sgd" and \
                "optimizer" not in MODEL_DEFAULTS.get("mlp", {}), option
        else:
            assert str(defaults[dest]) == value or float(defaults[dest]) == float(value), \
                (option, value, defaults[dest])
    cnn = dict(re.findall(r"--([a-z-]+) (\S+)", re.search(r"the cnn's: `(.*?)`", GUIDE["cli"],
                                                          re.S)[1]))
    for option, value in cnn.items():
        got = MODEL_DEFAULTS["cnn"][option.replace("-", "_")]
        assert str(got) == value or float(got) == float(value), (option, value, got)


def test_the_quoted_messages_are_nnx_s_own():
    """Error samples quoted in the guide read as nnx writes them."""
    from nnx.testing import check_module
    assert "device 'cuda' is unavailable: cupy is not installed" in GUIDE["testing"]

    class WrongCube(nnx.Module):
        def fprop(self, x):
            self.x = x
            y = x * x * x
            self.out_shape = tuple(y.shape)
            return y

        def bprop(self, grad_output, *, need_input_grad=True):
            self.check_grad(grad_output)
            return self.x * self.x * grad_output

    sample = re.search(r"```\n(ModuleCheckError: .*?)```", GUIDE["testing"],
                       re.S)[1].splitlines()
    with pytest.raises(nnx.testing.ModuleCheckError) as e:
        check_module(WrongCube, (4, 5), devices=["cpu"])
    real = str(e.value).splitlines()
    assert re.sub(r"\d+ check", "N check", sample[0]) == \
        "ModuleCheckError: " + re.sub(r"\d+ check", "N check", real[0])
    assert sample[1] == real[1]
    assert sample[2].removesuffix("...") == real[2][:len(sample[2]) - 3]


def test_every_block_is_collected():
    assert len(BLOCKS) == sum(text.count("```python\n") for text in PAGES.values()) >= 10
    assert "README.md" in {page for page, _, _ in BLOCKS}
    assert sum(text.count("```python\n") for page, text in PAGES.items()
               if page.startswith("docs/")) >= 9


@pytest.mark.parametrize("marker", ["nnx.AdamW(", "nnx.compile_step("])
def test_optimiser_and_compiled_step_snippets_say_what_they_show(marker, capsys):
    ((page, code),) = [(p, c) for p, c, _ in BLOCKS if marker in c]
    exec(compile(code, page, "exec"), {})
    out = capsys.readouterr().out
    # the mode printed depends on the current device (eager on NumPy, jit on JAX)
    assert ("gradient norm" in out) if "AdamW" in marker else \
        (out.split()[0] in ("eager", "jit") and "loss:" in out)
