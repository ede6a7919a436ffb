"""Sphinx configuration of nnx's documentation site (docs/).

Build it with the command in README.md (warnings are errors):

    .venv/bin/pip install -e ".[docs]" && .venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

Pages are MyST markdown (guide/, the index), the API reference comes from the docstrings
(api/, autosummary), and the tutorials in tutorials/ are Python scripts that sphinx-gallery
executes at build time, their printed output and plots shown on the page.  Nothing here
reaches the network: no intersphinx, MathJax is served from the built site
(sphinx-mathjax-offline), furo ships its own fonts.  MNIST comes from $NNX_DATA, as it does
for a user.
"""

import os

import nnx  # the installed package: the docs describe what a user gets

project = "nnx"
author = "the nnx authors"
copyright = "the nnx authors (MIT licence)"
release = version = nnx.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",           # MathJax copied into _static: the pages read offline
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_tutorials/*.ipynb", "auto_tutorials/*.py",
                    "auto_tutorials/*.zip", "tutorials/GALLERY_HEADER.rst", "screenshot.sh"]
templates_path = ["_templates"]

# A stale name, a dead internal link or a failing example fails the build (run with -W).
nitpicky = True
nitpick_ignore = [
    # Python's own types, named in docstrings; there is no inventory to resolve them (no
    # intersphinx: the build stays offline)
    ("py:class", name) for name in ("ValueError", "TypeError", "RuntimeError",
                                    "AssertionError", "FloatingPointError", "Exception",
                                    "UserWarning", "object", "int", "float", "str", "bool")
]
suppress_warnings = []

# -- API reference ---------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"              # signatures as written; the docstrings say the types
autodoc_inherit_docstrings = False     # a layer page shows its own formulas, not Module.fprop's line
autodoc_class_signature = "mixed"
add_module_names = False                # "Linear(n_in, n_out)", under the nnx heading
python_use_unqualified_type_names = True

# -- MyST ------------------------------------------------------------------------------
myst_enable_extensions = []               # plain CommonMark + tables: "$NNX_DATA" stays text
myst_heading_anchors = 3                # [text](page.md#a-heading) links resolve

# -- tutorials (sphinx-gallery) --------------------------------------------------------
os.environ.setdefault("MPLBACKEND", "agg")
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "auto_tutorials",
    "filename_pattern": r"/t\d\d_",      # every tutorial is executed
    "ignore_pattern": r"__init__\.py|/_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": False,     # report every failing tutorial; -W fails the build
    "only_warn_on_example_error": False,
    "show_memory": False,
    # its pages load jQuery and DataTables from CDNs; each tutorial's page says its time
    "write_computation_times": False,
    "plot_gallery": "True",
    "min_reported_time": 0,
    "matplotlib_animations": False,
}

# -- HTML ------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"nnx {release}"
html_static_path = ["_static"]
html_css_files = ["nnx.css"]
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
