"""The ingestion pipeline: files or uploads in, chunks indexed in Qdrant and rows in PostgreSQL, idempotently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Literal
from uuid import UUID

import asyncpg

from bookchat.config import Settings
from bookchat.documents import repository as repo
from bookchat.documents.discovery import IngestError, SkippedFile, discover, in_scopes
from bookchat.documents.index_rebuild import IndexRebuild
from bookchat.documents.ingest_summary import (
    DocumentOutcome,
    IngestProgress,
    IngestSummary,
    Outcome,
    ProgressCallback,
    ProgressTracker,
)
from bookchat.documents.loaders import UnsupportedDocument
from bookchat.documents.preparation import DocumentInput, DocumentPreparer, PreparedDocument, next_generation
from bookchat.documents.repository import DocumentRow
from bookchat.retrieval.embeddings import Embedder
from bookchat.retrieval.search import HybridRetriever
from bookchat.retrieval.store import VectorStore
from bookchat.runtime.advisory_locks import LockTimeout, holding_lock, lock_key

log = logging.getLogger(__name__)

# Chunks embedded per write batch: big enough to keep the embedder busy, small enough to show progress.
BATCH_CHUNKS = 128
API_LOCK_SECONDS = 10.0


class IngestBusy(IngestError):
    """Another ingestion of the same collection holds the lock."""


def ingest_lock_key(collection: str) -> int:
    """The advisory-lock key of a corpus's ingestions."""
    return lock_key(f"bookchat:ingest:{collection}")


class IngestPipeline:
    """Loads, chunks, embeds and records documents; safe to rerun, to interrupt, and to run from two places.

    - Idempotent: a document whose bytes and chunking settings hash the same as its row is skipped.
    - Never loses the live version: a new version is written as the next generation of points beside the
      previous one; the row switches to it only once every point is indexed, then the other generations are
      deleted. A failure before the switch leaves the previous version searchable and the row unchanged; what
      a failure left behind (`needs_cleanup`) is deleted by the next run.
    - Rebuildable: the row keeps the document's bytes, and a rebuild (`reindex`) fills a new collection that
      replaces the live one only when complete.
    - Exclusive: a transaction-scoped advisory lock per collection serialises ingestions of one corpus, also
      through a transaction-mode pooler.
    """

    def __init__(self, pool: asyncpg.Pool, retriever: HybridRetriever, embedder: Embedder, settings: Settings) -> None:
        self.pool = pool
        self.retriever = retriever
        self.embedder = embedder
        self.settings = settings
        self.collection = retriever.store.collection
        self.preparer = DocumentPreparer(self.collection, embedder, settings)
        # Where a rebuild finds the chunks of documents ingested before sources were kept: the live collection,
        # or the old engine's after a move to another one (see `index_migration`).
        self.carry_from: VectorStore | None = None

    # --- public entry points ---------------------------------------------------------------------------------

    async def ingest_paths(
        self,
        paths: Sequence[Path | str],
        *,
        base_url: str | None = None,
        prune: bool = False,
        reindex: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IngestSummary:
        """Ingest the files under `paths` (folders or files); see the class docstring for the guarantees.

        `base_url` (else settings.public_base_url) prefixes page URLs. `prune` deletes documents under the given
        folders whose files are gone. `reindex` rebuilds the collection beside the live one and re-embeds
        everything: these files from disk, every other document from the bytes its row keeps.
        """
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            known = await repo.fetch_all(conn, self.collection)
        found = await asyncio.to_thread(discover, paths, known)
        base = self._base(base_url)
        tracker = ProgressTracker(progress, len(found.files))
        summary = IngestSummary(skipped=list(found.skipped))
        tracker.emit(IngestProgress("scan", 0, len(found.files)))
        async with self._session(summary, wait=True, tracker=tracker) as conn:
            rows = await repo.fetch_all(conn, self.collection)
            force = reindex or await self._index_lost(rows)
            inputs: list[DocumentInput] = []
            for file in found.files:
                try:
                    data = await asyncio.to_thread(file.path.read_bytes)
                except OSError as exc:
                    log.warning("cannot read file", extra={"source_path": file.source_path, "error": str(exc)})
                    summary.skipped.append(SkippedFile(file.source_path, "unreadable"))
                    tracker.advance(file.source_path, "skipped")
                    continue
                inputs.append(DocumentInput(file.source_path, data, doc_path=file.doc_path))
            if reindex:
                seen = {item.source_path for item in inputs}
                scopes = found.scopes if prune else []
                keep = {path: row for path, row in rows.items() if path in seen or not in_scopes(path, scopes)}
                await IndexRebuild(self.retriever, self.preparer, conn, summary, tracker, self.carry_from).run(
                    keep, inputs, base
                )
            else:
                await self._ingest_changed(conn, rows, inputs, base, force, summary, tracker)
            if prune:
                present = {item.source_path for item in inputs}
                await self._prune(conn, rows, present, found.scopes, summary, tracker)
        summary.seconds = time.perf_counter() - started
        tracker.emit(IngestProgress("done", tracker.completed, len(found.files)))
        return summary

    async def ingest_documents(self, items: Sequence[DocumentInput], *, base_url: str | None = None) -> IngestSummary:
        """Ingest uploaded documents all-or-nothing: every item is loaded and chunked before anything is written;
        on a failure no row changes and the previous versions stay searchable. Raises `UnsupportedDocument` or
        `IngestBusy`, or the embedder's / store's error."""
        started = time.perf_counter()
        base = self._base(base_url)
        summary = IngestSummary()
        async with self._session(summary, wait=False) as conn:
            rows = await repo.fetch_all(conn, self.collection)
            force = await self._index_lost(rows)
            prepared: list[PreparedDocument] = []
            for item in items:
                previous = rows.get(item.source_path)
                content_hash = self.preparer.content_hash(item, base)
                if not force and previous is not None and previous.content_hash == content_hash:
                    summary.count(
                        DocumentOutcome(str(previous.id), item.source_path, "unchanged", previous.chunk_count)
                    )
                    continue
                prepared.append(
                    await asyncio.to_thread(
                        self.preparer.prepare, item, content_hash, base, previous, next_generation(previous)
                    )
                )
            await self._write(conn, prepared, summary, ProgressTracker(None))
        summary.seconds = time.perf_counter() - started
        return summary

    async def ingest_document(
        self,
        source_path: str,
        content: str | bytes,
        *,
        title: str | None = None,
        url: str | None = None,
        base_url: str | None = None,
    ) -> DocumentOutcome:
        """Ingest one document given as text or bytes (its type from `source_path`'s extension)."""
        data = content.encode("utf-8") if isinstance(content, str) else content
        summary = await self.ingest_documents(
            [DocumentInput(source_path, data, title=title, url=url)], base_url=base_url
        )
        return summary.documents[0]

    async def delete_document(self, document_id: UUID) -> bool:
        """Delete a document's chunks, then its row; False when there is no such document."""
        summary = IngestSummary()
        async with self._session(summary, wait=False, record=False) as conn:
            row = await repo.get(conn, self.collection, document_id)
            if row is None:
                return False
            await self.retriever.delete_document(str(document_id))
            await repo.delete(conn, self.collection, [document_id])
        return True

    async def reindex(self, *, progress: ProgressCallback | None = None) -> IngestSummary:
        """Rebuild the collection from PostgreSQL (no source files needed) into a new collection that replaces
        the live one when complete: re-chunks and re-embeds every document, e.g. after a model change."""
        started = time.perf_counter()
        summary = IngestSummary()
        async with self._session(summary, wait=False, tracker=ProgressTracker(progress)) as conn:
            rows = await repo.fetch_all(conn, self.collection)
            tracker = ProgressTracker(progress, len(rows))
            await IndexRebuild(self.retriever, self.preparer, conn, summary, tracker, self.carry_from).run(
                rows, [], None
            )
        summary.seconds = time.perf_counter() - started
        return summary

    # --- steps --------------------------------------------------------------------------------------------------

    def _base(self, base_url: str | None) -> str | None:
        return (base_url or self.settings.public_base_url or "").rstrip("/") or None

    @contextlib.asynccontextmanager
    async def _session(
        self,
        summary: IngestSummary,
        *,
        wait: bool,
        tracker: ProgressTracker | None = None,
        record: bool = True,
    ) -> AsyncIterator[repo.Conn]:
        """The collection's ingestion lock, then a connection for the work with an `ingest_runs` row around it.

        `wait`: wait as long as it takes, saying so every few seconds (the CLI, start-up); else give up after
        API_LOCK_SECONDS with IngestBusy (HTTP requests should not hang on a long ingestion).
        """

        def waiting(seconds: float) -> None:
            log.info(
                f"waiting for another ingestion of collection {self.collection!r} ({seconds:.0f} s so far)",
                extra={"collection": self.collection},
            )
            if tracker is not None:
                tracker.emit(IngestProgress("wait", 0, tracker.total))

        try:
            async with (
                holding_lock(
                    self.pool,
                    ingest_lock_key(self.collection),
                    what=f"the ingestion lock of collection {self.collection!r}",
                    wait_seconds=None if wait else API_LOCK_SECONDS,
                    on_wait=waiting,
                ),
                self.pool.acquire() as conn,
            ):
                await self._clean_up(conn)
                if record:
                    summary.run_id = await repo.start_run(conn, self.collection)
                try:
                    yield conn
                except BaseException as exc:
                    if summary.run_id is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.shield(self._finish(conn, summary, "failed", f"{type(exc).__name__}: {exc}"))
                    raise
                if summary.run_id is not None:
                    await self._finish(conn, summary, "ok", None)
        except LockTimeout as exc:
            raise IngestBusy(
                f"another ingestion of collection {self.collection!r} is running; try again when it ends"
            ) from exc

    async def _finish(
        self, conn: repo.Conn, summary: IngestSummary, status: Literal["ok", "failed"], error: str | None
    ) -> None:
        assert summary.run_id is not None
        await repo.finish_run(
            conn,
            summary.run_id,
            status=status,
            added=summary.added,
            updated=summary.updated,
            unchanged=summary.unchanged,
            removed=summary.removed,
            chunks=summary.chunks,
            error=error,
        )

    async def _clean_up(self, conn: repo.Conn) -> None:
        """Delete the points an earlier, failed write left beside the live ones (rows marked `needs_cleanup`):
        of a ready row every generation but its own, of a pending row (never finished) all of them."""
        dirty = [row for row in (await repo.fetch_all(conn, self.collection)).values() if row.needs_cleanup]
        for row in dirty:
            keep = None if row.status == "pending" else row.generation
            await self.retriever.delete_document(str(row.id), except_generation=keep)
        if dirty:
            await repo.mark_clean(conn, self.collection, [row.id for row in dirty])
            log.info("cleaned up after an interrupted ingestion", extra={"documents": len(dirty)})

    async def _ingest_changed(
        self,
        conn: repo.Conn,
        rows: dict[str, DocumentRow],
        inputs: list[DocumentInput],
        base: str | None,
        force: bool,
        summary: IngestSummary,
        tracker: ProgressTracker,
    ) -> None:
        """Write the inputs whose content hash differs from their row's, in batches of about BATCH_CHUNKS."""
        pending: list[PreparedDocument] = []
        for item in inputs:
            previous = rows.get(item.source_path)
            content_hash = self.preparer.content_hash(item, base)
            if not force and previous is not None and previous.content_hash == content_hash:
                summary.count(DocumentOutcome(str(previous.id), item.source_path, "unchanged", previous.chunk_count))
                tracker.advance(item.source_path, "unchanged")
                continue
            try:
                prepared = await asyncio.to_thread(
                    self.preparer.prepare, item, content_hash, base, previous, next_generation(previous)
                )
            except UnsupportedDocument as exc:
                log.warning("file skipped", extra={"source_path": item.source_path, "reason": str(exc)})
                summary.skipped.append(SkippedFile(item.source_path, exc.reason))
                tracker.advance(item.source_path, "skipped")
                continue
            pending.append(prepared)
            if sum(len(p.passages) for p in pending) >= BATCH_CHUNKS:
                await self._write(conn, pending, summary, tracker)
                pending = []
        await self._write(conn, pending, summary, tracker)

    async def _write(
        self,
        conn: repo.Conn,
        batch: list[PreparedDocument],
        summary: IngestSummary,
        tracker: ProgressTracker,
    ) -> None:
        """Write a batch beside the live versions: rows marked → points of the new generation → rows switched →
        other generations deleted → rows clean. Before the switch a failure discards the new generation."""
        if not batch:
            return
        writes = [item.write(self.embedder.model_id) for item in batch]
        try:
            await repo.begin_writes(conn, self.collection, writes)
            await self.retriever.index_passages([passage for item in batch for passage in item.passages])
            await repo.finish_writes(conn, self.collection, writes)
        except BaseException:
            await asyncio.shield(self._discard(conn, batch))
            raise
        try:
            for item in batch:
                if item.previous is not None:
                    await self.retriever.delete_document(item.document_id, except_generation=item.generation)
            await repo.mark_clean(conn, self.collection, [UUID(item.document_id) for item in batch])
        except Exception as exc:
            # The new versions are live; the next ingestion deletes what is left of the old ones.
            log.warning("old chunks not deleted yet; the next ingestion will", extra={"error": type(exc).__name__})
        for item in batch:
            outcome: Outcome = "added" if item.previous is None else "updated"
            summary.count(DocumentOutcome(item.document_id, item.source_path, outcome, len(item.passages)))
            summary.chunks += len(item.passages)
            tracker.advance(item.source_path, outcome)

    async def _discard(self, conn: repo.Conn, batch: list[PreparedDocument]) -> None:
        """Best effort after a failed write: drop the new generation's points and the rows of new documents.
        What fails here stays marked `needs_cleanup`, for the next run."""
        discarded: list[PreparedDocument] = []
        for item in batch:
            try:
                await self.retriever.delete_document(item.document_id, generation=item.generation)
            except Exception as exc:
                log.warning(
                    "new chunks not discarded yet; the next ingestion will", extra={"error": type(exc).__name__}
                )
            else:
                discarded.append(item)
        with contextlib.suppress(Exception):
            await repo.delete(
                conn, self.collection, [UUID(item.document_id) for item in batch if item.previous is None]
            )
            await repo.mark_clean(conn, self.collection, [UUID(item.document_id) for item in discarded])

    async def _index_lost(self, rows: dict[str, DocumentRow]) -> bool:
        """True when rows claim chunks but the collection is empty (its folder was wiped): re-ingest all."""
        if not any(row.chunk_count for row in rows.values()):
            return False
        if await self.retriever.store.count() == 0:
            log.warning("the collection is empty but documents are recorded; re-ingesting every document")
            return True
        return False

    async def _prune(
        self,
        conn: repo.Conn,
        rows: dict[str, DocumentRow],
        seen: set[str],
        scopes: list[str],
        summary: IngestSummary,
        tracker: ProgressTracker,
    ) -> None:
        """Delete documents under the ingested folders whose files are gone: points first, then the row."""
        skipped = {item.source_path for item in summary.skipped}
        gone = [
            row for path, row in rows.items() if path not in seen and path not in skipped and in_scopes(path, scopes)
        ]
        for number, row in enumerate(gone, start=1):
            await self.retriever.delete_document(str(row.id))
            await repo.delete(conn, self.collection, [row.id])
            summary.count(DocumentOutcome(str(row.id), row.source_path, "removed", 0))
            tracker.emit(IngestProgress("prune", number, len(gone), row.source_path, "removed"))
