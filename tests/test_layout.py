"""The package's architecture: layers import only layers below them; no study imports another paper's."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vssl_core.repro.paths import repo_root

PKG = repo_root() / "vssl_core"
#: Each layer may import the ones listed (and itself); ``errors`` and ``_lazy`` are open to all.
ALLOWED = {
    "repro": {"repro"},
    "data": {"data", "repro", "eval"},
    "eval": {"eval", "repro"},
    "models": {"models", "eval", "data", "repro"},
    "training": {"training", "models", "eval", "data", "repro"},
    "studies": {"studies", "training", "models", "eval", "data", "repro"},
    "viz": {"viz", "studies", "training", "models", "eval", "data", "repro"},
    "cli": {"cli", "viz", "studies", "training", "models", "eval", "data", "repro"},
}
OPEN = {"errors", "_lazy", "__version__"}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vssl_core"):
            parts = node.module.split(".")
            if len(parts) == 1:
                out |= {a.name for a in node.names}
            else:
                out.add(".".join(parts[1:]))
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("vssl_core.")}
    return out


def test_top_level_holds_no_study_or_library_module():
    modules = {p.stem for p in PKG.glob("*.py")}
    assert modules == {"__init__", "__main__", "errors", "_lazy"}
    assert {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(ALLOWED)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_layers_below(layer):
    bad = []
    for path in (PKG / layer).rglob("*.py"):
        for target in _imports(path):
            head = target.split(".")[0]
            if head not in OPEN and head not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(repo_root())} imports vssl_core.{target}")
    assert bad == []


def test_no_study_imports_another_papers_study():
    papers = ("how_to_listen", "flowgrad", "hear_the_flow", "do_we_need_sound")
    paper_of = {p.stem: next(k for k in papers if p.stem.startswith(k)) for p in (PKG / "studies").glob("*.py")
                if p.stem != "__init__"}
    for stem, paper in paper_of.items():
        for target in _imports(PKG / "studies" / f"{stem}.py"):
            if target.startswith("studies."):
                other = target.split(".")[1]
                assert paper_of.get(other) == paper, f"studies/{stem}.py imports studies.{other}"
