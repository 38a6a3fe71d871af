"""Database layer: migrations under an advisory lock, the pool, and the embedded server's lifecycle."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from bookchat.runtime.database import (
    Database,
    DatabaseError,
    EmbeddedPostgres,
    Migration,
    _live_pid,
    _redact_dsn,
    apply_migrations,
    is_database_outage,
    load_migrations,
)
from tests.conftest import traversable_temp_dir


def test_migrations_are_ordered_sql_files() -> None:
    migrations = load_migrations()
    versions = [migration.version for migration in migrations]
    assert versions == sorted(versions)
    assert versions[0] == "001_init"
    assert "CREATE TABLE conversations" in migrations[0].sql


async def test_concurrent_migrations_apply_each_version_once(empty_database: str) -> None:
    connections = [await asyncpg.connect(empty_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(conn) for conn in connections))
        applied = [version for result in results for version in result]
        assert sorted(applied) == [migration.version for migration in load_migrations()]
        rows = await connections[0].fetch("SELECT version FROM schema_migrations")
        assert len(rows) == len(load_migrations())
        tables = {
            row["tablename"]
            for row in await connections[0].fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        expected = {
            "users",
            "refresh_tokens",
            "conversations",
            "messages",
            "documents",
            "feedback",
            "ingest_runs",
        }
        assert expected <= tables
        assert await apply_migrations(connections[0]) == []
    finally:
        for conn in connections:
            await conn.close()


async def test_a_failing_migration_rolls_back_the_whole_batch(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        broken = [
            Migration("900_ok", "CREATE TABLE kept (id int)"),
            Migration("901_broken", "CREATE TABLE half (id int); SELECT no_such_function()"),
        ]
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await apply_migrations(conn, broken)
        # All or nothing: the schema is as it was before the batch, so a fixed rerun starts from a known state.
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
        assert await conn.fetchval("SELECT to_regclass('kept')") is None
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        # The lock went with the transaction: the next attempt is not blocked.
        assert await apply_migrations(conn, broken[:1], lock_timeout=5) == ["900_ok"]
    finally:
        await conn.close()


async def test_users_email_is_unique_without_regard_to_case(database_url: str, app: object) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        email = f"Reader-{uuid.uuid4().hex[:8]}@Example.org"
        await conn.execute("INSERT INTO users (email, password_hash) VALUES ($1, 'x')", email)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO users (email, password_hash) VALUES ($1, 'x')", email.lower())
    finally:
        await conn.close()


async def test_database_reports_an_unreachable_server(make_settings: object) -> None:
    from bookchat.runtime.database import DatabaseError

    settings = make_settings(database_url="postgresql://nobody@127.0.0.1:1/none")  # type: ignore[operator]
    with pytest.raises(DatabaseError, match="cannot connect to PostgreSQL"):
        await Database(settings).open()


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    with traversable_temp_dir() as folder:
        yield folder


async def test_a_failed_open_closes_what_it_opened(
    make_settings: object, empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bookchat.runtime.database

    monkeypatch.setattr(
        bookchat.runtime.database, "load_migrations", lambda: [Migration("999_broken", "SELECT no_such_function()")]
    )
    database = Database(make_settings(database_url=empty_database))  # type: ignore[operator]
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await database.open()
    with pytest.raises(DatabaseError, match="not open"):
        _ = database.pool


def test_embedded_server_is_stopped_by_its_owner_only(pg_dir: Path) -> None:
    tmp_path = pg_dir
    first = EmbeddedPostgres(tmp_path / "postgres")
    url = first.start()
    assert url.startswith("postgresql://")
    assert first.owned
    pid = int((tmp_path / "postgres" / "postmaster.pid").read_text().split()[0])

    second = EmbeddedPostgres(tmp_path / "postgres")
    assert second.start() == url
    assert not second.owned, "a second process shares the server and must not stop it"
    second.stop()
    assert (tmp_path / "postgres" / "postmaster.pid").exists()

    first.stop()
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    assert not (tmp_path / "postgres.owner").exists()
    assert _live_pid(pid) is None, "the server process is gone (or a zombie awaiting its reaper)"


def test_a_server_left_by_a_dead_owner_is_taken_over(pg_dir: Path) -> None:
    tmp_path = pg_dir
    first = EmbeddedPostgres(tmp_path / "postgres")
    first.start()
    # Simulate a killed `serve`: the owner file names a process that no longer exists.
    (tmp_path / "postgres.owner").write_text("999999999\n")
    heir = EmbeddedPostgres(tmp_path / "postgres")
    heir.start()
    assert heir.owned
    heir.stop()
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()


def test_an_empty_migrations_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="no migrations found"):
        load_migrations(tmp_path)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://app:s3cret@db.example.org/book", "postgresql://app:***@db.example.org/book"),
        ("postgresql://app@db.example.org/book", "postgresql://app@db.example.org/book"),
        (
            "postgresql://db.example.org/book?user=app&password=s3cret&sslmode=require",
            "postgresql://db.example.org/book?user=app&password=***&sslmode=require",
        ),
        (
            "postgresql://app:s3cret@h1:5432,h2:5432/book?sslpassword=k3y&PASSWORD=again",
            "postgresql://app:***@h1:5432,h2:5432/book?sslpassword=***&PASSWORD=***",
        ),
        ("postgresql://app:p%40ss@db/book?application_name=x", "postgresql://app:***@db/book?application_name=x"),
        ("postgresql:///book?host=/run/postgresql", "postgresql:///book?host=/run/postgresql"),
    ],
)
def test_redact_dsn_hides_passwords_in_the_credentials_and_the_query(dsn: str, shown: str) -> None:
    assert _redact_dsn(dsn) == shown
    assert "s3cret" not in _redact_dsn(dsn)


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), True),
        (asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"), True),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"), True),
        (asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"), True),
        (
            asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
            True,
        ),
        (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), False),
        (asyncpg.exceptions.UndefinedTableError("relation does not exist"), False),
        (ValueError("a bug"), False),
    ],
)
def test_outages_are_told_from_bugs(error: BaseException, outage: bool) -> None:
    assert is_database_outage(error) is outage
