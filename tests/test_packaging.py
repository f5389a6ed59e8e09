"""The wheel a user installs holds every file the package reads: the bundled data and the shipped catalogues."""

from __future__ import annotations

import fnmatch
import importlib.util
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "custseq"


def _data_files() -> list[str]:
    """Every file of the package that is not Python source, relative to src/ (custseq/scoring/data/actions.json)."""
    return sorted(
        p.relative_to(PACKAGE.parent).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )


def test_package_data_covers_every_file_the_package_ships():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = [f"{package.replace('.', '/')}/{g}" for package, gs in globs.items() for g in gs]
    files = _data_files()
    assert {"custseq/datasets/data/cdnow_master.csv.gz", "custseq/scoring/data/actions.json"} <= set(files)
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="setuptools is not installed")
def test_the_built_wheel_holds_the_data_and_the_command(tmp_path):
    src = tmp_path / "custseq"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(PACKAGE, src / "src" / "custseq", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    build = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = tmp_path.glob("custseq-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(_data_files()) <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "custseq = custseq.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
