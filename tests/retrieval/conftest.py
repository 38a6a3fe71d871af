"""Fixtures for the retrieval tests: the bundled embedder (loaded once), the embedded engine and local mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from bookchat.retrieval.embeddings import OnnxEmbedder
from bookchat.retrieval.search import HybridRetriever
from bookchat.retrieval.sparse import Bm25Encoder
from bookchat.retrieval.store import VectorStore
from bookchat.retrieval.stores.edge_client import EdgeQdrantClient


@pytest.fixture(scope="session")
def embedder(models_dir: Path) -> OnnxEmbedder:
    # One thread leaves the other core to the rest.
    return OnnxEmbedder.bundled(cache_dir=models_dir, threads=1)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[VectorStore]:
    """The embedded engine (the default) in a folder of the test's own."""
    store = VectorStore(EdgeQdrantClient(tmp_path / "qdrant"), "test-chunks", kind="edge")
    yield store
    await store.close()


@pytest.fixture
async def legacy_store() -> AsyncIterator[VectorStore]:
    """qdrant-client's local mode, in memory: the engine kept selectable for one release."""
    store = VectorStore(AsyncQdrantClient(location=":memory:"), "test-chunks", kind="local-legacy")
    yield store
    await store.close()


@pytest.fixture
def retriever(store: VectorStore, embedder: OnnxEmbedder) -> HybridRetriever:
    return HybridRetriever(store, embedder, Bm25Encoder(), rrf_k=60, prefetch_limit=20)


@pytest.fixture
def legacy_retriever(legacy_store: VectorStore, embedder: OnnxEmbedder) -> HybridRetriever:
    return HybridRetriever(legacy_store, embedder, Bm25Encoder(), rrf_k=60, prefetch_limit=20)
