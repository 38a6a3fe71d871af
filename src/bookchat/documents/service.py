"""Documents service: upload validation, listing with cursors, deletion and rebuilds, with HTTP-meaningful errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated
from uuid import UUID

from fastapi import Depends

from bookchat.config import Settings
from bookchat.documents import repository as repo
from bookchat.documents.ingest import IngestBusy, IngestPipeline
from bookchat.documents.ingest_summary import IngestSummary
from bookchat.documents.loaders import UnsupportedDocument, detect_format
from bookchat.documents.preparation import DocumentInput
from bookchat.documents.repository import DocumentRow
from bookchat.documents.schemas import (
    DocumentOut,
    DocumentPage,
    IngestedDocument,
    IngestResponse,
    InvalidSourcePath,
    normalise_source_path,
)
from bookchat.edge.pagination import InvalidCursor, decode_cursor, encode_cursor
from bookchat.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnprocessableContent,
    UnsupportedMediaType,
)
from bookchat.retrieval.embeddings import EmbeddingError
from bookchat.retrieval.store import VectorStoreError
from bookchat.runtime.dependencies import ResourcesDep

SUPPORTED = ".md, .mdx, .markdown, .html, .htm, .txt, .pdf"


async def get_ingest_pipeline(resources: ResourcesDep) -> IngestPipeline:
    """The ingestion pipeline over the app's pool, retriever and embedder."""
    return IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, resources.settings)


PipelineDep = Annotated[IngestPipeline, Depends(get_ingest_pipeline)]


def check_size(name: str, size: int, settings: Settings) -> None:
    if size > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"{name} is {size} bytes; the limit is {settings.max_upload_bytes} (BOOKCHAT_MAX_UPLOAD_BYTES)"
        )


def upload_input(filename: str | None, content_type: str | None, data: bytes, settings: Settings) -> DocumentInput:
    """A validated upload: a safe relative path, a type bookchat reads (415 otherwise), within the size limit."""
    if not filename:
        raise UnprocessableContent("every uploaded file needs a file name (it decides the document's path)")
    try:
        source_path = normalise_source_path(filename)
    except InvalidSourcePath as exc:
        raise UnprocessableContent(f"{filename!r}: {exc}") from exc
    check_size(source_path, len(data), settings)
    fmt = detect_format(source_path, content_type)
    if fmt is None:
        raise UnsupportedMediaType(
            f"{source_path}: unsupported type {content_type or 'unknown'}; bookchat reads {SUPPORTED}"
        )
    if not data.strip():
        raise UnprocessableContent(f"{source_path}: the file is empty")
    return DocumentInput(source_path, data, content_type=content_type, fmt=fmt)


def json_input(source_path: str, content: str, title: str | None, url: str | None, settings: Settings) -> DocumentInput:
    data = content.encode("utf-8")
    check_size(source_path, len(data), settings)
    fmt = detect_format(source_path)
    if fmt is None or fmt == "pdf":
        raise UnsupportedMediaType(
            f"{source_path}: JSON uploads take text documents (.md, .mdx, .html, .txt); send PDFs as multipart"
        )
    if not content.strip():
        raise UnprocessableContent(f"{source_path}: the content is blank")
    return DocumentInput(source_path, data, title=title, url=url, fmt=fmt)


async def ingest(pipeline: IngestPipeline, items: Sequence[DocumentInput]) -> IngestSummary:
    """Ingest validated uploads; loader, lock and backend failures become problem responses."""
    paths = [item.source_path for item in items]
    if len(set(paths)) != len(paths):
        raise UnprocessableContent("two uploaded files have the same path")
    try:
        return await pipeline.ingest_documents(items)
    except UnsupportedDocument as exc:
        if exc.reason == "invalid":
            raise UnprocessableContent(str(exc), code="unreadable-document") from exc
        raise UnsupportedMediaType(str(exc)) from exc
    except IngestBusy as exc:
        raise Conflict(str(exc), code="ingestion-running", headers={"Retry-After": "10"}) from exc
    except (EmbeddingError, VectorStoreError) as exc:
        raise ServiceUnavailable(
            f"the documents could not be indexed ({type(exc).__name__}); nothing of this upload was kept and "
            "the previous version of each document is still searchable; try again",
            code="index-unavailable",
        ) from exc


async def reindex(pipeline: IngestPipeline) -> IngestSummary:
    try:
        return await pipeline.reindex()
    except IngestBusy as exc:
        raise Conflict(str(exc), code="ingestion-running", headers={"Retry-After": "10"}) from exc
    except (EmbeddingError, VectorStoreError) as exc:
        raise ServiceUnavailable(
            f"the rebuild failed ({type(exc).__name__}); the live index is unchanged and still answers. "
            "Rerun it, or `bookchat ingest PATH --reindex`",
            code="index-unavailable",
        ) from exc


def summary_response(summary: IngestSummary) -> IngestResponse:
    return IngestResponse(
        run_id=summary.run_id,
        added=summary.added,
        updated=summary.updated,
        unchanged=summary.unchanged,
        removed=summary.removed,
        chunks=summary.chunks,
        seconds=round(summary.seconds, 3),
        documents=[
            IngestedDocument(
                id=UUID(item.document_id), source_path=item.source_path, outcome=item.outcome, chunks=item.chunks
            )
            for item in summary.documents
            if item.outcome != "skipped"
        ],
    )


def document_out(row: DocumentRow) -> DocumentOut:
    return DocumentOut.model_validate(row, from_attributes=True)


def _after(cursor: str) -> tuple[str, UUID]:
    source_path, document_id = decode_cursor(cursor, 2)
    try:
        return source_path, UUID(document_id)
    except ValueError:
        raise InvalidCursor("invalid cursor: pass back a `next_cursor` unchanged") from None


async def list_documents(
    pipeline: IngestPipeline, *, limit: int, cursor: str | None, prefix: str | None
) -> DocumentPage:
    after = _after(cursor) if cursor else None
    async with pipeline.pool.acquire() as conn:
        rows = await repo.page(conn, pipeline.collection, limit=limit + 1, after=after, prefix=prefix)
    more = len(rows) > limit
    rows = rows[:limit]
    return DocumentPage(
        items=[document_out(row) for row in rows],
        next_cursor=encode_cursor(rows[-1].source_path, str(rows[-1].id)) if more and rows else None,
    )


async def get_document(pipeline: IngestPipeline, document_id: UUID) -> DocumentOut:
    async with pipeline.pool.acquire() as conn:
        row = await repo.get(conn, pipeline.collection, document_id)
    if row is None:
        raise NotFound(f"no document {document_id}")
    return document_out(row)


async def delete_document(pipeline: IngestPipeline, document_id: UUID) -> None:
    try:
        deleted = await pipeline.delete_document(document_id)
    except IngestBusy as exc:
        raise Conflict(str(exc), code="ingestion-running", headers={"Retry-After": "10"}) from exc
    except VectorStoreError as exc:
        raise ServiceUnavailable(
            "the search index is unavailable; the document was kept", code="index-unavailable"
        ) from exc
    if not deleted:
        raise NotFound(f"no document {document_id}")
