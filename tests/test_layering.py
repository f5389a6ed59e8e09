"""No module imports from a later layer (DESIGN §8): data flows one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "custseq"

# Layer of each top-level module or subpackage; a module may import only from its own layer or earlier.
LAYERS = {
    "errors": 0, "config": 0, "schema": 0, "version": 0,
    "io": 1, "datasets": 1, "metrics": 0,
    "validate": 2,
    "windows": 3, "labels": 3,
    "features": 4, "sequences": 4,
    "models": 6, "baselines": 6,
    "scoring": 7, "evaluation": 7,
    "report": 8,
    "pipelines": 9,
    "service": 10, "spark": 10, "cli": 10, "api": 10, "estimator": 10, "__init__": 10, "__main__": 10,
}  # fmt: skip


def _unit(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_units(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    units = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("custseq."):
            units.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            units.update(a.name.split(".")[1] for a in node.names if a.name.startswith("custseq."))
    return units


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert {_unit(p) for p in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_earlier_layers(path):
    own = LAYERS[_unit(path)]
    later = {u: LAYERS[u] for u in _imported_units(path) if LAYERS.get(u, -1) > own}
    assert not later, f"{path.relative_to(PACKAGE)} (layer {own}) imports later layers {later}"


def test_the_checker_catches_a_violation(tmp_path):
    bad = PACKAGE / "windows.py"
    assert "features" in LAYERS and LAYERS["features"] > LAYERS[_unit(bad)]
    fake = tmp_path / "fake.py"
    fake.write_text("from custseq.features.rfm import build_features\n")
    assert _imported_units(fake) == {"features"}
