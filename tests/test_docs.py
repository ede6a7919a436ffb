"""The documentation site (docs/) stays complete and builds as README.md says: every public
name has an API page, every guide page and tutorial is reachable, CI builds the site with the
README's command, and the build reaches no network.  (CI's sphinx-build -W --keep-going is
the test that the pages render and the tutorials run; these checks are the cheap ones.)"""

import re

import pytest

import nnx
from conftest import REPO

DOCS = REPO / "docs"
BUILD = ('.venv/bin/pip install -e ".[docs]" && '
         '.venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html')


def _documented():
    """{dotted name} listed in the API reference's autosummary tables."""
    names = set()
    for page in sorted((DOCS / "api").glob("*.rst")):
        text = page.read_text()
        module = "nnx"
        for line in text.splitlines():
            m = re.match(r"\.\. (?:currentmodule|module):: (\S+)", line)
            if m:
                module = m[1]
            elif re.match(r"   [A-Za-z_][\w.]*$", line):
                names.add(f"{module}.{line.strip()}")
    return names


def test_every_public_name_has_an_api_page():
    import nnx.datasets
    import nnx.distributed
    import nnx.models
    import nnx.testing
    documented = _documented()
    public = {f"nnx.{n}" for n in nnx.__all__ if n != "datasets"}
    for mod in (nnx.datasets, nnx.testing, nnx.distributed):
        public |= {f"{mod.__name__}.{n}" for n in mod.__all__
                   if f"nnx.{n}" not in public}                # DatasetError: nnx.DatasetError
    public |= {f"nnx.models.{n}" for n, f in vars(nnx.models).items()
               if callable(f) and not n.startswith("_") and
               getattr(f, "__module__", "") == "nnx.models"}
    missing = sorted(public - documented)
    assert not missing, f"add these to docs/api/*.rst: {missing}"
    stale = sorted(n for n in documented if not _resolves(n))
    assert not stale, f"docs/api/*.rst names objects that do not exist: {stale}"


def _resolves(dotted):
    import importlib
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for p in parts[i:]:
                obj = getattr(obj, p)
        except AttributeError:
            return False
        return True
    return False


def test_every_guide_page_and_tutorial_is_in_the_site():
    index = (DOCS / "index.md").read_text()
    for page in sorted((DOCS / "guide").glob("*.md")):
        assert f"guide/{page.stem}\n" in index, f"{page.name} is not in docs/index.md's toctree"
    conf = (DOCS / "conf.py").read_text()
    pattern = re.search(r'"filename_pattern": r"(.*?)"', conf)[1]
    tutorials = sorted((DOCS / "tutorials").glob("*.py"))
    assert {"t01_mini_batch_loop.py", "t02_your_own_layer.py",
            "t07_benchmarking.py"} <= {t.name for t in tutorials}
    for t in tutorials:
        assert re.search(pattern, "/" + t.name), f"{t.name} would not be executed"
        doc = t.read_text().split('"""')[1].strip().splitlines()
        assert len(doc) > 1 and set(doc[1]) == {"="} and len(doc[1]) >= len(doc[0]), \
            f"{t.name}: the docstring starts with a title underlined by ==="


def test_readme_and_ci_build_the_site_the_same_way():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert BUILD in readme
    assert BUILD.split(" && ")[1] in ci and "$DOCS" in ci
    assert 'grep -qF -- "$cmd" README.md' in ci


def test_the_build_stays_offline_and_strict():
    conf = (DOCS / "conf.py").read_text()
    assert "nitpicky = True" in conf
    assert "sphinx.ext.intersphinx" not in conf      # it would fetch inventories
    assert '"sphinx-mathjax-offline"' in conf        # MathJax served by the site, not a CDN


def test_the_docs_extra_holds_the_build_and_the_core_stays_light():
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    docs = {re.match(r"[A-Za-z0-9_.-]+", d)[0].lower(): d
            for d in meta["optional-dependencies"]["docs"]}
    for name in ("sphinx", "myst-parser", "sphinx-gallery", "furo", "matplotlib",
                 "sphinx-mathjax-offline"):
        assert re.fullmatch(rf"{name}>=[0-9.]+", docs[name], re.I), docs.get(name)
    core = {re.match(r"[A-Za-z0-9_.-]+", d)[0].lower() for d in meta["dependencies"]}
    assert not core & set(docs), core & set(docs)
