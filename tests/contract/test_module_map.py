"""docs/architecture.md's module map names every module of the library and the tools, and
nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import ROOT

DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
PACKAGES = {
    "Library modules": ROOT / "layers" / "comfyroute" / "comfyroute",
    "Tool modules": ROOT / "tools" / "comfyroute_tools",
}


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}.*?$(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert match, f"docs/architecture.md has no '## {title}' section"
    return match.group(1)


def modules(package: Path) -> set[str]:
    found = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    # A package's __init__ is listed only when it holds more than a docstring.
    return {m for m in found if not m.endswith("__init__.py") or (package / m).stat().st_size > 400}


@pytest.mark.parametrize("title", sorted(PACKAGES))
def test_every_module_is_in_the_map_and_every_mapped_module_exists(title: str) -> None:
    text = section(title)
    mapped = {m for cell in re.findall(r"^\| ([^|]+) \|", text, re.M) for m in re.findall(r"`([\w/]+\.py)`", cell)}
    package = PACKAGES[title]
    assert modules(package) - mapped == set(), "modules missing from the map"
    assert {m for m in mapped if not (package / m).is_file()} == set(), "mapped modules that do not exist"
