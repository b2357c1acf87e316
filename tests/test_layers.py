"""Imports go one way, downward (STYLE.md and the package docstring): _kernels and the base utilities ->
systems -> dynamics -> observables -> flows, sampling, predictors, models -> bench -> api, cli. Checked on the
source (every import statement, function-level ones included) so that a shortcut upward fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "glassgen"
#: The rank of each top-level module or package of glassgen (the package root holds only __version__).
RANK = {"": 0, "_kernels": 0, "errors": 0, "provenance": 0, "progress": 0, "config_values": 0, "config": 0,
        "data": 0, "systems": 1, "dynamics": 2, "observables": 3, "flows": 4, "sampling": 4, "predictors": 4,
        "models": 4, "bench": 5}


def rank(module: str) -> int | None:
    """Layer of a dotted module name of glassgen (None for other packages)."""
    parts = module.split(".")
    if parts[0] != "glassgen":
        return None
    top = parts[1] if len(parts) > 1 else ""
    if top.startswith(("api", "cli")) or top in ("__init__", "__main__"):
        return 6
    if top not in RANK:
        raise AssertionError(f"glassgen.{top} has no layer: add it to RANK in {__file__}")
    return RANK[top]


def upward_imports(path: Path) -> list[str]:
    rel = path.relative_to(SRC.parent).with_suffix("")
    module = ".".join(p for p in rel.parts if p != "__init__")
    here = rank(module) if module != "glassgen" else 0
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [f"{module}:{node.lineno} imports {n}" for n in names
                  if (r := rank(n)) is not None and here is not None and r > here]
    return found


def test_no_module_imports_from_a_higher_layer():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    bad = [b for f in files for b in upward_imports(f)]
    assert not bad, "\n".join(bad)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """Negative control: a kernel importing the API is reported."""
    fake = SRC / "_kernels" / "forces.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "def f():\n    from glassgen.api import sample\n")
    assert upward_imports(fake) == ["glassgen._kernels.forces:2 imports glassgen.api"]
    with pytest.raises(AssertionError, match="has no layer"):
        rank("glassgen.newthing")
