"""The package installs what it contains, and the code stays ruff- and mypy-clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "aiperf").rglob("__init__.py")} | {
        "aiperf.search_spaces"
    }
    assert found == listed, (
        f"pyproject's packages list is out of date: missing {found - listed}, stale {listed - found}"
    )


def test_search_spaces_are_importable_as_package_data() -> None:
    import importlib.resources

    names = {p.name for p in importlib.resources.files("aiperf.search_spaces").iterdir()}
    assert "__init__.py" in names


def test_import_aiperf_does_not_load_torch() -> None:
    code = "import sys, aiperf, aiperf.arch, aiperf.flops, aiperf.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_static_checks_are_clean(tool: str) -> None:
    exe = shutil.which(tool, path=str(Path(sys.executable).parent)) or shutil.which(tool)
    if exe is None:
        pytest.fail(f"{tool} is not installed: pip install -e '.[test]'")
    argv = [exe, "check", "."] if tool == "ruff" else [exe]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_data_file_in_the_package_is_listed_as_package_data() -> None:
    """A data file the code reads (spec_peaks.json, checksums.json, search spaces) must ship in the wheel."""
    import fnmatch

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    missing = []
    for path in (ROOT / "aiperf").rglob("*.json"):
        package = ".".join(path.parent.relative_to(ROOT).parts)
        if not any(fnmatch.fnmatch(path.name, p) for p in patterns.get(package, [])):
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"not listed in pyproject's package-data: {missing}"
