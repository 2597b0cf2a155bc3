"""Every "docs/maths.md §n.m" citation in the repository names a section that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("py", "src", "configs", "ablations", "bench", "test", "docs", "README.md")
SUFFIXES = {".py", ".ts", ".md", ".mjs", ".js"}


def _sections() -> set:
    heads = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", (ROOT / "docs" / "maths.md").read_text(),
                       flags=re.M)
    return set(heads)


def _files():
    for top in SCANNED:
        p = ROOT / top
        if p.is_file():
            yield p
        elif p.is_dir():
            yield from (f for f in p.rglob("*") if f.suffix in SUFFIXES and "node_modules" not in f.parts)


def test_maths_sections_are_numbered():
    secs = _sections()
    assert {str(i) for i in range(1, 12)} <= secs
    assert {"5.4", "6.2", "6.3", "8.3"} <= secs


def test_every_citation_names_an_existing_section():
    secs = _sections()
    cited, missing, facts = 0, [], []
    for f in _files():
        text = f.read_text(errors="replace")
        for m in re.finditer(r"docs/maths\.md §(\d+(?:\.\d+)?)", text):
            cited += 1
            if m.group(1) not in secs:
                missing.append(f"{f.relative_to(ROOT)}: §{m.group(1)}")
        if re.search(r"FACTS §\d", text):
            facts.append(str(f.relative_to(ROOT)))
    assert cited >= 24
    assert not missing, missing
    assert not facts, f"cite docs/maths.md, not FACTS (a file outside the repository): {facts}"
