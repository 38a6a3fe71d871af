"""The ingestion pipeline: files or uploads in, chunks indexed in Qdrant and rows in PostgreSQL, idempotently."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal
from uuid import UUID, uuid5

import asyncpg
from qdrant_client import models

from bookchat.config import Settings
from bookchat.documents import repository as repo
from bookchat.documents.chunking import CHUNKER_VERSION, chunk_document, chunk_url, document_url
from bookchat.documents.loaders import (
    SUFFIX_FORMATS,
    DocumentFormat,
    LoadedDocument,
    UnsupportedDocument,
    load_document,
)
from bookchat.documents.repository import PENDING_HASH, DocumentRow, DocumentWrite
from bookchat.retrieval.embeddings import Embedder
from bookchat.retrieval.search import (
    HybridRetriever,
    Passage,
    chunk_point_id,
    indexed_text,
    passage_from_payload,
)

log = logging.getLogger(__name__)

# Fixed namespace of document ids: uuid5(DOCUMENT_NAMESPACE, "collection:source_path") never changes.
DOCUMENT_NAMESPACE = UUID("6b1f3c1e-4a8e-5d0b-9a53-0c2b7f1e9d42")
# Chunks embedded per write batch: big enough to keep the embedder busy, small enough to show progress.
BATCH_CHUNKS = 128
DOCUSAURUS_CONFIGS = tuple(f"docusaurus.config.{ext}" for ext in ("js", "ts", "mjs", "cjs", "mts", "cts"))
API_LOCK_SECONDS = 10.0

Outcome = Literal["added", "updated", "unchanged", "removed", "skipped"]


def document_id_for(collection: str, source_path: str) -> str:
    """The id of a document: UUIDv5 of `collection:source_path`, so every run finds the same row and points."""
    return str(uuid5(DOCUMENT_NAMESPACE, f"{collection}:{source_path}"))


class IngestError(RuntimeError):
    """An ingestion cannot start (bad path, lock held); the message says what to do."""


class IngestBusy(IngestError):
    """Another ingestion of the same collection holds the lock."""


@dataclass(frozen=True)
class SkippedFile:
    source_path: str
    reason: str


@dataclass(frozen=True)
class DocumentOutcome:
    document_id: str
    source_path: str
    outcome: Outcome
    chunks: int


@dataclass(frozen=True)
class IngestProgress:
    """A progress event: `phase` "scan" (total known), "wait" (lock held elsewhere), "document", "prune", "done"."""

    phase: Literal["scan", "wait", "document", "prune", "done"]
    completed: int
    total: int
    source_path: str | None = None
    outcome: Outcome | None = None


ProgressCallback = Callable[[IngestProgress], None]


class _Progress:
    """Counts finished documents so `completed` only ever grows, whatever order batches finish in."""

    def __init__(self, callback: ProgressCallback | None, total: int = 0) -> None:
        self.callback = callback
        self.total = total
        self.completed = 0

    def emit(self, event: IngestProgress) -> None:
        if self.callback is not None:
            self.callback(event)

    def advance(self, source_path: str, outcome: Outcome) -> None:
        self.completed += 1
        self.emit(IngestProgress("document", self.completed, self.total, source_path, outcome))


@dataclass
class IngestSummary:
    """What one run did: documents added / updated / unchanged / removed, chunks written, seconds taken."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    seconds: float = 0.0
    skipped: list[SkippedFile] = field(default_factory=list)
    documents: list[DocumentOutcome] = field(default_factory=list)
    run_id: UUID | None = None

    def count(self, outcome: DocumentOutcome) -> None:
        self.documents.append(outcome)
        if outcome.outcome == "added":
            self.added += 1
        elif outcome.outcome == "updated":
            self.updated += 1
        elif outcome.outcome == "unchanged":
            self.unchanged += 1
        elif outcome.outcome == "removed":
            self.removed += 1


@dataclass(frozen=True)
class SourceFile:
    """A file found under an ingest root: `source_path` is `<root name>/<path in root>`, `doc_path` the latter."""

    path: Path
    source_path: str
    doc_path: str


@dataclass(frozen=True)
class DocumentInput:
    """One document handed over as bytes (an upload): its path in the corpus and optional overrides."""

    source_path: str
    data: bytes
    title: str | None = None
    url: str | None = None
    content_type: str | None = None
    fmt: DocumentFormat | None = None
    doc_path: str | None = None


@dataclass
class _Prepared:
    document_id: str
    source_path: str
    content_hash: str
    title: str
    url: str | None
    passages: list[Passage]
    previous: DocumentRow | None


@dataclass(frozen=True)
class Discovery:
    files: list[SourceFile]
    skipped: list[SkippedFile]
    # Source-path prefixes that prune may clean: one per directory given.
    scopes: list[str]


def _docs_root(path: Path) -> Path | None:
    """The Docusaurus docs folder holding `path`, if a `docusaurus.config.*` sits beside one of its ancestors."""
    for candidate in [path, *path.parents][:12]:
        parent = candidate.parent
        if parent != candidate and any((parent / name).is_file() for name in DOCUSAURUS_CONFIGS):
            return candidate
    return None


def _ignored_dir(name: str) -> bool:
    return name.startswith((".", "_")) or name in ("node_modules", "__pycache__")


def _known_root(path: Path, known: set[str]) -> Path | None:
    """The ancestor of `path` that an earlier ingestion used as root, judged by the source paths it recorded."""
    for ancestor in list(path.parents)[:12]:
        if ancestor.name and _join(ancestor.name, path.relative_to(ancestor).as_posix()) in known:
            return ancestor
    return None


def _prefixes(source_paths: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for source_path in source_paths:
        parts = source_path.split("/")
        found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return found


def discover(paths: Sequence[Path | str], known: Iterable[str] = ()) -> Discovery:
    """The files to ingest under `paths` (folders are walked; hidden, `_partials` and unknown types skipped).

    Source paths are `<root folder name>/<path in root>`. A folder is its own root and a file's root is its
    folder, unless they lie inside a Docusaurus docs folder (which is then the root) or inside a root of an
    earlier ingestion (`known` source paths tell): `ingest book/module-1` after `ingest book` names files as
    the latter did, so nothing is duplicated and prune stays inside `book/module-1`.
    """
    files: dict[str, SourceFile] = {}
    skipped: list[SkippedFile] = []
    scopes: list[str] = []
    unsupported: Counter[str] = Counter()
    known_prefixes = _prefixes(known)
    for given in paths:
        path = Path(given).expanduser().resolve()
        if not path.exists():
            raise IngestError(f"{given}: no such file or folder")
        is_dir = path.is_dir()
        root = _docs_root(path) or _known_root(path, known_prefixes) or (path if is_dir else path.parent)
        prefix = root.name
        candidates: list[Path] = []
        if is_dir:
            relative = path.relative_to(root).as_posix()
            scopes.append(_join(prefix, "" if relative == "." else relative))
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not _ignored_dir(d))
                for name in sorted(names):
                    if name.startswith("."):
                        continue
                    candidates.append(Path(folder) / name)
        else:
            candidates.append(path)
        for file in candidates:
            doc_path = file.relative_to(root).as_posix()
            source_path = _join(prefix, doc_path)
            suffix = file.suffix.lower()
            if suffix not in SUFFIX_FORMATS:
                unsupported[suffix or file.name] += 1
                skipped.append(SkippedFile(source_path, "unsupported-type"))
                continue
            if is_dir and suffix in (".md", ".mdx") and file.name.startswith("_"):
                # Docusaurus does not publish `_partial.mdx` files; they are imported into other pages.
                skipped.append(SkippedFile(source_path, "partial"))
                continue
            if source_path in files:
                if files[source_path].path != file:
                    log.warning("two files map to one source path; the first wins", extra={"source_path": source_path})
                continue
            files[source_path] = SourceFile(file, source_path, doc_path)
    if unsupported:
        kinds = ", ".join(f"{kind} ×{n}" for kind, n in unsupported.most_common())
        log.warning(f"skipped {sum(unsupported.values())} files of unsupported types ({kinds})")
    return Discovery(list(files.values()), skipped, scopes)


def _join(prefix: str, path: str) -> str:
    return "/".join(part for part in (prefix, path) if part)


class IngestPipeline:
    """Loads, chunks, embeds and records documents; safe to rerun, to interrupt, and to run from two places.

    - Idempotent: a document whose bytes and chunking settings hash the same as its row is skipped.
    - Crash-safe: a document's row is marked pending before its points change and gets its final hash only
      after every point is written and stale ones are deleted; a rerun redoes anything still pending.
    - Exclusive: a PostgreSQL advisory lock per collection serialises ingestions of one corpus.
    """

    def __init__(self, pool: asyncpg.Pool, retriever: HybridRetriever, embedder: Embedder, settings: Settings) -> None:
        self.pool = pool
        self.retriever = retriever
        self.embedder = embedder
        self.settings = settings
        self.collection = retriever.store.collection

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
        folders whose files are gone. `reindex` rebuilds the collection and re-embeds everything.
        """
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            known = await repo.fetch_all(conn, self.collection)
        found = await asyncio.to_thread(discover, paths, known)
        base = (base_url or self.settings.public_base_url or "").rstrip("/") or None
        tracker = _Progress(progress, len(found.files))
        summary = IngestSummary(skipped=list(found.skipped))
        tracker.emit(IngestProgress("scan", 0, len(found.files)))
        async with self._session(summary, wait=True, tracker=tracker) as conn:
            rows = await repo.fetch_all(conn, self.collection)
            carried: dict[str, list[Passage]] = {}
            force = reindex or await self._index_lost(rows)
            if reindex:
                present = {file.source_path for file in found.files}
                keep = [row for path, row in rows.items() if path not in present]
                carried = await self._stored_passages([str(row.id) for row in keep])
                await self._rebuild_collection(conn)
            pending: list[_Prepared] = []
            seen: set[str] = set()
            for file in found.files:
                seen.add(file.source_path)
                try:
                    data = await asyncio.to_thread(file.path.read_bytes)
                except OSError as exc:
                    log.warning("cannot read file", extra={"source_path": file.source_path, "error": str(exc)})
                    summary.skipped.append(SkippedFile(file.source_path, "unreadable"))
                    tracker.advance(file.source_path, "skipped")
                    continue
                item = DocumentInput(file.source_path, data, doc_path=file.doc_path)
                previous = rows.get(file.source_path)
                content_hash = self._content_hash(item, base)
                if not force and previous is not None and previous.content_hash == content_hash:
                    summary.count(
                        DocumentOutcome(str(previous.id), file.source_path, "unchanged", previous.chunk_count)
                    )
                    tracker.advance(file.source_path, "unchanged")
                    continue
                try:
                    prepared = await asyncio.to_thread(self._prepare, item, content_hash, base, previous)
                except UnsupportedDocument as exc:
                    log.warning("file skipped", extra={"source_path": file.source_path, "reason": str(exc)})
                    summary.skipped.append(SkippedFile(file.source_path, exc.reason))
                    tracker.advance(file.source_path, "skipped")
                    continue
                pending.append(prepared)
                if sum(len(p.passages) for p in pending) >= BATCH_CHUNKS:
                    await self._write(conn, pending, summary, tracker)
                    pending = []
            await self._write(conn, pending, summary, tracker)
            restored = await self._restore(conn, rows, carried, seen, found.scopes if prune else [])
            summary.chunks += restored
            if prune:
                await self._prune(conn, rows, seen, found.scopes, summary, tracker)
        summary.seconds = time.perf_counter() - started
        tracker.emit(IngestProgress("done", tracker.completed, len(found.files)))
        return summary

    async def ingest_documents(self, items: Sequence[DocumentInput], *, base_url: str | None = None) -> IngestSummary:
        """Ingest uploaded documents all-or-nothing: every item is loaded and chunked before anything is written,
        and a failure while writing removes what this call wrote. Raises `UnsupportedDocument` or `IngestBusy`.
        """
        started = time.perf_counter()
        base = (base_url or self.settings.public_base_url or "").rstrip("/") or None
        summary = IngestSummary()
        async with self._session(summary, wait=False) as conn:
            rows = await repo.fetch_all(conn, self.collection)
            force = await self._index_lost(rows)
            prepared: list[_Prepared] = []
            for item in items:
                previous = rows.get(item.source_path)
                content_hash = self._content_hash(item, base)
                if not force and previous is not None and previous.content_hash == content_hash:
                    summary.count(
                        DocumentOutcome(str(previous.id), item.source_path, "unchanged", previous.chunk_count)
                    )
                    continue
                prepared.append(await asyncio.to_thread(self._prepare, item, content_hash, base, previous))
            try:
                await self._write(conn, prepared, summary, _Progress(None))
            except BaseException:
                await self._undo(conn, prepared)
                raise
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
        """Rebuild the collection from the chunks it holds (no source files needed): re-embeds every passage
        with the current embedder and BM25 encoder, e.g. after a model change."""
        started = time.perf_counter()
        summary = IngestSummary()
        async with self._session(summary, wait=False, tracker=_Progress(progress)) as conn:
            rows = await repo.fetch_all(conn, self.collection)
            carried = await self._stored_passages([str(row.id) for row in rows.values()])
            await self._rebuild_collection(conn)
            summary.chunks = await self._restore(conn, rows, carried, set(), [])
            for row in rows.values():
                summary.count(DocumentOutcome(str(row.id), row.source_path, "updated", row.chunk_count))
        summary.seconds = time.perf_counter() - started
        return summary

    # --- steps --------------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _session(
        self,
        summary: IngestSummary,
        *,
        wait: bool,
        tracker: _Progress | None = None,
        record: bool = True,
    ) -> AsyncIterator[repo.Conn]:
        """One connection holding the collection's advisory lock, with an `ingest_runs` row around the work."""
        key = repo.ingest_lock_key(self.collection)
        async with self.pool.acquire() as conn:
            if wait:
                if not await repo.try_lock(conn, key):
                    if tracker is not None:
                        tracker.emit(IngestProgress("wait", 0, tracker.total))
                    log.info("waiting for another ingestion of this collection", extra={"collection": self.collection})
                    await repo.lock(conn, key)
            elif not await repo.lock_within(conn, key, API_LOCK_SECONDS):
                raise IngestBusy(
                    f"another ingestion of collection {self.collection!r} is running; try again when it ends"
                )
            try:
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
            finally:
                with contextlib.suppress(Exception):
                    await repo.unlock(conn, key)

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

    def _content_hash(self, item: DocumentInput, base_url: str | None) -> str:
        """SHA-256 of the bytes and of everything else that shapes the chunks, their payload or their vectors."""
        digest = hashlib.sha256()
        for part in (
            f"chunker={CHUNKER_VERSION}",
            f"tokens={self.settings.chunk_tokens}/{self.settings.chunk_overlap_tokens}",
            f"model={self.embedder.model_id}",
            f"base={base_url or ''}",
            f"doc={item.doc_path or ''}",
            f"title={item.title or ''}",
            f"url={item.url or ''}",
            f"fmt={item.fmt or ''}/{item.content_type or ''}",
        ):
            digest.update(part.encode())
            digest.update(b"\0")
        digest.update(item.data)
        return digest.hexdigest()

    def _prepare(
        self, item: DocumentInput, content_hash: str, base_url: str | None, previous: DocumentRow | None
    ) -> _Prepared:
        """Load and chunk one document into passages (CPU work: runs in a worker thread)."""
        document = load_document(
            item.source_path, item.data, fmt=item.fmt, content_type=item.content_type, doc_path=item.doc_path
        )
        title = (item.title or document.title).strip()[:500] or document.title
        page_url = item.url or document_url(document, base_url)
        document_id = document_id_for(self.collection, item.source_path)
        chunks = chunk_document(
            document,
            count_tokens=self.embedder.count_tokens,
            max_tokens=self.settings.chunk_tokens,
            overlap_tokens=self.settings.chunk_overlap_tokens,
            context_tokens=self._context_counter(document, title),
        )
        passages = [
            Passage(
                chunk_id=chunk_point_id(document_id, chunk.index),
                document_id=document_id,
                chunk_index=chunk.index,
                source_path=item.source_path,
                title=title,
                # A given URL that already points inside its page keeps its own fragment.
                url=page_url if page_url and "#" in page_url else chunk_url(page_url, chunk),
                heading_path=chunk.heading_path,
                text=chunk.text,
                page=chunk.page,
            )
            for chunk in chunks
        ]
        return _Prepared(document_id, item.source_path, content_hash, title, page_url, passages, previous)

    def _context_counter(self, document: LoadedDocument, title: str) -> Callable[[tuple[str, ...]], int]:
        """Tokens of the header the retriever puts before a chunk (title › headings), per heading path."""
        cache: dict[tuple[str, ...], int] = {}

        def count(heading_path: tuple[str, ...]) -> int:
            if heading_path not in cache:
                probe = Passage("", "", 0, document.source_path, title, None, heading_path, "")
                cache[heading_path] = self.embedder.count_tokens(indexed_text(probe))
            return cache[heading_path]

        return count

    async def _write(
        self,
        conn: repo.Conn,
        batch: list[_Prepared],
        summary: IngestSummary,
        tracker: _Progress,
    ) -> None:
        """Write a batch: rows pending → points upserted → stale points deleted → rows final (last)."""
        if not batch:
            return
        model = self.embedder.model_id

        def row(item: _Prepared, content_hash: str) -> DocumentWrite:
            return DocumentWrite(
                UUID(item.document_id), item.source_path, item.title, item.url, content_hash, len(item.passages), model
            )

        await repo.upsert(conn, self.collection, [row(item, PENDING_HASH) for item in batch])
        await self.retriever.index_passages([passage for item in batch for passage in item.passages])
        for item in batch:
            if item.previous is not None:
                await self.retriever.delete_document(item.document_id, keep_below=len(item.passages))
        await repo.upsert(conn, self.collection, [row(item, item.content_hash) for item in batch])
        for item in batch:
            outcome: Outcome = "added" if item.previous is None else "updated"
            summary.count(DocumentOutcome(item.document_id, item.source_path, outcome, len(item.passages)))
            summary.chunks += len(item.passages)
            tracker.advance(item.source_path, outcome)

    async def _undo(self, conn: repo.Conn, batch: list[_Prepared]) -> None:
        """Best effort after a failed upload: drop what was written for these documents (points, then rows)."""
        for item in batch:
            with contextlib.suppress(Exception):
                await self.retriever.delete_document(item.document_id)
        with contextlib.suppress(Exception):
            await repo.delete(conn, self.collection, [UUID(item.document_id) for item in batch])

    async def _index_lost(self, rows: dict[str, DocumentRow]) -> bool:
        """True when rows claim chunks but the collection is empty (its folder was wiped): re-ingest all."""
        if not any(row.chunk_count for row in rows.values()):
            return False
        if await self.retriever.store.count() == 0:
            log.warning("the collection is empty but documents are recorded; re-ingesting every document")
            return True
        return False

    async def _rebuild_collection(self, conn: repo.Conn) -> None:
        """Drop and create the collection; rows go pending first, so a crash here is redone by the next run."""
        await repo.mark_all_pending(conn, self.collection)
        await self.retriever.store.recreate(
            self.embedder.model_id, self.embedder.dim, sparse_id=self.retriever.sparse.signature
        )

    async def _stored_passages(self, document_ids: list[str]) -> dict[str, list[Passage]]:
        """The chunks the collection holds for `document_ids`, by document, in chunk order (for a rebuild)."""
        found: dict[str, list[Passage]] = {}
        store = self.retriever.store
        if not document_ids or not await store.run(store.client.collection_exists(self.collection)):
            return found
        client = store.client
        query = models.Filter(must=[models.FieldCondition(key="document_id", match=models.MatchAny(any=document_ids))])
        offset: models.ExtendedPointId | None = None
        while True:
            points, offset = await store.run(
                client.scroll(
                    self.collection,
                    scroll_filter=query,
                    limit=512,
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
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

    async def _restore(
        self,
        conn: repo.Conn,
        rows: dict[str, DocumentRow],
        carried: dict[str, list[Passage]],
        seen: set[str],
        prune_scopes: list[str],
    ) -> int:
        """After a rebuild, put back the chunks of documents this run did not re-read, then their hashes."""
        if not carried:
            return 0
        restore = [
            row
            for path, row in rows.items()
            if path not in seen and str(row.id) in carried and not _in_scopes(path, prune_scopes)
        ]
        passages = [passage for row in restore for passage in carried[str(row.id)]]
        for start in range(0, len(passages), BATCH_CHUNKS * 4):
            await self.retriever.index_passages(passages[start : start + BATCH_CHUNKS * 4])
        await repo.set_hashes(conn, self.collection, [(row.id, row.content_hash) for row in restore])
        return len(passages)

    async def _prune(
        self,
        conn: repo.Conn,
        rows: dict[str, DocumentRow],
        seen: set[str],
        scopes: list[str],
        summary: IngestSummary,
        tracker: _Progress,
    ) -> None:
        """Delete documents under the ingested folders whose files are gone: points first, then the row."""
        skipped = {item.source_path for item in summary.skipped}
        gone = [
            row for path, row in rows.items() if path not in seen and path not in skipped and _in_scopes(path, scopes)
        ]
        for number, row in enumerate(gone, start=1):
            await self.retriever.delete_document(str(row.id))
            await repo.delete(conn, self.collection, [row.id])
            summary.count(DocumentOutcome(str(row.id), row.source_path, "removed", 0))
            tracker.emit(IngestProgress("prune", number, len(gone), row.source_path, "removed"))


def _in_scopes(source_path: str, scopes: list[str]) -> bool:
    path = PurePosixPath(source_path).as_posix()
    return any(scope == "" or path == scope or path.startswith(scope + "/") for scope in scopes)
