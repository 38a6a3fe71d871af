"""Chunking: split loaded documents along their headings into token-sized passages with Docusaurus URLs."""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import quote

from bookchat.documents.loaders import LoadedDocument, strip_number_prefix
from bookchat.documents.markdown import fence_closes, heading_text, open_fence

# Bump when chunk boundaries or texts change, so the next ingestion re-chunks every document.
CHUNKER_VERSION = "1"

TokenCounter = Callable[[str], int]
BlockKind = Literal["text", "code", "table"]


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
class Block:
    kind: BlockKind
    text: str


@dataclass
class Section:
    """The blocks under one heading (or before the first one)."""

    heading_path: tuple[str, ...]
    anchor: str | None
    blocks: list[Block] = field(default_factory=list)


# --- anchors (Docusaurus: github-slugger) -------------------------------------------------------------------


def _keep_in_slug(char: str) -> bool:
    if char in " -":
        return True
    category = unicodedata.category(char)
    # github-slugger removes punctuation (but `_`), symbols, separators and controls; letters, marks,
    # decimal and letter numbers stay. Circled letters are symbols that Unicode also calls alphabetic.
    return category[0] in "LM" or category in ("Nd", "Nl", "Pc") or "\u24b6" <= char <= "\u24e9"


def github_slug(text: str) -> str:
    """github-slugger's `slug()`: lower-case, drop punctuation and symbols, each space becomes `-`."""
    return "".join(char for char in text.lower() if _keep_in_slug(char)).replace(" ", "-")


class Slugger:
    """github-slugger's stateful `Slugger`: repeated slugs on one page get `-1`, `-2`, ... suffixes."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def slug(self, text: str) -> str:
        slug = original = github_slug(text)
        while slug in self._seen:
            self._seen[original] += 1
            slug = f"{original}-{self._seen[original]}"
        self._seen[slug] = 0
        return slug


# --- Docusaurus URLs ------------------------------------------------------------------------------------------


def _strip_path_prefixes(path: str) -> str:
    return "/".join(strip_number_prefix(segment) for segment in path.split("/"))


def _resolve_pathname(to: str, base_dir: str) -> str:
    """`resolve-pathname` as Docusaurus uses it: `to` relative to the folder `base_dir` (ends with `/`)."""
    resolved = posixpath.normpath(posixpath.join(base_dir, to))
    if resolved.startswith("//"):
        resolved = "/" + resolved.lstrip("/")
    if to.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    return resolved


def docusaurus_slug(doc_path: str, front_matter: Mapping[str, Any] | None = None) -> str:
    """The URL path Docusaurus gives a doc at `doc_path` (relative to the docs folder), e.g. `/module-2/gazebo`.

    Follows plugin-content-docs: number prefixes (`01-`) are stripped from file and folder names unless
    `parse_number_prefixes: false`; front-matter `id` replaces the file name, `slug` (absolute or relative)
    replaces the path; `index.md`, `README.md` and `folder/folder.md` stand for their folder.
    """
    front_matter = front_matter or {}
    path = PurePosixPath(doc_path)
    stem = path.stem
    dir_name = str(path.parent)
    parse_prefixes = front_matter.get("parse_number_prefixes", True) is not False
    unprefixed = strip_number_prefix(stem) if parse_prefixes else stem
    front_id = front_matter.get("id")
    base_id = str(front_id) if isinstance(front_id, str | int) and str(front_id) else unprefixed
    front_slug = front_matter.get("slug")
    slug = str(front_slug) if isinstance(front_slug, str | int) else None
    if slug is not None and slug.startswith("/"):
        return slug
    if dir_name == ".":
        dir_slug = "/"
    else:
        dir_slug = "/" + (_strip_path_prefixes(dir_name) if parse_prefixes else dir_name).strip("/") + "/"
    last_dir = dir_name.rsplit("/", 1)[-1].lower()
    if not slug and stem.lower() in ("index", "readme", last_dir):
        return dir_slug
    return _resolve_pathname(slug if slug is not None else base_id, dir_slug)


_URL_SAFE = "/-._~!$&'()*+,;=:@%"


def document_url(document: LoadedDocument, base_url: str | None) -> str | None:
    """The page URL of a document under `base_url` (the book's docs URL), or None without a base URL."""
    if not base_url:
        return None
    base = base_url.rstrip("/")
    if document.format in ("markdown", "mdx"):
        path = docusaurus_slug(document.doc_path, document.front_matter)
    else:
        path = "/" + document.doc_path.lstrip("/")
    return base + quote(path, safe=_URL_SAFE)


def chunk_url(document_url: str | None, chunk: Chunk) -> str | None:
    """The document URL pointing at the chunk: `#anchor` of its heading, or `#page=N` in a PDF."""
    if document_url is None:
        return None
    if chunk.anchor:
        return f"{document_url}#{quote(chunk.anchor, safe='-._~')}"
    if chunk.page is not None:
        return f"{document_url}#page={chunk.page}"
    return document_url


# --- parsing into sections and blocks -------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_LIST_OR_QUOTE = re.compile(r"^\s*([-+*>]|\d+[.)])(\s|$)")


def parse_markdown(markdown: str, *, slug_anchors: bool = True) -> list[Section]:
    """Split Markdown into sections by heading; each holds text, code and table blocks in order.

    With `slug_anchors` (Docusaurus pages) every heading gets a github-slugger anchor, and h1 none (the theme
    renders h1 without an id); otherwise only explicit `{#id}`s are anchors (HTML pages).
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


# --- sizing ----------------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int
    kind: BlockKind
    overlap: bool = False


class _Sizer:
    """Counts tokens (memoised) and cuts text that is over budget at the gentlest boundary that works."""

    def __init__(self, count_tokens: TokenCounter) -> None:
        self._count = count_tokens
        self._cache: dict[str, int] = {}

    def count(self, text: str) -> int:
        tokens = self._cache.get(text)
        if tokens is None:
            tokens = self._count(text)
            if len(self._cache) < 50_000:
                self._cache[text] = tokens
        return tokens

    def split(self, text: str, budget: int, level: int = 0) -> list[str]:
        """Pieces of `text`, each within `budget`: by lines, then sentences, then words, then characters."""
        if self.count(text) <= budget:
            return [text]
        if level == 0:
            pieces, sep = text.split("\n"), "\n"
        elif level == 1:
            pieces, sep = _SENTENCE_END.split(text), " "
        elif level == 2:
            pieces, sep = text.split(" "), " "
        else:
            return self._split_chars(text, budget)
        if len(pieces) == 1:
            return self.split(text, budget, level + 1)
        out: list[str] = []
        current: list[str] = []
        current_tokens = 0
        for piece in pieces:
            tokens = self.count(piece)
            if tokens > budget:
                if current:
                    out.append(sep.join(current))
                    current, current_tokens = [], 0
                out.extend(self.split(piece, budget, level + 1))
                continue
            if current and current_tokens + tokens > budget:
                out.append(sep.join(current))
                current, current_tokens = [], 0
            current.append(piece)
            current_tokens += tokens
        if current:
            out.append(sep.join(current))
        return [piece for piece in out if piece.strip()]

    def _split_chars(self, text: str, budget: int) -> list[str]:
        out: list[str] = []
        start = 0
        while start < len(text):
            size = max(1, budget * 2)
            while size > 1 and self.count(text[start : start + size]) > budget:
                size //= 2
            out.append(text[start : start + size])
            start += size
        return out

    def tail(self, text: str, budget: int) -> str:
        """The end of `text` within `budget` tokens, on a sentence boundary when one fits (for overlap)."""
        if budget <= 0:
            return ""
        sentences = [s for s in _SENTENCE_END.split(text.replace("\n", " ")) if s.strip()]
        kept: list[str] = []
        total = 0
        for sentence in reversed(sentences):
            tokens = self.count(sentence)
            if total + tokens > budget:
                break
            kept.insert(0, sentence)
            total += tokens
        if kept:
            return " ".join(kept)
        words = sentences[-1].split(" ") if sentences else []
        tail_words: list[str] = []
        for word in reversed(words):
            if self.count(" ".join([word, *tail_words])) > budget:
                break
            tail_words.insert(0, word)
        return " ".join(tail_words)


def _block_units(block: Block, budget: int, overlap: int, sizer: _Sizer) -> list[_Unit]:
    """A block as one unit, or cut into several when it alone exceeds `budget`.

    Prose is cut `overlap` tokens short of the budget, so the next piece still has room for the overlap.
    """
    tokens = sizer.count(block.text)
    if tokens <= budget:
        return [_Unit(block.text, tokens, block.kind)]
    if block.kind == "code":
        lines = block.text.split("\n")
        opener = lines[0]
        closed = len(lines) > 1 and fence_closes(lines[-1], open_fence(opener) or "```")
        closer = lines[-1] if closed else (open_fence(opener) or "```")
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


def _pack(units: list[_Unit], budget: int, overlap: int, sizer: _Sizer) -> list[tuple[str, int]]:
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
    sizer: _Sizer | None = None,
) -> list[Chunk]:
    """Chunks of `sections`, never crossing a heading, each within `max_tokens` of `count_tokens`.

    `context_tokens(heading_path)` is what the retriever adds in front of a chunk when embedding it (title,
    headings); it is taken off this section's budget so the whole still fits the model's window.
    """
    sizer = sizer or _Sizer(count_tokens)
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
    sizer = _Sizer(count_tokens)
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
