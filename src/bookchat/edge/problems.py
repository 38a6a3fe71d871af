"""RFC 9457 problem+json responses for every error the app returns, 404 to 500."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from bookchat.edge.body_limit import BodyTooLarge
from bookchat.errors import BookchatError, PayloadTooLarge
from bookchat.runtime.database import is_database_outage
from bookchat.runtime.observability import request_id_var

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://bookchat.dev/problems/"

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5
# Handled so that an outage is a 503; the handler tells an outage from a bug (`is_database_outage`).
DATABASE_ERROR_TYPES: tuple[type[Exception], ...] = (
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """A problem+json response; `code` becomes the `type` URI and a `code` member for clients."""
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code if code else "about:blank",
        "title": title or phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if code:
        body["code"] = code
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    body.update(extensions)
    return ProblemResponse(body, status_code=status, headers=headers)


def problem_from_error(error: BookchatError, instance: str | None = None) -> ProblemResponse:
    return problem(
        error.status,
        error.detail,
        code=error.code,
        title=error.title,
        instance=instance,
        headers=error.headers,
    )


def refused_body_response(error: BookchatError) -> ProblemResponse:
    """The ASGI app the body-limit middleware answers with."""
    return problem_from_error(error)


def internal_error_response() -> ProblemResponse:
    """The 500 for an unhandled error: no internals, but the request id that the log line carries."""
    return problem(500, "an unexpected error occurred; quote the request id when reporting it", code="internal")


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The offending input is not echoed back: it may be huge, binary, or a secret the client mistyped.
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in exc.errors()
    ]


def install_problem_handlers(app: FastAPI) -> None:
    """Render every handled error as problem+json (unhandled ones: `internal_error_response`)."""

    async def bookchat_error(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, BookchatError)
        if exc.status >= 500:
            log.warning("request failed: %s", exc.detail, extra={"code": exc.code, "status": exc.status})
        return problem_from_error(exc, instance=request.url.path)

    async def http_error(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc.__cause__, BodyTooLarge):
            return problem_from_error(PayloadTooLarge("the request body is too large"), instance=request.url.path)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        code = {404: "not-found", 405: "method-not-allowed", 400: "bad-request"}.get(exc.status_code)
        return problem(exc.status_code, detail, code=code, instance=request.url.path, headers=dict(exc.headers or {}))

    async def validation_error(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _field_errors(exc)
        if any(error["type"] == "json_invalid" for error in errors):
            return problem(400, "the request body is not valid JSON", code="malformed-json", instance=request.url.path)
        return problem(
            422,
            "the request does not match the schema; see `errors`",
            code="validation-failed",
            title="Unprocessable Content",
            instance=request.url.path,
            errors=errors,
        )

    async def database_error(request: Request, exc: Exception) -> ProblemResponse:
        if not is_database_outage(exc):
            log.error("unhandled error", exc_info=exc)
            return internal_error_response()
        # Once per failing request, without a traceback: an outage is an operator's matter, not a bug; asyncpg's
        # own confusion (InternalClientError) keeps its traceback, in case it ever comes from elsewhere.
        internal = isinstance(exc, asyncpg.exceptions.InternalClientError)
        log.warning("database unavailable: %s: %s", type(exc).__name__, exc, exc_info=exc if internal else None)
        return problem(
            503,
            "the database is unavailable; try again in a few seconds",
            code="database-unavailable",
            instance=request.url.path,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    for error_type in DATABASE_ERROR_TYPES:
        app.add_exception_handler(error_type, database_error)
    app.add_exception_handler(BookchatError, bookchat_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
