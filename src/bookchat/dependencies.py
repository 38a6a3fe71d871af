"""The process-wide resources (pool, vector store, embedder, LLM, ...) and the `Depends()` that hand them out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import asyncpg
from fastapi import Depends, Request

from bookchat.config import Settings
from bookchat.db import Database
from bookchat.retrieval.store import VectorStore

if TYPE_CHECKING:
    from bookchat.retrieval.embeddings import Embedder
    from bookchat.retrieval.search import HybridRetriever
    from bookchat.retrieval.sparse import Bm25Encoder


@dataclass
class Resources:
    """Everything a request may need, opened once in the app's lifespan and closed at shutdown."""

    settings: Settings
    database: Database
    store: VectorStore
    embedder: Embedder
    sparse: Bm25Encoder
    retriever: HybridRetriever
    llm: Any = None
    limiter: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_pool(resources: ResourcesDep) -> asyncpg.Pool:
    return resources.database.pool


def get_vector_store(resources: ResourcesDep) -> VectorStore:
    return resources.store


def get_embedder(resources: ResourcesDep) -> Embedder:
    return resources.embedder


def get_sparse_encoder(resources: ResourcesDep) -> Bm25Encoder:
    return resources.sparse


def get_retriever(resources: ResourcesDep) -> HybridRetriever:
    return resources.retriever


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
VectorStoreDep = Annotated[VectorStore, Depends(get_vector_store)]
EmbedderDep = Annotated["Embedder", Depends(get_embedder)]
RetrieverDep = Annotated["HybridRetriever", Depends(get_retriever)]
