"""The FastAPI application: `create_app()` wires settings, resources, middleware and routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from bookchat import __version__
from bookchat.body_limit import BodyLimitMiddleware
from bookchat.config import Settings, load_settings
from bookchat.db import Database
from bookchat.dependencies import Resources
from bookchat.health import router as health_router
from bookchat.observability import Metrics, RequestContextMiddleware, configure_logging
from bookchat.problems import internal_error_response, install_problem_handlers, refused_body_response
from bookchat.retrieval.embeddings import create_embedder
from bookchat.retrieval.search import HybridRetriever
from bookchat.retrieval.sparse import Bm25Encoder
from bookchat.retrieval.store import VectorStore, open_qdrant_client

log = logging.getLogger(__name__)

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
    return Resources(
        settings=settings,
        database=database,
        store=store,
        embedder=embedder,
        sparse=sparse,
        retriever=retriever,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Resources are opened in the lifespan, so creating an app does no I/O."""
    settings = settings or load_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.resources = await open_resources(settings, stack)
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

    def body_limit_for(path: str) -> int:
        return settings.max_upload_bytes if path.startswith("/api/documents") else settings.max_body_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit_for, on_refused=refused_body_response)
    # Added last, so it runs first: every response, 413s included, carries the request id.
    app.add_middleware(RequestContextMiddleware, metrics=metrics, error_response=internal_error_response)

    app.include_router(health_router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory bookchat.main:app_from_env` (what `bookchat serve` runs)."""
    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return create_app(settings)
