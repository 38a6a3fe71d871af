"""The `bookchat` command line: serve, migrate, ingest, search, ask, eval and users."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from bookchat.config import ENV_PREFIX, Settings, SettingsError, load_settings
from bookchat.db import Database, DatabaseError, EmbeddedPostgres, apply_migrations

app = typer.Typer(
    name="bookchat",
    help="Answers readers' questions about a book, grounded in its text, with citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

T = TypeVar("T")

SAMPLE_BOOK = Path(__file__).resolve().parents[2] / "docs"


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit: the user gets the reason, not a traceback."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        fail(str(exc))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine`, turning the errors a user can fix into one line."""
    from bookchat.retrieval.store import VectorStoreError

    try:
        return asyncio.run(coroutine)
    except (DatabaseError, VectorStoreError) as exc:
        fail(str(exc), code=1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.", min=1, max=65535)] = None,
    workers: Annotated[
        int, typer.Option(help="Worker processes (needs BOOKCHAT_QDRANT_URL above 1).", min=1)
    ] = 1,
    sample: Annotated[
        bool, typer.Option(help="Ingest the bundled user guide when the collection is empty.")
    ] = True,
) -> None:
    """Run the API server (and, with nothing configured, an embedded PostgreSQL that stops with it)."""
    import uvicorn

    settings = settings_or_exit()
    if workers > 1 and settings.qdrant_url is None:
        fail(
            "--workers above 1 needs a Qdrant server: the local Qdrant folder can be opened by one process "
            "only. Set BOOKCHAT_QDRANT_URL, or run with --workers 1."
        )
    host = host or settings.host
    port = port or settings.port
    embedded: EmbeddedPostgres | None = None
    if settings.database_url is None:
        # The parent owns the embedded server, so every worker shares it and Ctrl-C stops it once.
        embedded = EmbeddedPostgres(settings.postgres_data_dir)
        try:
            os.environ[ENV_PREFIX + "DATABASE_URL"] = embedded.start()
        except Exception as exc:  # pgserver raises bare subprocess errors
            fail(f"could not start the embedded PostgreSQL in {settings.postgres_data_dir}: {exc}", code=1)
    if sample and SAMPLE_BOOK.is_dir():
        os.environ.setdefault(ENV_PREFIX + "SAMPLE_BOOK", str(SAMPLE_BOOK))
    print_banner(settings, host, port, workers, embedded)
    try:
        uvicorn.run(
            "bookchat.main:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            proxy_headers=False,
        )
    finally:
        if embedded is not None and embedded.owned:
            embedded.stop()
            console.print("embedded PostgreSQL stopped", style="dim")


def print_banner(
    settings: Settings, host: str, port: int, workers: int, embedded: EmbeddedPostgres | None
) -> None:
    url = f"http://{host}:{port}"
    database = (
        f"embedded PostgreSQL in {embedded.data_dir} (stopped when serve exits)"
        if embedded
        else Database(settings).description
    )
    store = settings.qdrant_url or f"local folder {settings.resolved_qdrant_path} (one process)"
    provider = settings.resolved_llm_provider
    llm = "none — extractive answers (set GEMINI_API_KEY for Gemini)" if provider == "none" else provider
    console.print(
        f"[bold]bookchat[/] on [link={url}]{url}[/link]  ·  API docs {url}/docs  ·  {workers} worker(s)"
    )
    console.print(f"  database      {database}", highlight=False)
    console.print(f"  vector store  Qdrant {store}, collection {settings.collection!r}", highlight=False)
    console.print(f"  embeddings    {describe_embeddings(settings)}", highlight=False)
    console.print(f"  answers       {llm}", highlight=False)
    console.print(
        f"  first question: curl -s {url}/api/chat -H 'content-type: application/json' "
        f'-H "authorization: Bearer $(curl -s -X POST {url}/api/auth/guest | jq -r .access_token)" '
        '-d \'{"message": "What is bookchat?"}\'',
        highlight=False,
        soft_wrap=True,
    )


def describe_embeddings(settings: Settings) -> str:
    if settings.embedding_provider == "local":
        return str(settings.embedding_model_path or "all-MiniLM-L6-v2 (int8 ONNX, bundled)")
    return f"{settings.embedding_provider} {settings.embedding_model or '(default model)'}"


@app.command()
def migrate() -> None:
    """Apply pending database migrations and exit."""
    settings = settings_or_exit()

    async def _migrate() -> list[str]:
        database = Database(settings)
        await database.open(migrate=False)
        try:
            async with database.pool.acquire() as conn:
                return await apply_migrations(conn)
        finally:
            await database.close()

    applied = run(_migrate())
    console.print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}")


def main() -> None:  # pragma: no cover - console-script shim
    sys.exit(app())
