"""SQL of the pages: the chapter a request names, and the cache of rewritten sections."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from bookchat.documents.repository import PENDING_HASH


@dataclass(frozen=True)
class ChapterRow:
    """A document as the pages need it: its text's bytes, what it was ingested with, and its content hash."""

    id: UUID
    source_path: str
    title: str
    url: str | None
    content_hash: str
    source: bytes | None
    options: dict[str, str]


@dataclass(frozen=True)
class CacheKey:
    """Everything that shapes a rewritten section, so a stored one is served only when all of it matches."""

    document_id: UUID
    content_hash: str
    kind: str
    variant: str
    model: str
    prompt_version: str


@dataclass(frozen=True)
class CachedSection:
    index: int
    markdown: str


_CHAPTER = "SELECT id, source_path, title, url, content_hash, source, source_options FROM documents"


def _chapter(record: Any) -> ChapterRow:
    options = record["source_options"]
    return ChapterRow(
        record["id"],
        record["source_path"],
        record["title"],
        record["url"],
        record["content_hash"],
        bytes(record["source"]) if record["source"] is not None else None,
        json.loads(options) if isinstance(options, str) else {},
    )


async def chapter_by_id(conn: Any, collection: str, document_id: UUID) -> ChapterRow | None:
    record = await conn.fetchrow(f"{_CHAPTER} WHERE collection = $1 AND id = $2", collection, document_id)
    return _chapter(record) if record is not None else None


async def chapter_by_path(conn: Any, collection: str, source_path: str) -> ChapterRow | None:
    record = await conn.fetchrow(f"{_CHAPTER} WHERE collection = $1 AND source_path = $2", collection, source_path)
    return _chapter(record) if record is not None else None


async def chapter_by_url(conn: Any, collection: str, url: str, path: str) -> ChapterRow | None:
    """The document whose page URL is `url` (no trailing slash), else whose URL has the path `path`.

    The second form lets a page find its chapter when the book was ingested under another host name (a
    preview deploy, a relative base URL such as `/guide`).
    """
    record = await conn.fetchrow(
        f"{_CHAPTER} WHERE collection = $1 AND url IS NOT NULL AND (rtrim(url, '/') = $2"
        " OR rtrim(regexp_replace(url, '^[A-Za-z][A-Za-z0-9+.-]*://[^/]*', ''), '/') = $3)"
        " ORDER BY (rtrim(url, '/') = $2) DESC, source_path LIMIT 1",
        collection,
        url,
        path,
    )
    return _chapter(record) if record is not None else None


async def cached_sections(conn: Any, key: CacheKey, section_count: int) -> dict[int, CachedSection]:
    """The stored sections of this key (only rows made for a chapter of `section_count` sections)."""
    records = await conn.fetch(
        "SELECT section_index, markdown FROM page_sections WHERE document_id = $1 AND content_hash = $2"
        " AND kind = $3 AND variant = $4 AND model = $5 AND prompt_version = $6 AND section_count = $7",
        key.document_id,
        key.content_hash,
        key.kind,
        key.variant,
        key.model,
        key.prompt_version,
        section_count,
    )
    return {r["section_index"]: CachedSection(r["section_index"], r["markdown"]) for r in records}


async def store_section(
    conn: Any,
    key: CacheKey,
    *,
    index: int,
    section_count: int,
    markdown: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> bool:
    """Store a rewritten section, only while the document still has this content hash (a chapter re-ingested
    during the rewrite must not get results of its old text); False when nothing was stored."""
    status: str = await conn.execute(
        "INSERT INTO page_sections (document_id, content_hash, kind, variant, model, prompt_version,"
        " section_index, section_count, markdown, prompt_tokens, completion_tokens)"
        " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11"
        " WHERE EXISTS (SELECT 1 FROM documents WHERE id = $1 AND content_hash = $2 AND content_hash <> $12)"
        " ON CONFLICT (document_id, content_hash, kind, variant, model, prompt_version, section_index)"
        " DO UPDATE SET markdown = EXCLUDED.markdown, section_count = EXCLUDED.section_count,"
        " created_at = now()",
        key.document_id,
        key.content_hash,
        key.kind,
        key.variant,
        key.model,
        key.prompt_version,
        index,
        section_count,
        markdown,
        prompt_tokens,
        completion_tokens,
        PENDING_HASH,
    )
    return status.split()[-1] == "1"


async def count_sections(conn: Any, document_ids: Sequence[UUID]) -> int:
    """How many cached sections these documents have (for operators and tests)."""
    value: int = await conn.fetchval(
        "SELECT count(*) FROM page_sections WHERE document_id = ANY($1::uuid[])", list(document_ids)
    )
    return value
