"""Every relative link in the README, docs/ and plugins/ leads to a file (and heading)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import ROOT

PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "plugins").rglob("*.md")]
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HTML_ANCHOR = re.compile(r'<a (?:id|name)="([^"]+)">')


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page, and its HTML anchors (``<a id>``)."""
    out = set()
    for line in page.read_text().splitlines():
        out.update(HTML_ANCHOR.findall(line))
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            out.add(title.replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.relative_to(ROOT)}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.relative_to(ROOT)}: no heading #{anchor}"
