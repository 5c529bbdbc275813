"""The documentation's relative links and images point to files that exist, and the README stays
an entry point (under 300 lines; details belong in docs/)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300

# [text](target) and ![alt](target), with an optional "title" after the target.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = ("http://", "https://", "mailto:", "#")


def markdown_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file()]


def relative_targets(text: str) -> list[str]:
    """Link and image targets outside code blocks and inline code, less URLs and bare anchors."""
    text = INLINE_CODE.sub("", FENCE.sub("", text))
    return [t for t in LINK.findall(text) if not t.startswith(EXTERNAL)]


def test_link_parser():
    text = ("See [a](docs/a.md#x), ![img](b.png \"t\") and [ext](https://x.org), [top](#here).\n"
            "```\n[not](in/code.md)\n```\n`[nor](inline.md)` [`code` text](c.md)\n")
    assert relative_targets(text) == ["docs/a.md#x", "b.png", "c.md"]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_exist(path: Path):
    missing = []
    for target in relative_targets(path.read_text(encoding="utf-8")):
        file_part = target.split("#", 1)[0]
        if not (path.parent / file_part).exists():
            missing.append(target)
    assert not missing, f"{path.relative_to(REPO)} links to missing files: {missing}"


def test_readme_is_an_entry_point():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move details into a page under docs/"
