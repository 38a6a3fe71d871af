"""Fixtures for the retrieval tests: the bundled embedder (loaded once) and Qdrant in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from bookchat.retrieval.embeddings import OnnxEmbedder
from bookchat.retrieval.search import HybridRetriever
from bookchat.retrieval.sparse import Bm25Encoder
from bookchat.retrieval.store import VectorStore


@pytest.fixture(scope="session")
def embedder(models_dir: Path) -> OnnxEmbedder:
    # One thread leaves the other core to the rest.
    return OnnxEmbedder.bundled(cache_dir=models_dir, threads=1)


@pytest.fixture
async def store() -> AsyncIterator[VectorStore]:
    store = VectorStore(AsyncQdrantClient(location=":memory:"), "test-chunks", is_local=True)
    yield store
    await store.close()


@pytest.fixture
def retriever(store: VectorStore, embedder: OnnxEmbedder) -> HybridRetriever:
    return HybridRetriever(store, embedder, Bm25Encoder(), rrf_k=60, prefetch_limit=20)
