"""Markdown or plain text split into sections by heading (path, anchor), each a run of text, code and table blocks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from bookchat.documents.markdown import Slugger, fence_closes, heading_text, open_fence

BlockKind = Literal["text", "code", "table"]


@dataclass(frozen=True)
class Block:
    """One piece of a section: prose, a fenced code block or a table, which packing keeps whole where it fits."""

    kind: BlockKind
    text: str


@dataclass
class Section:
    """The blocks under one heading (or before the first one)."""

    heading_path: tuple[str, ...]
    anchor: str | None
    blocks: list[Block] = field(default_factory=list)


_ATX = re.compile(r"^ {0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_LIST_OR_QUOTE = re.compile(r"^\s*([-+*>]|\d+[.)])(\s|$)")


def parse_markdown(markdown: str, *, slug_anchors: bool = True) -> list[Section]:
    """Split Markdown into sections by heading; each holds text, code and table blocks in order.

    With `slug_anchors` (Docusaurus pages) every heading gets a github-slugger anchor, and h1 none (the theme
    renders h1 without an id); otherwise only explicit ids (`{#id}`, `{ #id }`) are anchors (HTML pages).
    """
    slugger = Slugger()
    sections = [Section((), None)]
    stack: list[tuple[int, str]] = []
    paragraph: list[str] = []
    lines = markdown.split("\n")

    def flush() -> None:
        text = "\n".join(paragraph).strip("\n")
        if text.strip():
            sections[-1].blocks.append(Block("text", text))
        paragraph.clear()

    def start_section(level: int, raw: str) -> None:
        text, custom_id = heading_text(raw)
        slug = slugger.slug(text) if slug_anchors and custom_id is None else custom_id
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text))
        anchor = slug if (level > 1 or not slug_anchors) and slug else None
        sections.append(Section(tuple(t for _, t in stack if t), anchor))

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = open_fence(line)
        if fence is not None:
            flush()
            end = i + 1
            while end < len(lines) and not fence_closes(lines[end], fence):
                end += 1
            sections[-1].blocks.append(Block("code", "\n".join(lines[i : end + 1])))
            i = end + 1
            continue
        heading = _ATX.match(line)
        if heading is not None:
            flush()
            start_section(len(heading.group("hashes")), heading.group("text") or "")
            i += 1
            continue
        if not line.strip():
            flush()
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and _TABLE_DELIMITER.match(lines[i + 1]) and "-" in lines[i + 1]:
            flush()
            end = i + 2
            while end < len(lines) and lines[end].strip() and "|" in lines[end]:
                end += 1
            sections[-1].blocks.append(Block("table", "\n".join(lines[i:end])))
            i = end
            continue
        if paragraph and _SETEXT.match(line) and not _LIST_OR_QUOTE.match(paragraph[0]):
            raw = " ".join(part.strip() for part in paragraph)
            paragraph.clear()
            start_section(1 if line.strip().startswith("=") else 2, raw)
            i += 1
            continue
        if not paragraph and _THEMATIC_BREAK.match(line):
            i += 1
            continue
        paragraph.append(line)
        i += 1
    flush()
    return [section for section in sections if section.blocks]


def parse_plain(text: str) -> list[Section]:
    """Plain text (and PDF pages): paragraphs only, no headings."""
    section = Section((), None)
    for paragraph in re.split(r"\n[ \t]*\n", text):
        if paragraph.strip():
            section.blocks.append(Block("text", paragraph.strip("\n")))
    return [section] if section.blocks else []
