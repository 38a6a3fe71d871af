"""Turning one document's bytes into the passages to index: its id, its content hash, its chunks (CPU work)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID, uuid5

from bookchat.config import Settings
from bookchat.documents.chunking import CHUNKER_VERSION, chunk_document, chunk_url, document_url
from bookchat.documents.loaders import DocumentFormat, LoadedDocument, load_document
from bookchat.documents.repository import DocumentRow, DocumentWrite, StoredSource
from bookchat.retrieval.embeddings import Embedder
from bookchat.retrieval.search import Passage, chunk_point_id, indexed_text

# Fixed namespace of document ids: uuid5(DOCUMENT_NAMESPACE, "collection:source_path") never changes.
DOCUMENT_NAMESPACE = UUID("6b1f3c1e-4a8e-5d0b-9a53-0c2b7f1e9d42")
_OPTION_FIELDS = ("title", "url", "content_type", "fmt", "doc_path")


def document_id_for(collection: str, source_path: str) -> str:
    """The id of a document: UUIDv5 of `collection:source_path`, so every run finds the same row and points."""
    return str(uuid5(DOCUMENT_NAMESPACE, f"{collection}:{source_path}"))


@dataclass(frozen=True)
class DocumentInput:
    """One document handed over as bytes (a file or an upload): its path in the corpus and optional overrides."""

    source_path: str
    data: bytes
    title: str | None = None
    url: str | None = None
    content_type: str | None = None
    fmt: DocumentFormat | None = None
    doc_path: str | None = None

    def options(self, base_url: str | None) -> dict[str, str]:
        """What was given besides the bytes, as stored beside them (`from_stored` reads it back)."""
        given = {name: getattr(self, name) for name in _OPTION_FIELDS}
        given["base_url"] = base_url
        return {name: value for name, value in given.items() if value}

    @classmethod
    def from_stored(cls, stored: StoredSource) -> tuple[DocumentInput, str | None]:
        """The input a stored source was ingested from, and the base URL it was ingested with."""
        options = stored.options
        fmt = options.get("fmt")
        item = cls(
            stored.source_path,
            stored.source,
            title=options.get("title"),
            url=options.get("url"),
            content_type=options.get("content_type"),
            fmt=fmt,  # type: ignore[arg-type]  # written from a DocumentFormat by `options`
            doc_path=options.get("doc_path"),
        )
        return item, options.get("base_url")


@dataclass
class PreparedDocument:
    """A document chunked into passages of `generation`, ready to be written beside its previous version."""

    document_id: str
    source_path: str
    content_hash: str
    title: str
    url: str | None
    passages: list[Passage]
    previous: DocumentRow | None
    generation: int
    source: bytes
    source_options: dict[str, str]

    def write(self, embedding_model: str) -> DocumentWrite:
        return DocumentWrite(
            UUID(self.document_id),
            self.source_path,
            self.title,
            self.url,
            self.content_hash,
            len(self.passages),
            embedding_model,
            self.generation,
            self.source,
            self.source_options,
        )


class DocumentPreparer:
    """Hashes and chunks documents of one collection with the configured chunk sizes and embedder's tokens."""

    def __init__(self, collection: str, embedder: Embedder, settings: Settings) -> None:
        self.collection = collection
        self.embedder = embedder
        self.settings = settings

    def content_hash(self, item: DocumentInput, base_url: str | None) -> str:
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

    def prepare(
        self,
        item: DocumentInput,
        content_hash: str,
        base_url: str | None,
        previous: DocumentRow | None,
        generation: int,
    ) -> PreparedDocument:
        """Load and chunk one document into passages of `generation` (CPU work: run it in a worker thread)."""
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
                chunk_id=chunk_point_id(document_id, chunk.index, generation),
                document_id=document_id,
                chunk_index=chunk.index,
                source_path=item.source_path,
                title=title,
                # A given URL that already points inside its page keeps its own fragment.
                url=page_url if page_url and "#" in page_url else chunk_url(page_url, chunk),
                heading_path=chunk.heading_path,
                text=chunk.text,
                page=chunk.page,
                generation=generation,
            )
            for chunk in chunks
        ]
        return PreparedDocument(
            document_id,
            item.source_path,
            content_hash,
            title,
            page_url,
            passages,
            previous,
            generation,
            item.data,
            item.options(base_url),
        )

    def _context_counter(self, document: LoadedDocument, title: str) -> Callable[[tuple[str, ...]], int]:
        """Tokens of the header the retriever puts before a chunk (title › headings), per heading path."""
        cache: dict[tuple[str, ...], int] = {}

        def count(heading_path: tuple[str, ...]) -> int:
            if heading_path not in cache:
                probe = Passage("", "", 0, document.source_path, title, None, heading_path, "")
                cache[heading_path] = self.embedder.count_tokens(indexed_text(probe))
            return cache[heading_path]

        return count


def next_generation(previous: DocumentRow | None) -> int:
    """The generation a new write of a document takes: one past its row's, so it never meets older points."""
    return 0 if previous is None else previous.generation + 1
