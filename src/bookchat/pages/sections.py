"""A chapter's Markdown cut along its headings into sections that fit one model call, byte for byte rejoinable."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bookchat.documents.markdown import Slugger, fence_closes, heading_text, open_fence, split_heading_id

# An ATX heading, as the chunker reads them (documents.chunking.sections), so anchors agree with citations.
ATX_HEADING = re.compile(r"^ {0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")


@dataclass(frozen=True)
class Heading:
    """A section's heading line: its level, its source (inline Markdown, no explicit id) and its anchor."""

    level: int
    line: str
    source: str
    text: str
    anchor: str | None


@dataclass(frozen=True)
class ChapterSection:
    """One stretch of the chapter: an optional heading line and the body under it, as in the source.

    `continued` marks a later part of a section too long for one call (it has no heading of its own).
    """

    index: int
    heading: Heading | None
    body: str
    # The exact source text: the sections of a chapter joined by newlines give the chapter back.
    source: str
    continued: bool = False


def _heading(line: str, slugger: Slugger) -> Heading | None:
    match = ATX_HEADING.match(line)
    if match is None:
        return None
    level = len(match.group("hashes"))
    raw = match.group("text") or ""
    text, custom_id = heading_text(raw)
    slug = custom_id if custom_id is not None else slugger.slug(text)
    # Docusaurus renders h1 without an id (the chunker gives it no anchor either); an explicit id still counts.
    anchor = custom_id if custom_id is not None else (slug if level > 1 and slug else None)
    return Heading(level, line, split_heading_id(raw.strip())[0], text, anchor)


def _blocks(lines: list[str]) -> list[list[str]]:
    """Lines grouped into blocks separated by blank lines; a fenced code block is never cut."""
    blocks: list[list[str]] = [[]]
    fence: str | None = None
    for line in lines:
        if fence is not None:
            blocks[-1].append(line)
            if fence_closes(line, fence):
                fence = None
            continue
        fence = open_fence(line)
        if not line.strip() and fence is None:
            blocks[-1].append(line)
            blocks.append([])
            continue
        blocks[-1].append(line)
    return [block for block in blocks if block]


def _cut(body: str, max_chars: int) -> list[str]:
    """A body longer than `max_chars` cut at blank lines into parts of at most that size (a bigger block whole)."""
    if len(body) <= max_chars:
        return [body]
    parts: list[list[str]] = [[]]
    size = 0
    for block in _blocks(body.split("\n")):
        block_size = sum(len(line) + 1 for line in block)
        if parts[-1] and size + block_size > max_chars:
            parts.append([])
            size = 0
        parts[-1].extend(block)
        size += block_size
    return ["\n".join(part) for part in parts]


def split_chapter(markdown: str, *, max_chars: int) -> list[ChapterSection]:
    """The chapter's sections in order: the text before the first heading, then one per heading.

    Headings inside fenced code are code. `"\\n".join(s.source for s in sections) == markdown` always holds.
    """
    slugger = Slugger()
    groups: list[tuple[Heading | None, list[str]]] = [(None, [])]
    fence: str | None = None
    for line in markdown.split("\n"):
        if fence is not None:
            groups[-1][1].append(line)
            if fence_closes(line, fence):
                fence = None
            continue
        fence = open_fence(line)
        heading = _heading(line, slugger) if fence is None else None
        if heading is not None:
            groups.append((heading, []))
        else:
            groups[-1][1].append(line)
    if groups[0][1] == [] and len(groups) > 1:
        groups.pop(0)  # nothing before the first heading
    sections: list[ChapterSection] = []
    for heading, lines in groups:
        body = "\n".join(lines)
        budget = max(1, max_chars - (len(heading.line) if heading else 0))
        for position, part in enumerate(_cut(body, budget)):
            first = heading if position == 0 else None
            source = part if first is None else (first.line + "\n" + part if lines else first.line)
            sections.append(ChapterSection(len(sections), first, part, source, continued=position > 0))
    return sections


def join_sections(texts: list[str]) -> str:
    """The chapter from its sections' texts (the inverse of `split_chapter` on sources)."""
    return "\n".join(texts)
