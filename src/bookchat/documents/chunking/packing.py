"""Sections packed into chunks within a token budget, with prose overlap, code re-fenced and table headers repeated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bookchat.documents.chunking.sections import Block, BlockKind, Section, parse_markdown, parse_plain
from bookchat.documents.chunking.sizing import Sizer, TokenCounter
from bookchat.documents.loaders import LoadedDocument
from bookchat.documents.markdown import fence_closes, open_fence

# Bump when chunk boundaries or texts change (here, in sections.py, in sizing.py or in the heading helpers of
# documents/markdown.py), so the next ingestion re-chunks every document. 2: MkDocs' `{ #id }` and MDX's escaped
# `\{#id\}` heading ids are recognised (clean heading paths, the id as anchor).
CHUNKER_VERSION = "2"


@dataclass(frozen=True)
class Chunk:
    """One passage of a document: its text, where it sits (headings, page) and the heading's anchor."""

    index: int
    text: str
    heading_path: tuple[str, ...]
    anchor: str | None
    page: int | None
    tokens: int


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int
    kind: BlockKind
    overlap: bool = False


def _block_units(block: Block, budget: int, overlap: int, sizer: Sizer) -> list[_Unit]:
    """A block as one unit, or cut into several when it alone exceeds `budget`.

    Prose is cut `overlap` tokens short of the budget, so the next piece still has room for the overlap.
    """
    tokens = sizer.count(block.text)
    if tokens <= budget:
        return [_Unit(block.text, tokens, block.kind)]
    if block.kind == "code":
        lines = block.text.split("\n")
        opener = lines[0]
        fence = open_fence(opener) or "```"
        closed = len(lines) > 1 and fence_closes(lines[-1], fence)
        closer = lines[-1] if closed else fence
        body = "\n".join(lines[1:-1] if closed else lines[1:])
        wrap = sizer.count(opener) + sizer.count(closer)
        pieces = sizer.split(body, max(8, budget - wrap))
        texts = [f"{opener.strip()}\n{piece}\n{closer.strip()}" for piece in pieces]
    elif block.kind == "table":
        lines = block.text.split("\n")
        header = "\n".join(lines[:2])
        header_tokens = sizer.count(header)
        if header_tokens >= budget // 2:
            texts = sizer.split(block.text, budget)
        else:
            texts = [f"{header}\n{piece}" for piece in sizer.split("\n".join(lines[2:]), budget - header_tokens)]
    else:
        texts = sizer.split(block.text, budget - overlap)
    return [_Unit(text, sizer.count(text), block.kind) for text in texts]


def _pack(units: list[_Unit], budget: int, overlap: int, sizer: Sizer) -> list[tuple[str, int]]:
    """Greedy packing of units into chunks within `budget`, seeding each next chunk with a prose overlap."""
    chunks: list[tuple[str, int]] = []
    current: list[_Unit] = []
    total = 0
    for unit in units:
        if current and total + unit.tokens > budget:
            if any(not u.overlap for u in current):
                chunks.append(("\n\n".join(u.text for u in current), total))
            last = current[-1]
            current, total = [], 0
            # Overlap only when a full overlap fits beside the next unit: a few stray words help nobody.
            if overlap > 0 and last.kind == "text" and budget - unit.tokens >= overlap:
                seed = sizer.tail(last.text, overlap)
                if seed and seed != unit.text:
                    seed_tokens = sizer.count(seed)
                    if seed_tokens + unit.tokens <= budget:
                        current, total = [_Unit(seed, seed_tokens, "text", overlap=True)], seed_tokens
        current.append(unit)
        total += unit.tokens
    if current and any(not u.overlap for u in current):
        chunks.append(("\n\n".join(u.text for u in current), total))
    return chunks


def chunk_sections(
    sections: list[Section],
    *,
    count_tokens: TokenCounter,
    max_tokens: int = 240,
    overlap_tokens: int = 32,
    context_tokens: Callable[[tuple[str, ...]], int] | None = None,
    page: int | None = None,
    start_index: int = 0,
    sizer: Sizer | None = None,
) -> list[Chunk]:
    """Chunks of `sections`, never crossing a heading, each within `max_tokens` of `count_tokens`.

    `context_tokens(heading_path)` is what the retriever adds in front of a chunk when embedding it (title,
    headings); it is taken off this section's budget so the whole still fits the model's window.
    """
    sizer = sizer or Sizer(count_tokens)
    chunks: list[Chunk] = []
    minimum = max(16, max_tokens // 2)
    for section in sections:
        reserved = context_tokens(section.heading_path) if context_tokens else 0
        budget = max(minimum, max_tokens - reserved)
        overlap = min(overlap_tokens, budget // 4)
        units = [unit for block in section.blocks for unit in _block_units(block, budget, overlap, sizer)]
        for text, tokens in _pack(units, budget, overlap, sizer):
            chunks.append(Chunk(start_index + len(chunks), text, section.heading_path, section.anchor, page, tokens))
    return chunks


def chunk_markdown(
    markdown: str,
    *,
    count_tokens: TokenCounter,
    max_tokens: int = 240,
    overlap_tokens: int = 32,
    context_tokens: Callable[[tuple[str, ...]], int] | None = None,
    slug_anchors: bool = True,
) -> list[Chunk]:
    """Chunk one Markdown text (see `chunk_sections`); empty text gives no chunks."""
    return chunk_sections(
        parse_markdown(markdown, slug_anchors=slug_anchors),
        count_tokens=count_tokens,
        max_tokens=max_tokens,
        overlap_tokens=overlap_tokens,
        context_tokens=context_tokens,
    )


def chunk_document(
    document: LoadedDocument,
    *,
    count_tokens: TokenCounter,
    max_tokens: int = 240,
    overlap_tokens: int = 32,
    context_tokens: Callable[[tuple[str, ...]], int] | None = None,
) -> list[Chunk]:
    """Chunk a loaded document: Markdown, MDX and HTML by headings; text and PDF by paragraphs, PDF per page."""
    sizer = Sizer(count_tokens)
    chunks: list[Chunk] = []
    for page in document.pages:
        if document.structured:
            sections = parse_markdown(page.text, slug_anchors=document.format != "html")
        else:
            sections = parse_plain(page.text)
        chunks += chunk_sections(
            sections,
            count_tokens=count_tokens,
            max_tokens=max_tokens,
            overlap_tokens=overlap_tokens,
            context_tokens=context_tokens,
            page=page.number,
            start_index=len(chunks),
            sizer=sizer,
        )
    return chunks
