"""The process-wide resources (pool, vector store, embedder, LLM, ...) and the `Depends()` that hand them out.

Dependencies are `async def` even when they only read an attribute: FastAPI runs a plain `def` dependency on a
worker thread, a thread hop (and a wait for the GIL) per dependency per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import asyncpg
from fastapi import Depends, Request

from bookchat.config import Settings
from bookchat.runtime.resources import Resources

if TYPE_CHECKING:
    from bookchat.retrieval.search import HybridRetriever


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_pool(resources: ResourcesDep) -> asyncpg.Pool:
    return resources.database.pool


async def get_retriever(resources: ResourcesDep) -> HybridRetriever:
    return resources.retriever


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
RetrieverDep = Annotated["HybridRetriever", Depends(get_retriever)]
