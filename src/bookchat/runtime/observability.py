"""Logging (JSON, secrets redacted), request ids, and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# A client-supplied id is echoed only when it is short and plain, so it cannot smuggle text into logs.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Values that must never reach a log line: bearer tokens, JWTs, API keys, passwords in URLs.
_SECRET_PATTERNS = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "***jwt***"),
    (
        re.compile(r"(?i)((?:api[_-]?key|token|secret|password|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&]+"),
        r"\1***",
    ),
    (re.compile(r"(://[^:/@\s]+:)[^@/\s]+@"), r"\1***@"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"), "***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "***"),
    (re.compile(r"\brt_[A-Za-z0-9_-]{20,}"), "rt_***"),
)


# The configured secrets themselves (admin token, API keys, ...), whatever they look like.
_literal_secrets: set[str] = set()


def redact_values(values: Iterable[str]) -> None:
    """Also redact these exact strings from every log line (short values would redact ordinary words)."""
    _literal_secrets.update(value for value in values if len(value) >= 8)


def redact(text: str) -> str:
    """`text` with anything that looks like a credential replaced by `***`."""
    for secret in _literal_secrets:
        text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """Plain-text lines for a terminal, with the same redaction as the JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Route every logger (uvicorn's included) through one redacting handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_lines else RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # The access log repeats what our request log says, without the request id.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # The openai client sends through httpx2 (a fork of httpx with its own logger names): one INFO line per call.
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "openai.agents", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class QuietErrorsFilter(logging.Filter):
    """Drops the traceback of errors whose message already says everything (configuration errors at start-up)."""

    def __init__(self, exception_types: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.exception_types = exception_types

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.exception_types):
            record.exc_info = None
            record.exc_text = None
        return True


class Metrics:
    """The Prometheus series of one app; a registry per app keeps test instances apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bookchat_http_requests_total",
            "HTTP requests by route template, method and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "bookchat_http_request_duration_seconds",
            "Time to the response headers, by route template.",
            ("method", "route"),
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )


class RequestContextMiddleware:
    """Gives every request an id (`X-Request-ID` in and out), logs one line per request, records metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, error_response: Callable[[], ASGIApp]) -> None:
        self.app = app
        self.metrics = metrics
        self.error_response = error_response
        self.log = logging.getLogger("bookchat.request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
                route = _route_template(scope)
                self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Handled here, inside the request's context, so the 500 and its log line carry the request id.
            self.log.exception("unhandled error", extra={"path": scope["path"]})
            if response_started:
                raise
            await self.error_response()(scope, receive, send_with_id)
        finally:
            route = _route_template(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            request_id_var.reset(token)


def _route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label cardinality), or a fixed label when none matched."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
