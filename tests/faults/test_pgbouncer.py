"""Through PgBouncer in transaction mode (as Neon's pooled URL): replicas migrating together, concurrent uploads and
chat all work, and no advisory lock outlives its work."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from bookchat.config import Settings
from bookchat.runtime.database import load_migrations
from tests.chat.fixtures import chat_app_for, reader_on
from tests.conftest import ADMIN_TOKEN, client_for
from tests.faults.services import PgBouncer


@pytest.fixture(scope="module")
def pgbouncer(postgres_server_url: str) -> Iterator[PgBouncer]:
    parts = urlsplit(postgres_server_url)
    # The embedded test server listens on a socket only: PgBouncer reaches it there.
    host = parts.hostname or parse_qs(parts.query).get("host", ["/tmp"])[0]
    bouncer = PgBouncer(host, parts.port or 5432)
    try:
        yield bouncer
    finally:
        bouncer.close()


async def advisory_locks_held(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
        )
        return count
    finally:
        await conn.close()


async def test_two_replicas_migrate_together_through_the_pooler(pgbouncer: PgBouncer, empty_database: str) -> None:
    env = {
        **os.environ,
        "BOOKCHAT_DATABASE_URL": pgbouncer.url_for(empty_database),
        "BOOKCHAT_DB_STATEMENT_CACHE_SIZE": "0",
    }
    replicas = [
        subprocess.Popen(
            [sys.executable, "-m", "bookchat", "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = [(process.wait(120), process.stdout.read().decode() if process.stdout else "") for process in replicas]
    assert [code for code, _ in outputs] == [0, 0], outputs
    applied = sorted(line for _, output in outputs for line in output.splitlines() if "applied" in line)
    # One replica applied every migration, the other found them done.
    assert sum("applied 0 migration" in line for line in applied) == 1, applied
    conn = await asyncpg.connect(empty_database)
    try:
        versions = [row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        await conn.close()
    assert versions == [migration.version for migration in load_migrations()]
    assert await advisory_locks_held(empty_database) == 0


async def test_concurrent_uploads_and_chat_through_the_pooler(
    pgbouncer: PgBouncer, database_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        database_url=pgbouncer.url_for(database_url),
        db_statement_cache_size=0,
        llm_provider="none",
        search_limit=3,
        collection=f"bouncer_{uuid.uuid4().hex[:8]}",
    )
    async with chat_app_for(settings) as app, client_for(app, Authorization=f"Bearer {ADMIN_TOKEN}") as admin:

        async def upload(number: int) -> Any:
            body = {"source_path": f"pooled/page-{number}.md", "content": f"# Page {number}\n\nPooled text {number}."}
            return await admin.post("/api/documents", json=body)

        responses = await asyncio.gather(*(upload(number) for number in range(6)))
        assert [response.status_code for response in responses] == [201] * 6, [r.text for r in responses]
        listed = (await admin.get("/api/documents", params={"prefix": "pooled"})).json()["items"]
        assert len(listed) == 6
        async with reader_on(app) as reader:
            answers = await asyncio.gather(
                *(
                    reader.http.post("/api/chat", json={"message": f"How does Gazebo simulate a lidar? ({i})"})
                    for i in range(4)
                )
            )
            assert [answer.status_code for answer in answers] == [200] * 4
            conversation = answers[0].json()["conversation_id"]
            history = await reader.http.get(f"/api/conversations/{conversation}")
            assert len(history.json()["messages"]) == 2
        assert (await admin.post("/api/documents/reindex")).status_code == 200
    # Every lock went with its transaction: none is left on a pooled server session.
    assert await advisory_locks_held(database_url) == 0
