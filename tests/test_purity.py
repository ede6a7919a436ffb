"""nnx/ is written against the Array API only: it imports no concrete array library."""

import ast
import pathlib
import subprocess
import sys

from conftest import REPO

CONCRETE = {"numpy", "cupy", "torch", "jax", "array_api_strict", "mpi4py"}


def test_nnx_imports_no_concrete_array_library():
    offenders = []
    for path in sorted((REPO / "nnx").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} imports {n}"
                          for n in names if n.split(".")[0] in CONCRETE]
    assert not offenders, "\n".join(offenders)


def test_the_checker_would_catch_one(tmp_path):
    tree = ast.parse("import numpy as np\nfrom cupy import asarray\n")
    found = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert len(found) == 2


def test_import_nnx_loads_no_optional_backend():
    code = ("import sys, nnx; nnx.Linear(3, 2); "
            "print(sorted(m for m in ('torch', 'cupy', 'jax', 'array_api_strict', 'mpi4py', "
            "'matplotlib', 'tqdm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True,
                         capture_output=True, check=True)
    assert out.stdout.strip() == "[]"
