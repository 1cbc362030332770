"""The documentation the project owns: every link resolves, every design reference points into docs/, and the
README stays what a newcomer needs (its first lines are the commands CI runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("*.md", "*.py", "*.toml", "*.sh", "*.sbatch")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _files() -> list[Path]:
    skip = {".git", ".venv", "venv", "reports_out", "node_modules"}
    found: list[Path] = []
    for pattern in TEXT:
        found += [p for p in ROOT.rglob(pattern) if not skip & set(p.relative_to(ROOT).parts)]
    return sorted(set(found))


def test_every_design_reference_points_into_docs() -> None:
    """The design lives in docs/design.md; a bare "design.md" outside docs/ would point at a file that is not there."""
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "design.md").read_text(), re.M)}
    stray, missing = [], []
    for path in _files():
        if path == Path(__file__):
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"(\S*)design\.md(?:`{0,2})?(?:\)?\s+section (\d+))?", text):
            prefix, section = match.group(1), match.group(2)
            inside_docs = path.parent == ROOT / "docs"
            if not (inside_docs or prefix.rstrip("`(").endswith("docs/")):
                stray.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
            if section is not None and int(section) not in sections:
                missing.append(f"{path.relative_to(ROOT)}: section {section}")
    assert stray == [], stray
    assert missing == [], missing


@pytest.mark.parametrize("doc", ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))])
def test_every_relative_link_resolves(doc: str) -> None:
    path = ROOT / doc
    broken = [
        target
        for target in LINK.findall(path.read_text())
        if "://" not in target and not (path.parent / target).exists()
    ]
    assert broken == [], f"{doc}: {broken}"


def test_the_readme_fits_a_newcomer() -> None:
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "# aiperf"
    assert sum(1 for line in lines if line.rstrip().endswith("# run the tests")) == 1  # the command CI runs
    assert len(lines) <= 100, len(lines)
    assert "Python >= 3.11" in text and "venv" in text
    for needed in ("docs/design.md", "docs/exit-codes.md", "bench/README.md", "Where results land"):
        assert needed in text, needed
    assert "SAMPLE" not in text
