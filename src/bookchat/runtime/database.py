"""PostgreSQL: the asyncpg pool, the embedded server for laptops, and the SQL migration runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bookchat.config import Settings
from bookchat.runtime.advisory_locks import lock_key, wait_for_xact_lock

log = logging.getLogger(__name__)

# One advisory-lock key for the whole schema, so replicas starting together apply migrations once.
MIGRATION_LOCK_KEY = lock_key("bookchat:migrations")

# Type names other modules use for the pool and for a connection (pooled or not).
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


# What asyncpg raises when PostgreSQL is down, restarting, or dropped the connection (including "the database
# system is shutting down" and "terminating connection due to administrator command").
_OUTAGES = (
    ConnectionError,
    socket.gaierror,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def is_database_outage(error: BaseException) -> bool:
    """True when `error` means PostgreSQL cannot be used right now (a 503 that resolves itself), not a bug."""
    if isinstance(error, _OUTAGES):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        return "connection is closed" in str(error)
    # asyncpg's pool, resetting a connection the server dropped a moment before (during the query, or between
    # the query and the reset), trips over its own protocol state: "cannot switch to state N; another operation
    # is in progress". Seen only with a server going away; the handler logs its traceback all the same.
    return isinstance(error, asyncpg.exceptions.InternalClientError) and "another operation" in str(error)


class DatabaseError(RuntimeError):
    """PostgreSQL could not be reached or prepared; the message says what to check."""


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str


def migrations_dir() -> Path:
    """The SQL migrations: `migrations/` of a source checkout, or the copy packaged inside the wheel."""
    source_tree = Path(__file__).resolve().parents[3] / "migrations"
    if source_tree.is_dir():
        return source_tree
    return Path(str(resources.files("bookchat") / "migrations"))


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Every `NNN_name.sql` file, in version order."""
    folder = directory or migrations_dir()
    found = [Migration(path.stem, path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.sql"))]
    if not found:
        # An empty list would "migrate" nothing and every query would then fail on a missing table.
        raise DatabaseError(f"no migrations found in {folder}: the installation is incomplete")
    return found


async def apply_migrations(
    conn: Connection, migrations: list[Migration] | None = None, *, lock_timeout: float | None = None
) -> list[str]:
    """Apply pending migrations in one transaction that holds the migrations' advisory lock.

    The lock is transaction-scoped, so it holds through a transaction-mode pooler (Neon's pooled URL) and is
    released however the process ends; a replica that waited for it finds the work done and applies none.
    Each migration runs in a savepoint of its own, so a failing one names itself and none of it is kept.
    Returns the versions applied by this call.
    """
    pending = migrations if migrations is not None else load_migrations()
    async with conn.transaction():
        await wait_for_xact_lock(conn, MIGRATION_LOCK_KEY, what="the migrations lock", wait_seconds=lock_timeout)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        applied: list[str] = []
        for migration in pending:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", migration.version)
            applied.append(migration.version)
    for version in applied:
        log.info("migration applied", extra={"version": version})
    return applied


class EmbeddedPostgres:
    """The `pgserver` PostgreSQL under `DATA_DIR/postgres`, stopped again by the process that owns it.

    pgserver reuses a server left running by a killed process but then never stops it. We keep the owner's
    pid beside the data: a process that starts the server, or finds one whose owner is dead, becomes the
    owner and stops it on `stop()`, so `bookchat serve` leaves no PostgreSQL behind, even after a crash.
    A second process (say `bookchat ingest` beside a running `serve`) shares the server and leaves it be.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.owner_file = self.data_dir.parent / "postgres.owner"
        self.owned = False

    def start(self) -> str:
        """Start (or reuse) the server and return its URL. Blocking: call it in a thread."""
        try:
            # pgserver asks platformdirs for a runtime folder at import; its warning about a missing
            # XDG_RUNTIME_DIR (normal on servers and in containers) would greet every `make serve`.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pgserver
        except ImportError as exc:  # pragma: no cover - only on Python >= 3.13
            raise DatabaseError(
                "BOOKCHAT_DATABASE_URL is not set and the embedded PostgreSQL (pgserver) is not installed "
                "for this Python; set BOOKCHAT_DATABASE_URL to a PostgreSQL server."
            ) from exc
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        running = _live_pid(_first_line(self.data_dir / "postmaster.pid")) is not None
        owner_alive = _live_pid(_first_line(self.owner_file)) is not None
        server = pgserver.get_server(self.data_dir, cleanup_mode=None)  # type: ignore[attr-defined]
        if not running or not owner_alive:
            self.owner_file.write_text(f"{os.getpid()}\n")
            self.owned = True
        return str(server.get_uri())

    def stop(self) -> None:
        """Stop the server if this process owns it (PostgreSQL's fast shutdown), waiting up to 10 s."""
        if not self.owned:
            return
        self.owned = False
        self.owner_file.unlink(missing_ok=True)
        pid = _live_pid(_first_line(self.data_dir / "postmaster.pid"))
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _live_pid(pid) is None:
                return
            time.sleep(0.05)
        log.warning("embedded PostgreSQL did not stop within 10 s", extra={"pid": pid})


def _first_line(path: Path) -> int | None:
    try:
        return int(path.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _live_pid(pid: int | None) -> int | None:
    """`pid` if such a process is alive (zombies count as gone), else None."""
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None
    except (OSError, IndexError):
        pass
    return pid


async def create_pool(dsn: str, settings: Settings) -> Pool:
    """An asyncpg pool sized and tuned by `settings`; TLS options come from the URL (`sslmode=require`).

    One connection is opened at once even when the pool's minimum is 0, so a wrong URL fails here, clearly.
    """
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            command_timeout=settings.db_command_timeout,
            statement_cache_size=settings.db_statement_cache_size,
            timeout=10,
        )
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL ({type(exc).__name__}: {exc})") from exc
    return pool


class Database:
    """The pool plus, on a laptop, the embedded server behind it. Opened once per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self._pool: Pool | None = None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise DatabaseError("database is not open")
        return self._pool

    @property
    def description(self) -> str:
        if self.embedded is not None:
            return f"embedded PostgreSQL ({self.embedded.data_dir})"
        return "PostgreSQL " + _redact_dsn(self.dsn_or_none() or "")

    def dsn_or_none(self) -> str | None:
        url = self.settings.database_url
        return url.get_secret_value() if url is not None else None

    async def open(self, *, migrate: bool = True) -> None:
        """Start the embedded server if needed, open the pool, migrate; on failure close what was opened."""
        try:
            dsn = self.dsn_or_none()
            if dsn is None:
                self.embedded = EmbeddedPostgres(self.settings.postgres_data_dir)
                dsn = await asyncio.to_thread(self.embedded.start)
            self._pool = await create_pool(dsn, self.settings)
            if migrate:
                async with self._pool.acquire() as conn:
                    await apply_migrations(conn)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)

    async def ping(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")


# Query parameters libpq and asyncpg read a secret from (`?password=...`, `?sslpassword=...`).
_SECRET_QUERY_KEYS = ("password", "secret", "token")


def _redact_dsn(dsn: str) -> str:
    """The URL without its passwords (`user:pass@` and `?password=`), for logs, the banner and /api/ready."""
    if "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    rest, question, query = rest.partition("?")
    if "@" in rest:
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        rest = f"{user}:***@{host}" if ":" in credentials else f"{user}@{host}"
    if question:
        query = "&".join(_redact_parameter(part) for part in query.split("&"))
    return f"{scheme}://{rest}{question}{query}"


def _redact_parameter(part: str) -> str:
    key, equals, _ = part.partition("=")
    if equals and any(word in key.lower() for word in _SECRET_QUERY_KEYS):
        return f"{key}=***"
    return part
