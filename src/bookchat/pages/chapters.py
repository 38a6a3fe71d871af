"""Which chapter a request names (document id, source path or page URL) and its Markdown from the stored source."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bookchat.documents.loaders import UnsupportedDocument, decode_text, load_document, split_front_matter
from bookchat.documents.repository import PENDING_HASH
from bookchat.errors import Conflict, NotFound
from bookchat.pages import repository
from bookchat.pages.repository import ChapterRow

MARKDOWN_FORMATS = ("markdown", "mdx")
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdx")


def _page_url(reference: str) -> tuple[str, str] | None:
    """(URL without query, fragment and trailing slash, its path) when `reference` is a page URL, else None."""
    if reference.startswith(("http://", "https://")):
        parts = urlsplit(reference)
        path = parts.path.rstrip("/")
        return urlunsplit((parts.scheme, parts.netloc, path, "", "")), path
    if reference.startswith("/"):
        path = urlsplit(reference).path.rstrip("/")
        return path, path
    return None


async def find_chapter(conn: Any, collection: str, reference: str) -> ChapterRow:
    """The document `reference` names; 404 when there is none, 409 while it is being ingested."""
    reference = reference.strip()
    chapter: ChapterRow | None = None
    try:
        document_id = uuid.UUID(reference)
    except ValueError:
        document_id = None
    if document_id is not None:
        chapter = await repository.chapter_by_id(conn, collection, document_id)
    elif (url := _page_url(reference)) is not None:
        chapter = await repository.chapter_by_url(conn, collection, url[0], url[1])
    else:
        chapter = await repository.chapter_by_path(conn, collection, reference)
    if chapter is None:
        raise NotFound("No chapter of the book matches this page.", code="page-not-found")
    if chapter.content_hash == PENDING_HASH or chapter.source is None:
        raise Conflict(
            "This chapter is being ingested (or was ingested before sources were kept); try again shortly.",
            code="page-not-ready",
        )
    return chapter


def chapter_markdown(chapter: ChapterRow) -> str:
    """The chapter's text: Markdown and MDX as written (front matter off, so code and markers stay byte for
    byte), other formats as the loaders read them. CPU work: call it in a thread."""
    assert chapter.source is not None
    fmt = chapter.options.get("fmt")
    try:
        if fmt in MARKDOWN_FORMATS or (fmt is None and chapter.source_path.lower().endswith(MARKDOWN_SUFFIXES)):
            # Line ends as the parser sees them: a CRLF file's headings and fences are found like an LF file's.
            text = decode_text(chapter.source, chapter.source_path).replace("\r\n", "\n")
            return split_front_matter(text, chapter.source_path)[1].strip("\n")
        loaded = load_document(
            chapter.source_path,
            chapter.source,
            fmt=fmt,  # type: ignore[arg-type]  # stored from a DocumentFormat at ingestion
            content_type=chapter.options.get("content_type"),
        )
    except UnsupportedDocument as exc:  # it was read once, at ingestion; a changed loader may refuse it now
        raise Conflict(f"The chapter cannot be read any more: {exc}", code="page-unreadable") from None
    return loaded.text.strip("\n")
