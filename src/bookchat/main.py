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
from bookchat.auth.tokens import TokenCodec
from bookchat.chat.router import router as chat_router
from bookchat.chat.upkeep import turn_upkeep
from bookchat.config import Settings, SettingsError, load_settings
from bookchat.conversations.router import router as conversations_router
from bookchat.documents.index_migration import finish_migration
from bookchat.documents.ingest import IngestPipeline
from bookchat.documents.router import router as documents_router
from bookchat.edge.body_limit import BodyLimitMiddleware
from bookchat.edge.middleware import EdgeConfigError, body_limit_for, install_edge
from bookchat.edge.problems import install_problem_handlers, internal_error_response, refused_body_response
from bookchat.health.router import router as health_router
from bookchat.insights.retention import retention_upkeep
from bookchat.insights.router import router as insights_router
from bookchat.openai_compat.router import router as openai_router
from bookchat.pages.router import router as pages_router
from bookchat.retrieval.embeddings import EmbeddingError
from bookchat.retrieval.store import VectorStoreError
from bookchat.runtime.database import DatabaseError
from bookchat.runtime.garbage_collection import serving_garbage_collection
from bookchat.runtime.observability import (
    Metrics,
    QuietErrorsFilter,
    RequestContextMiddleware,
    configure_logging,
    redact_values,
)
from bookchat.runtime.rate_limiter import RateLimitConfigError
from bookchat.runtime.resources import Resources, open_resources
from bookchat.search.router import router as search_router
from bookchat.web.admin import router as admin_router
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


async def ingest_sample_book(resources: Resources, folder: Path) -> None:
    """First start: ingest the bundled user guide, so the very first question has something to find."""
    pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, resources.settings)
    # Without a public site, citations link to the copy of the guide this app serves under /guide.
    summary = await pipeline.ingest_paths([folder], base_url=resources.settings.public_base_url or SAMPLE_BOOK_BASE_URL)
    log.info(
        "sample book ingested", extra={"folder": str(folder), "documents": summary.added, "chunks": summary.chunks}
    )


SAMPLE_BOOK_BASE_URL = "/guide"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Resources are opened in the lifespan, so creating an app does no I/O."""
    settings = settings or load_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            try:
                resources = await open_resources(settings, stack)
                # A local-mode folder just moved to the embedded engine: its index is rebuilt before serving.
                await finish_migration(
                    resources.database.pool, resources.retriever, resources.embedder, resources.settings
                )
                if settings.sample_book is not None and await resources.store.count() == 0:
                    await ingest_sample_book(resources, settings.sample_book)
                app.state.resources = resources
                # Built now, so a generated signing secret is created (and logged) at start, not on a request.
                app.state.token_codec = TokenCodec.from_settings(settings)
            except STARTUP_ERRORS as exc:
                # One line that names the fix; `QuietErrorsFilter` keeps uvicorn from adding a traceback.
                log.error("start-up failed: %s", exc)
                raise
            # Answers a crash left pending are swept now and periodically; at shutdown, turn writes are drained.
            await stack.enter_async_context(turn_upkeep(resources.database.pool, settings))
            await stack.enter_async_context(retention_upkeep(resources.database.pool, settings))
            stack.enter_context(serving_garbage_collection())
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
        pages_router,
        insights_router,
        admin_router,
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
    redact_values(settings.secret_values())
    logging.getLogger("uvicorn.error").addFilter(QuietErrorsFilter(STARTUP_ERRORS))
    return create_app(settings)
