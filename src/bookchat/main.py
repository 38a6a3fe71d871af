"""The FastAPI application: `create_app()` wires settings, resources, middleware and routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from bookchat import __version__
from bookchat.auth.router import router as auth_router
from bookchat.body_limit import BodyLimitMiddleware
from bookchat.chat.router import router as chat_router
from bookchat.config import Settings, SettingsError, load_settings
from bookchat.conversations.router import router as conversations_router
from bookchat.db import Database, DatabaseError
from bookchat.dependencies import Resources
from bookchat.documents.ingest import IngestPipeline
from bookchat.documents.router import router as documents_router
from bookchat.edge import EdgeConfigError, body_limit_for, install_edge
from bookchat.health import router as health_router
from bookchat.llm.provider import create_llm
from bookchat.observability import Metrics, QuietErrorsFilter, RequestContextMiddleware, configure_logging
from bookchat.openai_compat.router import router as openai_router
from bookchat.problems import install_problem_handlers, internal_error_response, refused_body_response
from bookchat.ratelimit import RateLimitConfigError, create_rate_limiter
from bookchat.retrieval.embeddings import EmbeddingError, create_embedder
from bookchat.retrieval.search import HybridRetriever
from bookchat.retrieval.sparse import Bm25Encoder
from bookchat.retrieval.store import VectorStore, VectorStoreError, open_qdrant_client
from bookchat.search.router import router as search_router
from bookchat.web.router import router as web_router

log = logging.getLogger(__name__)

# Errors an operator fixes by configuration: reported in one line at start-up, without a traceback.
STARTUP_ERRORS = (DatabaseError, VectorStoreError, EmbeddingError, SettingsError, RateLimitConfigError, EdgeConfigError)

DESCRIPTION = """
bookchat answers readers' questions about a book or documentation site, grounded in its text, with citations
that link to the exact section — including questions about a passage the reader has just selected.

* **Readers** chat through `POST /api/chat` (JSON or Server-Sent Events) and find their history under
  `/api/conversations`.
* **Admins** load the book through `/api/documents`.
* **OpenAI-compatible clients** use `/v1/chat/completions`.

Every error is an RFC 9457 `application/problem+json` body.
"""


async def open_resources(settings: Settings, stack: AsyncExitStack) -> Resources:
    """Open the pool, the vector store and the models; `stack` closes them in reverse order."""
    database = Database(settings)
    await database.open()
    stack.push_async_callback(database.close)

    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    client = open_qdrant_client(settings.qdrant_url, api_key, settings.resolved_qdrant_path)
    store = VectorStore(client, settings.collection, is_local=settings.qdrant_url is None)
    stack.push_async_callback(store.close)

    embedder = create_embedder(settings)
    await store.ensure_collection(embedder.model_id, embedder.dim)
    sparse = Bm25Encoder()
    retriever = HybridRetriever(store, embedder, sparse, rrf_k=settings.rrf_k, prefetch_limit=settings.prefetch_limit)

    llm = create_llm(settings)
    if llm is not None:
        stack.push_async_callback(llm.aclose)
    limiter = create_rate_limiter(settings)
    stack.push_async_callback(limiter.close)
    resources = Resources(
        settings=settings,
        database=database,
        store=store,
        embedder=embedder,
        sparse=sparse,
        retriever=retriever,
        llm=llm,
        limiter=limiter,
    )
    if settings.sample_book is not None and await store.count() == 0:
        await ingest_sample_book(resources, settings.sample_book)
    return resources


async def ingest_sample_book(resources: Resources, folder: Path) -> None:
    """First start: ingest the bundled user guide, so the very first question has something to find."""
    pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, resources.settings)
    summary = await pipeline.ingest_paths([folder])
    log.info(
        "sample book ingested", extra={"folder": str(folder), "documents": summary.added, "chunks": summary.chunks}
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Resources are opened in the lifespan, so creating an app does no I/O."""
    settings = settings or load_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            try:
                app.state.resources = await open_resources(settings, stack)
            except STARTUP_ERRORS as exc:
                # One line that names the fix; `QuietErrorsFilter` keeps uvicorn from adding a traceback.
                log.error("start-up failed: %s", exc)
                raise
            log.info("bookchat ready", extra={"collection": settings.collection})
            yield

    app = FastAPI(
        title="bookchat",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_problem_handlers(app)

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit_for(settings), on_refused=refused_body_response)
    install_edge(app, settings)
    # Added last, so it runs first: every response, 413s and 500s included, carries the request id.
    app.add_middleware(RequestContextMiddleware, metrics=metrics, error_response=internal_error_response)

    for router in (
        health_router,
        auth_router,
        chat_router,
        conversations_router,
        search_router,
        documents_router,
        openai_router,
        web_router,
    ):
        app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory bookchat.main:app_from_env` (what `bookchat serve` runs)."""
    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    logging.getLogger("uvicorn.error").addFilter(QuietErrorsFilter(STARTUP_ERRORS))
    return create_app(settings)
