"""Packaging: every sub-package in the source tree is installed by a non-editable install.

pyproject.toml lists packages explicitly (bayesbio.models comes from the top-level models/
folder), so a new sub-package that is not listed would work in the editable development
install and be missing from a wheel. This test fails first.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "bayesbio").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    found.add("bayesbio.models")  # package-dir mapping of models/
    missing = sorted(found - listed)
    assert not missing, f"sub-packages missing from [tool.setuptools] packages: {missing}"
    stale = sorted(p for p in listed - found)
    assert not stale, f"listed packages that do not exist: {stale}"


def test_bundled_data_files_are_covered_by_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["bayesbio.datasets"]
    data_dir = ROOT / "bayesbio" / "datasets" / "data"
    uncovered = [f.name for f in data_dir.iterdir() if f.is_file() and not any(f.match(p.split("/")[-1]) for p in patterns)]
    assert not uncovered, f"files in bayesbio/datasets/data not shipped by package-data: {uncovered}"
