"""Rebuilding a book's vector index from PostgreSQL into a new collection that replaces the live one when complete."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from uuid import UUID

from qdrant_client import models

from bookchat.documents import repository as repo
from bookchat.documents.discovery import SkippedFile
from bookchat.documents.ingest_summary import DocumentOutcome, IngestSummary, Outcome, ProgressTracker
from bookchat.documents.loaders import UnsupportedDocument
from bookchat.documents.preparation import DocumentInput, DocumentPreparer, PreparedDocument
from bookchat.documents.repository import DocumentRow
from bookchat.retrieval.search import HybridRetriever, Passage, passage_from_payload
from bookchat.retrieval.store import VectorStore
from bookchat.runtime.index_registry import record_index

log = logging.getLogger(__name__)

# Passages embedded per upsert round of a rebuild.
REBUILD_BATCH = 512


class IndexRebuild:
    """One rebuild: every document re-chunked from its stored bytes (or from files given fresh) and re-embedded
    into a new collection; the collection's name then switches to it and the old one is dropped.

    Readers search the old collection until the switch. A failure before it deletes the new collection and
    changes no row; documents ingested before sources were kept are carried over from the old collection's
    chunks, so nothing is lost either way.
    """

    def __init__(
        self,
        retriever: HybridRetriever,
        preparer: DocumentPreparer,
        conn: repo.Conn,
        summary: IngestSummary,
        tracker: ProgressTracker,
        carry_from: VectorStore | None = None,
    ) -> None:
        self.retriever = retriever
        self.carry_from = carry_from
        self.preparer = preparer
        self.conn = conn
        self.summary = summary
        self.tracker = tracker
        self.collection = retriever.store.collection

    async def run(self, rows: dict[str, DocumentRow], fresh: list[DocumentInput], base_url: str | None) -> None:
        """Rebuild the documents of `rows` plus `fresh` inputs (files read now, which win over stored bytes)."""
        store = self.retriever.store
        abandoned = await store.drop_abandoned_rebuilds()
        if abandoned:
            log.info("dropped collections of interrupted rebuilds", extra={"collections": abandoned})
        target = self.retriever.on_collection(store.rebuild_name())
        await target.ensure_collection()
        by_path = {item.source_path: item for item in fresh}
        new_rows: list[UUID] = []
        model = self.preparer.embedder.model_id
        try:
            prepared, carried = await self._collect(rows, by_path, base_url)
            new = [item for item in prepared if item.previous is None]
            await repo.begin_writes(
                self.conn, self.collection, [item.write(self.preparer.embedder.model_id) for item in new]
            )
            new_rows = [UUID(item.document_id) for item in new]
            passages = [passage for item in prepared for passage in item.passages]
            passages += [passage for chunks in carried.values() for passage in chunks]
            for start in range(0, len(passages), REBUILD_BATCH):
                await target.index_passages(passages[start : start + REBUILD_BATCH])
            await store.switch_to(target.store.collection)
        except BaseException:
            await asyncio.shield(self._abandon(target.store, new_rows))
            raise
        # This store holds the index now (`--reindex` is how a replica's own store is adopted).
        await record_index(self.conn, store)
        await repo.finish_writes(self.conn, self.collection, [item.write(model) for item in prepared])
        await repo.mark_clean(self.conn, self.collection, [UUID(item.document_id) for item in prepared])
        for item in prepared:
            outcome: Outcome = "added" if item.previous is None else "updated"
            self.summary.count(DocumentOutcome(item.document_id, item.source_path, outcome, len(item.passages)))
            self.summary.chunks += len(item.passages)
            self.tracker.advance(item.source_path, outcome)
        path_of = {str(row.id): row.source_path for row in rows.values()}
        for row_id, chunks in carried.items():
            self.summary.count(DocumentOutcome(row_id, path_of[row_id], "updated", len(chunks)))
            self.summary.chunks += len(chunks)
            self.tracker.advance(path_of[row_id], "updated")

    async def _collect(
        self, rows: dict[str, DocumentRow], fresh: dict[str, DocumentInput], base_url: str | None
    ) -> tuple[list[PreparedDocument], dict[str, list[Passage]]]:
        """Each document's passages: from a fresh file, else from its stored bytes, else (rows ingested before
        sources were kept) the chunks the live collection holds, kept as they are."""
        stored = await repo.fetch_sources(
            self.conn, self.collection, [row.id for path, row in rows.items() if path not in fresh]
        )
        prepared: list[PreparedDocument] = []
        legacy: list[DocumentRow] = []
        for path in sorted(set(rows) | set(fresh)):
            row = rows.get(path)
            generation = row.generation if row is not None else 0
            if path in fresh:
                item, base = fresh[path], base_url
            elif row is not None and row.id in stored:
                item, base = DocumentInput.from_stored(stored[row.id])
            elif row is not None and row.status == "ready":
                legacy.append(row)
                continue
            else:
                # A row whose first write never finished has nothing to rebuild from; a rerun with its file will.
                self.summary.skipped.append(SkippedFile(path, "never-indexed"))
                continue
            try:
                prepared.append(
                    await asyncio.to_thread(
                        self.preparer.prepare, item, self.preparer.content_hash(item, base), base, row, generation
                    )
                )
            except UnsupportedDocument as exc:
                self.summary.skipped.append(SkippedFile(path, exc.reason))
                self.tracker.advance(path, "skipped")
        carried = await stored_passages(self.carry_from or self.retriever.store, [str(row.id) for row in legacy])
        for row in legacy:
            chunks = carried.get(str(row.id), [])
            carried[str(row.id)] = [dataclasses.replace(passage, generation=row.generation) for passage in chunks]
            if not chunks:
                log.warning("no chunks to carry over", extra={"source_path": row.source_path})
        return prepared, carried

    async def _abandon(self, target: VectorStore, new_rows: list[UUID]) -> None:
        """After a failed rebuild: drop its collection and the rows it created; the live index is untouched."""
        try:
            await target.run(target.client.delete_collection(target.collection))
        except Exception as exc:  # dropped by the next rebuild (`drop_abandoned_rebuilds`)
            log.warning("rebuild collection not dropped", extra={"error": type(exc).__name__})
        try:
            await repo.delete(self.conn, self.collection, new_rows)
        except Exception as exc:
            log.warning("rows of the failed rebuild not deleted", extra={"error": type(exc).__name__})


async def stored_passages(store: VectorStore, document_ids: list[str]) -> dict[str, list[Passage]]:
    """The chunks the live collection holds for `document_ids`, by document, in chunk order."""
    found: dict[str, list[Passage]] = {}
    if not document_ids or await store.physical_name() is None:
        return found
    query = models.Filter(must=[models.FieldCondition(key="document_id", match=models.MatchAny(any=document_ids))])
    offset: models.ExtendedPointId | None = None
    while True:
        points, offset = await store.run(
            store.client.scroll(
                store.collection, scroll_filter=query, limit=512, offset=offset, with_payload=True, with_vectors=False
            )
        )
        for point in points:
            passage = passage_from_payload(str(point.id), point.payload or {})
            found.setdefault(passage.document_id, []).append(passage)
        if offset is None:
            break
    for passages in found.values():
        passages.sort(key=lambda p: p.chunk_index)
    return found
