"""Data flows one way (DESIGN §8): no module imports from a later layer, and no two units of a layer import each other.

A unit is a top-level module or subpackage of custseq (``windows``, ``scoring``, ``__init__``). Every import
counts: ``import custseq.x``, ``from custseq.x import y``, ``from custseq import x``, relative imports, and
imports inside functions or under ``if TYPE_CHECKING:``. ``from custseq import name`` counts as an import of
the module ``name`` comes from (``__version__``: ``custseq.version``), not of the package.

The checks are plain functions of a package folder, so the canaries at the end run them on planted trees.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "custseq"

# Layer of each unit; a module may import only from its own layer or earlier.
LAYERS = {
    "errors": 0, "version": 0, "config": 0, "schema": 0, "metrics": 0, "progress": 0,
    "io": 1, "datasets": 1,
    "validate": 2,
    "windows": 3, "labels": 3, "text": 3,
    "features": 4, "sequences": 4,
    "models": 5, "baselines": 5,
    "scoring": 6, "evaluation": 6,
    "report": 7,
    "pipelines": 8,
    "service": 9, "spark": 9, "export": 9, "cli": 9, "api": 9, "estimator": 9, "__init__": 9, "__main__": 9,
    "downstream": 9,
}  # fmt: skip


class Violation(NamedTuple):
    module: str  # custseq.windows
    layer: int
    imported: str  # the unit imported: features
    imported_layer: int | None  # None: the unit has no layer

    def __str__(self) -> str:
        where = "no layer" if self.imported_layer is None else f"layer {self.imported_layer}"
        return f"{self.module} (layer {self.layer}) imports {self.imported} ({where})"


def modules(package_root: Path) -> list[Path]:
    """Every .py file of the package."""
    return sorted(package_root.rglob("*.py"))


def module_name(path: Path, package_root: Path) -> str:
    """``custseq/scoring/predict.py`` -> ``custseq.scoring.predict``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(package_root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """``custseq.scoring.predict`` -> ``scoring``; ``custseq`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _file_of(package_root: Path, module: str) -> Path | None:
    """The file of a dotted module name inside the package (a package's ``__init__.py``), or None."""
    folder = package_root.joinpath(*module.split(".")[1:])
    if (folder / "__init__.py").is_file():
        return folder / "__init__.py"
    if module != package_root.name and folder.with_suffix(".py").is_file():
        return folder.with_suffix(".py")
    return None


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from, relative levels resolved against ``module``."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: max(0, len(package) - (node.level - 1))]
    return ".".join([*base, node.module] if node.module else base)


def _source_of(package_root: Path, package: str, name: str, seen: frozenset[str] = frozenset()) -> str:
    """The module that ``from package import name`` takes ``name`` from.

    A submodule of that name; else the module the package's ``__init__`` imports the name from (followed while
    that is a package); else the package itself (a name it defines).
    """
    init = _file_of(package_root, package)
    if init is None or init.name != "__init__.py":
        return package  # a plain module: the name is defined (or imported) there
    if _file_of(package_root, f"{package}.{name}") is not None:
        return f"{package}.{name}"
    if package in seen:
        return package
    for node in ast.walk(ast.parse(init.read_text())):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = _absolute(node, package, is_package=True)
                    if _inside(source, package_root.name):
                        return _source_of(package_root, source, alias.name, seen | {package})
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname == name and _inside(alias.name, package_root.name):
                    return alias.name
    return package


def _inside(module: str, root: str) -> bool:
    return module == root or module.startswith(root + ".")


def imported_modules(path: Path, package_root: Path) -> set[str]:
    """Every module of the package that the file imports, anywhere in it, as absolute dotted names."""
    root = package_root.name
    module = module_name(path, package_root)
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if _inside(alias.name, root))
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, is_package)
            if _inside(source, root):
                found.update(
                    source if alias.name == "*" else _source_of(package_root, source, alias.name)
                    for alias in node.names
                )
        elif (  # importlib.import_module("custseq.x") with a literal name
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and _inside(node.args[0].value, root)
        ):
            found.add(node.args[0].value)
    return found


def imported_units(path: Path, package_root: Path) -> set[str]:
    """The units the file imports (its own included, when it imports a sibling module)."""
    return {unit_of(m) for m in imported_modules(path, package_root)}


def unlayered_units(package_root: Path, layers: Mapping[str, int]) -> list[str]:
    """Units on disk, or imported by a module, that have no layer."""
    units = set()
    for path in modules(package_root):
        units.add(unit_of(module_name(path, package_root)))
        units.update(imported_units(path, package_root))
    return sorted(units - set(layers))


def violations(package_root: Path, layers: Mapping[str, int]) -> list[Violation]:
    """Imports of a later layer's unit, or of a unit without a layer, by a module whose unit has a layer."""
    found = []
    for path in modules(package_root):
        module = module_name(path, package_root)
        own = layers.get(unit_of(module))
        if own is None:
            continue  # reported by unlayered_units
        for unit in sorted(imported_units(path, package_root)):
            if unit not in layers or layers[unit] > own:
                found.append(Violation(module, own, unit, layers.get(unit)))
    return found


def unit_graph(package_root: Path) -> dict[str, set[str]]:
    """unit -> the other units its modules import."""
    graph: dict[str, set[str]] = {}
    for path in modules(package_root):
        unit = unit_of(module_name(path, package_root))
        graph.setdefault(unit, set()).update(imported_units(path, package_root) - {unit})
    return graph


def cycles(package_root: Path, layers: Mapping[str, int]) -> list[tuple[str, ...]]:
    """Units that import each other, directly or through others (strongly connected components of size > 1).

    Only imports the layers allow (same layer or earlier) are followed, so every cycle found lies within one
    layer; a cycle through a later layer is already a violation.
    """
    graph = unit_graph(package_root)
    allowed = {
        unit: {u for u in imported if u in layers and layers[u] <= layers[unit]}
        for unit, imported in graph.items()
        if unit in layers
    }
    return sorted(tuple(sorted(c)) for c in _strongly_connected(allowed) if len(c) > 1)


def _strongly_connected(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


# --- custseq itself ---------------------------------------------------------------------------------------


def test_every_unit_has_a_layer():
    missing = unlayered_units(PACKAGE, LAYERS)
    assert not missing, f"units without a layer in LAYERS (DESIGN §8): {missing}"


def test_no_module_imports_a_later_layer():
    found = violations(PACKAGE, LAYERS)
    assert not found, "imports against the layering (DESIGN §8):\n" + "\n".join(map(str, found))


def test_no_import_cycle_within_a_layer():
    found = cycles(PACKAGE, LAYERS)
    through = []
    for component in found:
        for path in modules(PACKAGE):
            module = module_name(path, PACKAGE)
            others = imported_units(path, PACKAGE) & set(component) - {unit_of(module)}
            through += [f"{module} imports {unit}" for unit in sorted(others) if unit_of(module) in component]
    assert not found, f"units of one layer that import each other: {found}, through\n" + "\n".join(through)


# --- canaries: the same checks on planted trees -------------------------------------------------------------

CLEAN_TREE = {
    "__init__.py": "from custseq.version import __version__\nfrom custseq.windows import Window\n",
    "version.py": "__version__ = '0'\n",
    "errors.py": "from custseq import __version__\n",  # the version module (layer 0), not the package (9)
    "schema.py": "import custseq.errors\n",
    "windows.py": "from custseq.errors import CustseqError\n\nclass Window: ...\n",
    "features/__init__.py": "from . import rfm\n",
    "features/rfm.py": "from ..windows import Window\nfrom .. import schema\n",
    "scoring/__init__.py": "",
    "scoring/x.py": "from custseq.features.rfm import build\n",
    "evaluation/__init__.py": "from .y import evaluate\n",
    "evaluation/y.py": "import custseq.features\n\ndef evaluate():\n    from custseq import windows\n",
}
PLANTED = {
    "windows.py": "from .features import rfm\n",  # layer 3 reads layer 4
    "scoring/x.py": "def score():\n    from ..evaluation.y import evaluate\n",  # scoring -> evaluation ...
    "evaluation/y.py": (  # ... -> scoring: a cycle inside layer 6
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from custseq.scoring import x\n"
    ),
}


def plant(folder: Path, files: Mapping[str, str]) -> Path:
    root = folder / "custseq"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def test_canary_a_clean_tree_passes(tmp_path):
    root = plant(tmp_path, CLEAN_TREE)
    assert unlayered_units(root, LAYERS) == []
    assert violations(root, LAYERS) == []
    assert cycles(root, LAYERS) == []
    assert unit_graph(root)["evaluation"] == {"features", "windows"}


def test_canary_planted_violation_and_cycle_are_found(tmp_path):
    root = plant(tmp_path, {**CLEAN_TREE, **PLANTED})
    assert violations(root, LAYERS) == [Violation("custseq.windows", 3, "features", 4)]
    assert cycles(root, LAYERS) == [("evaluation", "scoring")]
    assert unlayered_units(root, LAYERS) == []


def test_canary_a_cycle_through_three_units_is_one_component(tmp_path):
    root = plant(tmp_path, {"io/__init__.py": "import custseq.datasets\n", "datasets.py": "import custseq.io\n"})
    assert cycles(root, LAYERS) == [("datasets", "io")]
    three = {"a.py": "import custseq.b\n", "b.py": "import custseq.c\n", "c.py": "import custseq.a\n"}
    root = plant(tmp_path / "three", three)
    assert cycles(root, {"a": 0, "b": 0, "c": 0}) == [("a", "b", "c")]
    assert cycles(root, {"a": 0, "b": 0, "c": 1}) == []  # c -> a goes down a layer, and b -> c is a violation
    assert violations(root, {"a": 0, "b": 0, "c": 1}) == [Violation("custseq.b", 0, "c", 1)]


def test_canary_a_unit_without_a_layer_is_reported(tmp_path):
    root = plant(tmp_path, {**CLEAN_TREE, "prepare.py": "from custseq.features import rfm\n",
                            "scoring/x.py": "from custseq.prepare import prepare\n"})  # fmt: skip
    assert unlayered_units(root, LAYERS) == ["prepare"]
    assert violations(root, LAYERS) == [Violation("custseq.scoring.x", 6, "prepare", None)]


@pytest.mark.parametrize(
    ("where", "source", "units"),
    [
        ("scoring/x.py", "import custseq.features.rfm", {"features"}),
        ("scoring/x.py", "import custseq.features.rfm as r", {"features"}),
        ("scoring/x.py", "from custseq.features.rfm import build", {"features"}),
        ("scoring/x.py", "from custseq import features, windows", {"features", "windows"}),
        ("scoring/x.py", "from custseq import __version__", {"version"}),
        ("scoring/x.py", "from custseq import Window", {"windows"}),  # re-exported by custseq/__init__
        ("scoring/x.py", "import custseq", {"__init__"}),
        ("scoring/x.py", "from . import y", {"scoring"}),
        ("scoring/x.py", "from .y import z", {"scoring"}),
        ("scoring/x.py", "from .. import windows", {"windows"}),
        ("scoring/x.py", "from ..features.rfm import build", {"features"}),
        ("scoring/x.py", "from ..features import *", {"features"}),
        ("scoring/__init__.py", "from . import x", {"scoring"}),
        ("scoring/__init__.py", "from ..windows import Window", {"windows"}),
        ("windows.py", "from .features import rfm", {"features"}),
        ("scoring/x.py", "def f():\n    from custseq.evaluation import y", {"evaluation"}),
        ("scoring/x.py", "if TYPE_CHECKING:\n    from custseq.report import html", {"report"}),
        ("scoring/x.py", "class A:\n    def f(self):\n        import custseq.io", {"io"}),
        ("scoring/x.py", "importlib.import_module('custseq.models.train')", {"models"}),
        ("scoring/x.py", "import numpy\nfrom pandas import DataFrame\nimport custseqx", set()),
    ],
)
def test_canary_every_import_form_counts(tmp_path, where, source, units):
    root = plant(tmp_path, {**CLEAN_TREE, where: source + "\n"})
    assert imported_units(root / where, root) == units
