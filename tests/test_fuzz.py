"""Schemathesis over the whole OpenAPI schema, as a user and as an admin: no 5xx, responses match the schema."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from bookchat.config import Settings
from tests.auth.helpers import PASSWORD, build_app

# Examples per operation and generation mode. The default keeps `make test` near a minute on two cores;
# BOOKCHAT_FUZZ_EXAMPLES=500 is a proper hunt (see docs/security.md).
EXAMPLES = int(os.environ.get("BOOKCHAT_FUZZ_EXAMPLES", "20"))
CHECKS = [not_a_server_error, response_schema_conformance]


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run the app under uvicorn in a thread (its own event loop, its own lifespan) on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", proxy_headers=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fuzz server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _promote(database_url: str, email: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE users SET role = 'admin' WHERE email = $1", email)
        finally:
            await conn.close()

    # A thread of its own: asyncio.run must not touch the test session's event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="module")
def fuzz_server(make_settings: Callable[..., Settings], database_url: str) -> Iterator[dict[str, Any]]:
    settings_ = make_settings(rate_limit_enabled=False, collection=f"fuzz_{uuid.uuid4().hex[:8]}")
    with serve(build_app(settings_)) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        tokens: dict[str, str] = {}
        for role in ("user", "admin"):
            email = f"fuzz-{role}-{uuid.uuid4().hex[:8]}@example.org"
            assert http.post("/api/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
            if role == "admin":
                _promote(database_url, email)
            login = http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            tokens[role] = login.json()["access_token"]
        yield {"base_url": base_url, "schema": http.get("/openapi.json").json(), "tokens": tokens}


def fuzz_operation(operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        # The generated case may carry its own (fuzzed) Authorization; ours must win to reach the handler.
        case.headers = {**(case.headers or {}), **headers}
        response = case.call(base_url=base_url, timeout=60)
        if response.status_code == 503 and '"code":"llm-required"' in response.text:
            # The designed answer of the pages without a language model (this server has none): not a crash.
            return
        case.validate_response(response, checks=CHECKS)

    check()


@pytest.mark.parametrize("role", ["user", "admin"])
def test_fuzz_whole_api(fuzz_server: dict[str, Any], role: str) -> None:
    schema = schemathesis.openapi.from_dict(fuzz_server["schema"])
    headers = {"Authorization": f"Bearer {fuzz_server['tokens'][role]}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema should fail loudly here
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz_operation(operation, mode, fuzz_server["base_url"], headers)
            except Unsatisfiable:
                # No parameters and no body: there is nothing to make invalid.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:2000]}")
    assert operations >= 10
    assert not failures, "\n\n".join(failures)
