"""The README and docstrings point at things that exist, and its layout section maps every module."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(title):
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_layout_section_maps_every_top_level_module():
    layout = _section("Layout")
    package = ROOT / "tfseg"
    entries = [f"tfseg/{p.name}/" if p.is_dir() else f"tfseg/{p.name}"
               for p in package.iterdir() if not p.name.startswith(("_", ".")) or p.name == "__init__.py"]
    entries = [e for e in entries if "__pycache__" not in e]
    missing = [e for e in sorted(entries) if f"`{e}`" not in layout]
    assert not missing, f"README's Layout section does not say what these do: {missing}"


def test_no_reference_to_files_missing_from_the_repository():
    """Docstrings, tests and the README cite only paths that exist (no ``docs/reference.md``)."""
    cited = re.compile(r"\b((?:docs|tools|tests|tfseg|zoo)/[\w./-]+\.(?:md|py|json|yaml))\b")
    missing = []
    sources = [ROOT / "README.md", *ROOT.glob("tfseg/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("tools/*.py")]
    for path in [p for p in sources if p.name != Path(__file__).name]:
        for reference in cited.findall(path.read_text()):
            if not (ROOT / reference).exists():
                missing.append(f"{path.relative_to(ROOT)} -> {reference}")
    bare = [str(p.relative_to(ROOT)) for p in [*ROOT.glob("tfseg/**/*.py"), *ROOT.glob("tests/*.py")]
            if "reference.md" in p.read_text() and not (ROOT / "docs" / "reference.md").exists()
            and p.name != Path(__file__).name]
    assert not missing and not bare, missing + bare


def test_camvid_table_is_the_one_the_cards_give():
    """The README's CamVid table is what tools/camvid_table.py prints from the cards' measured figures."""
    import subprocess
    import sys

    printed = subprocess.run([sys.executable, str(ROOT / "tools" / "camvid_table.py")], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    in_readme = [line.strip() for line in README.splitlines() if line.strip().startswith("| `camvid_")]
    assert in_readme == [line for line in printed if line.startswith("| `camvid_")]
