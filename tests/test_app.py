"""The app shell: problem+json for every error, request ids, body limits, health and readiness, metrics."""

from __future__ import annotations

import inspect
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from bookchat.config import Settings
from bookchat.main import create_app
from tests.conftest import ADMIN_TOKEN, client_for


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=10)
    count: int = 1


@pytest.fixture(scope="module")
async def probe_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    """An app with two extra routes: one that validates a body, one that crashes."""
    app = create_app(make_settings(max_body_bytes=2048))

    @app.post("/test/echo")
    async def echo(body: Echo) -> Echo:
        return body

    @app.get("/test/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def probe(probe_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(probe_app) as http:
        yield http


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= set(body)
    return body  # type: ignore[no-any-return]


async def test_health_does_no_io(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_every_dependency_to_an_admin(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.get("/api/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["failed"] == []
    assert set(body["checks"]) == {"postgres", "qdrant", "llm"}
    assert "extractive" in body["checks"]["llm"]["detail"]
    assert "PostgreSQL" in body["checks"]["postgres"]["detail"]


async def test_ready_tells_anyone_else_only_names_and_ok(client: httpx.AsyncClient, app: FastAPI) -> None:
    settings = app.state.settings
    database = urlsplit(settings.database_url.get_secret_value())
    reader = app.state.token_codec.issue_access(f"user:{uuid.uuid4()}", "user").token
    for headers in ({}, {"Authorization": f"Bearer {reader}"}):
        response = await client.get("/api/ready", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body == {
            "status": "ready",
            "checks": {name: {"ok": True, "detail": "ok"} for name in ("postgres", "qdrant", "llm")},
            "failed": [],
        }
        # The body above is all there is; the user name ("postgres") would be a check's name here.
        # A server over TCP has a host name; the embedded one (no BOOKCHAT_TEST_DATABASE_URL) a socket folder.
        host = database.hostname or parse_qs(database.query).get("host", [""])[0]
        for private in (host, database.path.strip("/"), "extractive"):
            assert private
            assert private not in response.text


async def test_ready_is_503_naming_postgres_when_it_is_gone(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings())
    async with app.router.lifespan_context(app), client_for(app) as http:
        await app.state.resources.database.pool.close()
        with caplog.at_level(logging.WARNING):
            response = await http.get("/api/ready")
            admin = await http.get("/api/ready", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["postgres"]
    assert body["checks"]["postgres"] == {"ok": False, "detail": "unavailable"}
    assert body["checks"]["qdrant"] == {"ok": True, "detail": "ok"}
    assert "Interface" not in response.text
    assert "pool" not in response.text
    # The admin and the log get the reason.
    assert admin.status_code == 503
    assert admin.json()["checks"]["postgres"]["detail"].startswith("InterfaceError")
    assert any(
        "postgres" in record.getMessage() and "InterfaceError" in record.getMessage() for record in caplog.records
    )


async def test_unknown_route_is_404_problem(probe: httpx.AsyncClient) -> None:
    body = assert_problem(await probe.get("/no/such/route"), 404)
    assert body["instance"] == "/no/such/route"


async def test_wrong_method_is_405_problem(probe: httpx.AsyncClient) -> None:
    response = await probe.delete("/api/health")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_malformed_json_is_400_problem(probe: httpx.AsyncClient) -> None:
    response = await probe.post("/test/echo", content=b'{"text": ', headers={"content-type": "application/json"})
    body = assert_problem(response, 400)
    assert body["code"] == "malformed-json"


async def test_wrong_types_are_422_with_field_errors(probe: httpx.AsyncClient) -> None:
    response = await probe.post("/test/echo", json={"text": "x" * 11, "count": "many", "extra": 1})
    body = assert_problem(response, 422)
    locations = {tuple(error["loc"]) for error in body["errors"]}  # type: ignore[attr-defined]
    assert {("body", "text"), ("body", "count"), ("body", "extra")} <= locations
    assert "x" * 11 not in response.text, "the offending input is not echoed back"


async def test_oversized_body_is_413_by_content_length(probe: httpx.AsyncClient) -> None:
    response = await probe.post("/test/echo", content=b"x" * 4096, headers={"content-type": "application/json"})
    assert_problem(response, 413)


async def test_oversized_streamed_body_is_413(probe: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 1024

    response = await probe.post("/test/echo", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(response, 413)


async def test_a_crash_is_500_without_internals_but_with_the_logged_request_id(
    probe: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await probe.get("/test/crash", headers={"X-Request-ID": "trace-123"})
    body = assert_problem(response, 500)
    assert "hunter2" not in response.text
    assert "secret internals" not in response.text
    assert body["request_id"] == "trace-123"
    assert response.headers["x-request-id"] == "trace-123"
    assert any(record.exc_info for record in caplog.records)


async def test_request_id_is_generated_when_missing_or_unsafe(probe: httpx.AsyncClient) -> None:
    generated = (await probe.get("/api/health")).headers["x-request-id"]
    assert len(generated) == 32
    unsafe = (await probe.get("/api/health", headers={"X-Request-ID": "a b\nc"})).headers["x-request-id"]
    assert unsafe != "a b\nc"
    assert len(unsafe) == 32


async def test_openapi_describes_the_service(probe: httpx.AsyncClient) -> None:
    schema = (await probe.get("/openapi.json")).json()
    assert schema["info"]["title"] == "bookchat"
    assert "citations" in schema["info"]["description"]
    assert (await probe.get("/docs")).status_code == 200


async def test_docs_can_be_turned_off(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(docs_enabled=False))
    async with client_for(app) as http:
        assert (await http.get("/docs")).status_code == 404
        assert (await http.get("/openapi.json")).status_code == 404


async def test_metrics_count_requests_by_route(probe: httpx.AsyncClient) -> None:
    await probe.get("/api/health")
    text = (await probe.get("/metrics")).text
    assert 'bookchat_http_requests_total{method="GET",route="/api/health",status="200"}' in text


def test_json_log_lines_redact_secrets(caplog: pytest.LogCaptureFixture) -> None:
    from bookchat.runtime.observability import JsonFormatter

    record = logging.LogRecord("t", logging.INFO, __file__, 1, "Authorization: Bearer abc.def.ghi", (), None)
    record.dsn = "postgresql://user:pw@db/x"
    line = json.loads(JsonFormatter().format(record))
    assert "abc.def.ghi" not in line["message"]
    assert line["dsn"] == "postgresql://user:***@db/x"


def test_configured_secrets_are_redacted_literally() -> None:
    from bookchat.runtime.observability import redact, redact_values

    redact_values(["plain-admin-token-value", "short"])
    assert redact("token plain-admin-token-value used") == "token *** used"
    assert redact("a short word") == "a short word"
    assert redact("refresh rt_abcdefghijklmnopqrstuvwxyz0123") == "refresh rt_***"


def test_the_app_module_does_not_import_the_agents_sdk() -> None:
    """Start-up time: the SDK (over a second to import) loads only where a language model answers."""
    probe = "import sys, bookchat.main, bookchat.cli; print(sorted({'agents', 'openai'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_no_dependency_runs_on_a_worker_thread(make_settings: Callable[..., Settings]) -> None:
    # FastAPI runs a plain `def` dependency on a worker thread: a thread hop per dependency per request.
    app = create_app(make_settings())
    on_threads: set[str] = set()

    def walk(dependant: Dependant) -> None:
        for dependency in dependant.dependencies:
            call = dependency.call
            runs_on_the_loop = inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
                getattr(call, "__call__", None)  # noqa: B004 - security schemes are instances with an async __call__
            )
            if call is not None and not runs_on_the_loop:
                on_threads.add(getattr(call, "__qualname__", repr(call)))
            walk(dependency)

    def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):  # FastAPI keeps included routers whole
                yield from api_routes(route.original_router.routes)

    routes = list(api_routes(app.routes))
    for route in routes:
        walk(route.dependant)
    assert len(routes) > 20
    # On a thread by design: FastAPI's own form class of the password login (once per sign-in), and the docs pages'
    # folder lookup, which touches the disk.
    assert on_threads == {"OAuth2PasswordRequestForm", "get_docs_dir"}
