"""The `bookchat` command line: serve, migrate, ingest, search, ask, eval, users, insights and purge.

Long because every verb is one short command here, sharing the start-up helpers at the top; the work itself lives
in the domain packages (a command only parses options, opens resources and prints).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from bookchat.config import ENV_PREFIX, Settings, SettingsError, load_settings
from bookchat.errors import BookchatError
from bookchat.runtime.database import Database, DatabaseError, EmbeddedPostgres, apply_migrations

# The app's modules (models, the Agents SDK) take seconds to import: commands import what they use, so
# `bookchat serve` hands over to uvicorn fast and `--help` answers at once.
if TYPE_CHECKING:
    from bookchat.documents.ingest_summary import IngestSummary
    from bookchat.retrieval.search import Passage
    from bookchat.runtime.resources import Resources

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
    from bookchat.documents.discovery import IngestError
    from bookchat.retrieval.embeddings import EmbeddingError
    from bookchat.retrieval.store import VectorStoreError

    try:
        return asyncio.run(coroutine)
    except (DatabaseError, VectorStoreError, EmbeddingError, IngestError) as exc:
        fail(str(exc), code=1)
    except BookchatError as exc:
        fail(exc.detail, code=1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.", min=1, max=65535)] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (needs BOOKCHAT_QDRANT_URL above 1).", min=1)] = 1,
    sample: Annotated[bool, typer.Option(help="Ingest the bundled user guide when the collection is empty.")] = True,
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
    try:
        from bookchat.auth.tokens import ensure_jwt_secret

        # Once here, before workers start, so a generated secret is created and announced once.
        try:
            ensure_jwt_secret(settings)
        except (OSError, ValueError) as exc:
            fail(f"BOOKCHAT_JWT_SECRET: none is set and none could be kept in {settings.data_dir}: {exc}", code=1)
        if sample and SAMPLE_BOOK.is_dir():
            os.environ.setdefault(ENV_PREFIX + "SAMPLE_BOOK", str(SAMPLE_BOOK))
        finish_owed_migration(load_settings())
        print_banner(settings, host, port, workers, embedded)
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


def finish_owed_migration(settings: Settings) -> None:
    """Before serving: a local-mode folder moves to the embedded engine here, with its progress bar on the
    terminal, rather than silently in the server's start-up."""
    from bookchat.retrieval.stores.edge_migration import owes_rebuild

    if settings.resolved_vector_store != "edge" or not owes_rebuild(settings.resolved_qdrant_path):
        return

    async def _migrate() -> None:
        async with resources_for(settings):
            pass

    run(_migrate())


def print_banner(settings: Settings, host: str, port: int, workers: int, embedded: EmbeddedPostgres | None) -> None:
    url = f"http://{host}:{port}"
    database = (
        f"embedded PostgreSQL in {embedded.data_dir} (stopped when serve exits)"
        if embedded
        else Database(settings).description
    )
    engine = {"edge": "embedded (qdrant-edge)", "local-legacy": "local mode (legacy)"}.get(settings.vector_store)
    store = settings.qdrant_url or f"{engine} folder {settings.resolved_qdrant_path} (one process)"
    provider = settings.resolved_llm_provider
    llm = "none — extractive answers (set GEMINI_API_KEY for Gemini)" if provider == "none" else provider
    console.print(f"[bold]bookchat[/] on [link={url}]{url}[/link]  ·  API docs {url}/docs  ·  {workers} worker(s)")
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


@asynccontextmanager
async def resources_for(
    settings: Settings, *, check_collection: bool = True, finish_migration: bool = True
) -> AsyncIterator[Resources]:
    """The same resources the server opens, but the rate limiter, for one command; a move to the embedded engine
    that still owes its rebuild is finished first (unless the command rebuilds anyway: `finish_migration`)."""
    from bookchat.runtime.resources import open_resources

    async with AsyncExitStack() as stack:
        resources = await open_resources(settings, stack, check_collection=check_collection, rate_limits=False)
        if finish_migration and resources.store.owed_rebuild is not None:
            from bookchat.documents.terminal import migrate_with_progress

            await migrate_with_progress(resources, errors)
        yield resources


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files of the book.", exists=True)],
    base_url: Annotated[str | None, typer.Option(help="The book's site, prefixed to page URLs.")] = None,
    prune: Annotated[bool, typer.Option(help="Delete documents whose files are gone.")] = False,
    reindex: Annotated[bool, typer.Option(help="Rebuild the collection and re-embed everything.")] = False,
) -> None:
    """Load, chunk, embed and index a book; reruns skip unchanged files."""
    from bookchat.documents.index_migration import describe, legacy_chunks
    from bookchat.documents.ingest import IngestPipeline
    from bookchat.documents.terminal import ingest_progress

    settings = settings_or_exit()

    async def _ingest() -> IngestSummary:
        async with resources_for(settings, check_collection=not reindex, finish_migration=not reindex) as resources:
            pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, settings)
            # `--reindex` on a folder moved from local mode is that move's rebuild, done by hand.
            owed = resources.store.owed_rebuild
            if owed is not None:
                errors.print(describe(owed), style="yellow", highlight=False, soft_wrap=True)
            async with legacy_chunks(pipeline, owed or {}) as carry_from:
                pipeline.carry_from = carry_from
                with ingest_progress(errors) as show:
                    summary = await pipeline.ingest_paths(
                        paths, base_url=base_url, prune=prune, reindex=reindex, progress=show
                    )
            await resources.store.clear_owed_rebuild()
            if await resources.store.optimize():
                errors.print("embedded index optimized", style="dim")
            return summary

    summary = run(_ingest())
    for skipped in summary.skipped:
        errors.print(f"skipped {skipped.source_path}: {skipped.reason}", style="yellow", highlight=False)
    console.print(
        f"{summary.added} added, {summary.updated} updated, {summary.unchanged} unchanged, "
        f"{summary.removed} removed documents; {summary.chunks} chunks written in {summary.seconds:.1f} s"
    )


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    limit: Annotated[int, typer.Option(min=1, max=50, help="Passages to show.")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, dense or bm25.")] = "hybrid",
) -> None:
    """Show the passages hybrid search finds for QUERY, best first."""
    settings = settings_or_exit()
    if mode not in ("hybrid", "dense", "bm25"):
        fail("--mode: expected hybrid, dense or bm25")

    async def _search() -> list[Passage]:
        async with resources_for(settings) as resources:
            return await resources.retriever.search(query, limit=limit, mode=mode)  # type: ignore[arg-type]

    passages = run(_search())
    if not passages:
        console.print("no passages found (is the book ingested? `bookchat ingest PATH`)")
    for rank, passage in enumerate(passages, 1):
        where = " › ".join(passage.heading_path) or passage.title
        console.print(f"[bold]{rank}. {where}[/]  [dim]{passage.score:.3f}  {passage.url or passage.source_path}[/]")
        console.print("   " + " ".join(passage.text.split())[:300], highlight=False)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The reader's question.")],
    selection: Annotated[str | None, typer.Option(help="Answer only from this selected text.")] = None,
) -> None:
    """Answer QUESTION from the book (or from --selection only), streaming, with citations."""
    from bookchat.chat.terminal import ask_in_terminal

    settings = settings_or_exit()

    async def _ask() -> int:
        async with resources_for(settings) as resources:
            return await ask_in_terminal(resources, question, selection=selection)

    raise typer.Exit(run(_ask()))


@app.command("eval")
def evaluate(
    beir: Annotated[Path, typer.Option(help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv.")],
    split: Annotated[str, typer.Option(help="Which qrels to score.")] = "test",
    mode: Annotated[str, typer.Option(help="dense, bm25, hybrid or all.")] = "all",
    output: Annotated[Path | None, typer.Option(help="Write the results as JSON here.")] = None,
) -> None:
    """Score retrieval on a BEIR dataset (nDCG@10, Recall@10/100, MRR@10, latency) in its own collection."""
    from bookchat.retrieval.evaluation import BeirError, render_eval_table, run_beir_eval

    settings = settings_or_exit()
    modes = ("dense", "bm25", "hybrid") if mode == "all" else (mode,)
    if any(name not in ("dense", "bm25", "hybrid") for name in modes):
        fail("--mode: expected dense, bm25, hybrid or all")
    try:
        results = run(
            run_beir_eval(settings, beir, split, modes, output=output, fusion=settings.fusion)  # type: ignore[arg-type]
        )
    except BeirError as exc:
        fail(str(exc))
    console.print(render_eval_table(results))
    if output is not None:
        console.print(f"results written to {output}")


insights = typer.Typer(help="What readers ask and what the book does not answer.", no_args_is_help=True)
app.add_typer(insights, name="insights")


@insights.command("gaps")
def insights_gaps(since: Annotated[str, typer.Option(help="7d, 12h, 2w or a date.")] = "7d") -> None:
    """The content gaps: unanswered questions grouped by meaning, most asked first."""
    from bookchat.insights.terminal import parse_since, read_gaps, render_gaps

    settings = settings_or_exit()
    try:
        start = parse_since(since)
    except BookchatError as exc:
        fail(exc.detail)
    render_gaps(run(read_gaps(settings, start)), start, console)


@app.command()
def purge(days: Annotated[int | None, typer.Option(min=1, help="Default BOOKCHAT_RETENTION_DAYS.")] = None) -> None:
    """Delete conversations older than the retention period: messages, feedback, insights."""
    from bookchat.insights.terminal import purge_now

    settings = settings_or_exit()
    days = days or settings.retention_days
    if days is None:
        fail("no retention period: set BOOKCHAT_RETENTION_DAYS or pass --days")
    done = run(purge_now(settings, days))
    console.print(
        f"older than {days} days: {done.messages} messages, {done.conversations} conversations, "
        f"{done.gaps} gaps deleted"
    )


users = typer.Typer(help="Manage accounts.", no_args_is_help=True)
app.add_typer(users, name="users")


@users.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Login email.")],
    password: Annotated[str, typer.Option(help="12–128 characters.", prompt=True, hide_input=True)],
    admin: Annotated[bool, typer.Option(help="Give the account the admin role.")] = False,
) -> None:
    """Create an account (an admin with --admin)."""
    from bookchat.auth.service import cli_create_user

    settings = settings_or_exit()

    async def _create() -> str:
        async with database_for(settings) as database:
            user = await cli_create_user(database.pool, settings, email=email, password=password, admin=admin)
            return f"created {user.email} ({user.role})"

    console.print(run(_create()))


@users.command("set-role")
def users_set_role(
    email: Annotated[str, typer.Option(help="The account's email.")],
    role: Annotated[str, typer.Option(help="user or admin.")],
) -> None:
    """Change an account's role."""
    from bookchat.auth.service import cli_set_role

    settings = settings_or_exit()
    if role not in ("user", "admin"):
        fail("--role: expected user or admin")

    async def _set_role() -> str:
        async with database_for(settings) as database:
            user = await cli_set_role(database.pool, settings, email=email, role=role)
            return f"{user.email} is now {user.role}"

    console.print(run(_set_role()))


@users.command("disable")
def users_disable(email: Annotated[str, typer.Option(help="The account's email.")]) -> None:
    """Disable an account: it can no longer log in, and every session it has is revoked."""
    set_disabled(email, disabled=True)


@users.command("enable")
def users_enable(email: Annotated[str, typer.Option(help="The account's email.")]) -> None:
    """Enable a disabled account again."""
    set_disabled(email, disabled=False)


def set_disabled(email: str, *, disabled: bool) -> None:
    from bookchat.auth.service import cli_set_disabled

    settings = settings_or_exit()

    async def _set() -> str:
        async with database_for(settings) as database:
            user = await cli_set_disabled(database.pool, settings, email=email, disabled=disabled)
            return f"{user.email} is now {'disabled' if user.disabled else 'enabled'}"

    console.print(run(_set()))


@asynccontextmanager
async def database_for(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def main() -> None:  # pragma: no cover - console-script shim
    sys.exit(app())
