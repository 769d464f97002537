"""Dependencies inside the ``layer`` package point one way (docs/architecture.md), read with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "layer"
MODULES = {
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
    for p in PACKAGE.rglob("*.py")
}
#: The core: what every step may use. It imports no network, attribution, check, validation or figure code.
CORE = ("layer.names", "layer.io", "layer.logs", "layer.games", "layer.config", "layer.codegraph",
        "layer.regions", "layer.attribution_files", "layer.aggregate", "layer.stats")
UPPER = ("layer.nets", "layer.explain", "layer.checks", "layer.validation", "layer.features", "layer.figures")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("layer.")}


def under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def violations(module: str, got: set[str]) -> list[str]:
    """The imports of ``module`` that go against the arrows."""
    bad: list[str] = []
    if under(module, CORE):
        # the registry is torch-free data (the method names), the one upper module the core may read
        bad += [n for n in got if under(n, UPPER) and not n.startswith("layer.explain.registry")]
    if under(module, ("layer.explain",)):
        bad += [n for n in got if under(n, ("layer.nets.train", "layer.checks", "layer.figures"))]
    if under(module, ("layer.figures",)):
        bad += [n for n in got if under(n, ("layer.nets", "layer.explain", "layer.checks.profiles"))]
    if under(module, ("layer.cohort", "layer.synth")):
        bad += [n for n in got if under(n, CORE[5:] + UPPER)]
    return bad


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_one_way(module):
    assert violations(module, imports(MODULES[module])) == []


def test_a_planted_backward_import_is_caught(tmp_path):
    """The old regions.py imported a check (robustness.perturb_layers): that is what this test exists for."""
    planted = tmp_path / "membranes.py"
    planted.write_text("from layer.checks.robustness import perturb_layers\nfrom layer.names import LAYERS\n")
    assert sorted(violations("layer.regions.membranes", imports(planted))) == [
        "layer.checks.robustness", "layer.checks.robustness.perturb_layers"]
    assert violations("layer.explain.attribute", {"layer.nets.train"}) == ["layer.nets.train"]


@pytest.mark.parametrize("init", sorted(p for p in PACKAGE.rglob("__init__.py") if p.parent.name != "synth"))
def test_subpackage_inits_import_nothing(init):
    """The Snakemake process imports layer.codegraph, layer.config and layer.explain.registry: an __init__
    that imported torch would slow every workflow start."""
    assert not [n for n in ast.parse(init.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
