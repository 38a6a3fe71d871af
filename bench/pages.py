"""Pages benchmark: time to the first streamed section and to the whole chapter of POST /api/pages/translate.

The shared textbook's longest chapter is translated by the fake OpenAI-compatible model answering at a realistic
pace (~50 tokens/s, a token being four characters), three ways, each measured in the same run:

* baseline — one bare streamed model call for the whole chapter (what a plain "translate this page" button does:
  no sections, no cache); its "first section" is its first token;
* bookchat uncached — sections rewritten with BOOKCHAT_PAGES_CONCURRENCY=1 and with the default (4), streamed
  in order; the cache is emptied before every run;
* bookchat cached — the same request again: every section from PostgreSQL, no model call.

    .venv/bin/python bench/pages.py                 # PostgreSQL from BOOKCHAT_TEST_DATABASE_URL, or embedded
    .venv/bin/python bench/pages.py --repeats 3 --tokens-per-second 50

Columns: first text (the first streamed words: a `delta`, or a cached section), first section (the first final
`section` event, often the chapter's title alone), first prose (the first final section with text under its
heading) and the whole chapter (`done`). Writes bench/results/pages-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fake model and the live server of the test suite

from tests.fakes.llm_server import FakeLLMServer  # noqa: E402
from tests.pages.fakes import paced  # noqa: E402
from tests.web.live_server import LiveServer  # noqa: E402

from bookchat.config import Settings, load_settings  # noqa: E402
from bookchat.documents.ingest import IngestPipeline  # noqa: E402
from bookchat.main import create_app  # noqa: E402
from bookchat.retrieval.evaluation import machine_description  # noqa: E402
from record import results_path, write_results  # noqa: E402

BOOK = ROOT.parent / "shared" / "data" / "book-physical-ai-amnarehmani"
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"  # noqa: S105 - a throw-away test secret
PASSWORD = "plum-ferry-quartz-lantern"  # noqa: S105


def longest_chapter() -> Path:
    return max(sorted(BOOK.rglob("*.md*")), key=lambda path: path.stat().st_size)


@contextmanager
def bench_database() -> Iterator[str | None]:
    """A throw-away database on BOOKCHAT_TEST_DATABASE_URL's server, or None (embedded PostgreSQL)."""
    server = os.environ.get("BOOKCHAT_BENCH_DATABASE_URL") or os.environ.get("BOOKCHAT_TEST_DATABASE_URL")
    if not server:
        yield None
        return
    import asyncpg

    name = f"bookchat_bench_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(server)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def settings_for(folder: Path, database_url: str | None, llm: FakeLLMServer, concurrency: int) -> Settings:
    values: dict[str, Any] = {
        "data_dir": folder,
        "collection": f"bench_pages_{concurrency}",
        "llm_provider": "openai",
        "llm_base_url": llm.base_url,
        "llm_model": "fake-model",
        "BOOKCHAT_LLM_API_KEY": "bench-key",
        "llm_timeout": 300.0,
        "jwt_secret": JWT_SECRET,
        "rate_limit_enabled": False,
        "pages_concurrency": concurrency,
        "log_level": "WARNING",
        "log_json": False,
        "_env_file": None,
    }
    if database_url:
        values["database_url"] = database_url
    return load_settings(**values)


@contextmanager
def serving(settings: Settings, chapter: Path) -> Iterator[tuple[str, str]]:
    """bookchat on a loopback port with the chapter ingested; yields (base URL, the chapter's source path)."""
    app = create_app(settings)
    source_path = chapter.relative_to(BOOK).as_posix()
    data = chapter.read_bytes()
    app_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running: Any) -> AsyncIterator[Any]:
        async with app_lifespan(running) as state:
            resources = running.state.resources
            pipeline = IngestPipeline(resources.database.pool, resources.retriever, resources.embedder, settings)
            await pipeline.ingest_document(source_path, data)
            yield state

    app.router.lifespan_context = lifespan
    with LiveServer(app) as server:
        yield server.url, source_path


async def reader_token(http: httpx.AsyncClient) -> str:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.org"
    (await http.post("/api/auth/register", json={"email": email, "password": PASSWORD})).raise_for_status()
    login = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    login.raise_for_status()
    token: str = login.json()["access_token"]
    return token


async def timed_translation(http: httpx.AsyncClient, token: str, page: str) -> dict[str, Any]:
    """Seconds to the first `section` event and to `done`, and what `done` reported."""
    started = time.perf_counter()
    first: float | None = None
    first_delta: float | None = None
    first_paragraph: float | None = None
    done: dict[str, Any] = {}
    sections = 0
    event = ""
    async with http.stream(
        "POST",
        "/api/pages/translate",
        json={"page": page, "language": "ur", "stream": True},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "delta" and first_delta is None:
                    first_delta = time.perf_counter() - started
                if event == "section":
                    sections += 1
                    now = time.perf_counter() - started
                    first = first if first is not None else now
                    # A section with prose under its heading, not only a title line.
                    markdown = json.loads(line[6:])["markdown"]
                    if first_paragraph is None and sum(1 for row in markdown.split("\n") if row.strip()) > 1:
                        first_paragraph = now
                elif event == "done":
                    done = json.loads(line[6:])
                elif event == "error":
                    raise RuntimeError(line)
    return {
        "first_s": first,
        "first_paragraph_s": first_paragraph,
        # Streamed text shows before its section is final; a cached chapter sends no deltas (its sections at once).
        "first_text_s": first_delta if first_delta is not None else first,
        "total_s": time.perf_counter() - started,
        "sections": sections,
        "done": done,
    }


async def timed_bare_call(llm: FakeLLMServer, chapter: str) -> dict[str, Any]:
    """The baseline: the whole chapter in one streamed call (the same fake model and pace)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=llm.base_url, api_key="bench-key", max_retries=0, timeout=600)
    started = time.perf_counter()
    first: float | None = None
    try:
        stream = await client.chat.completions.create(
            model="fake-model",
            stream=True,
            messages=[
                {"role": "system", "content": "You translate one section of a technical textbook into Urdu."},
                {"role": "user", "content": f"<section>\n{chapter}\n</section>"},
            ],
        )
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
    finally:
        await client.close()
    return {
        "first_s": first,
        "first_paragraph_s": first,
        "first_text_s": first,
        "total_s": time.perf_counter() - started,
        "sections": 1,
    }


async def empty_cache(database_url: str | None, settings: Settings) -> None:
    import asyncpg

    connection = await asyncpg.connect(database_url or settings.database_url.get_secret_value())  # type: ignore[union-attr]
    try:
        await connection.execute("DELETE FROM page_sections")
    finally:
        await connection.close()


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "first_s_median": statistics.median(run["first_s"] for run in runs),
        "first_paragraph_s_median": statistics.median(run["first_paragraph_s"] for run in runs),
        "first_text_s_median": statistics.median(run["first_text_s"] for run in runs),
        "total_s_median": statistics.median(run["total_s"] for run in runs),
        "sections": runs[0]["sections"],
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=2, help="Runs per uncached configuration (cached: 5x).")
    parser.add_argument("--tokens-per-second", type=float, default=50.0, help="The fake model's pace.")
    args = parser.parse_args()
    chapter = longest_chapter()
    text = chapter.read_text(encoding="utf-8")
    results: dict[str, Any] = {
        "chapter": chapter.relative_to(BOOK).as_posix(),
        "chapter_chars": len(text),
        "tokens_per_second": args.tokens_per_second,
        "machine": {**machine_description(), "platform": platform.platform()},
        "configurations": {},
    }
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="bookchat-bench-") as folder,
        bench_database() as database_url,
        FakeLLMServer(default=paced(args.tokens_per_second)) as llm,
    ):
        baseline = [asyncio.run(timed_bare_call(llm, text)) for _ in range(args.repeats)]
        results["configurations"]["baseline: one bare call"] = summary(baseline)
        for concurrency in (1, 4):
            settings = settings_for(Path(folder) / f"c{concurrency}", database_url, llm, concurrency)
            with serving(settings, chapter) as (url, page):

                async def measure(url: str = url, page: str = page, settings: Settings = settings) -> dict[str, Any]:
                    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
                        token = await reader_token(http)
                        uncached = []
                        for _ in range(args.repeats):
                            await empty_cache(database_url, settings)
                            uncached.append(await timed_translation(http, token, page))
                        cached = [await timed_translation(http, token, page) for _ in range(5)]
                        return {"uncached": uncached, "cached": cached}

                measured = asyncio.run(measure())
            results["configurations"][f"bookchat uncached, concurrency {concurrency}"] = summary(measured["uncached"])
            if concurrency == 4:
                results["configurations"]["bookchat cached"] = summary(measured["cached"])
    for name, figures in results["configurations"].items():
        rows.append(
            (
                name,
                figures["sections"],
                figures["first_text_s_median"],
                figures["first_s_median"],
                figures["first_paragraph_s_median"],
                figures["total_s_median"],
            )
        )
    print(f"chapter {results['chapter']} ({len(text)} characters), fake model at {args.tokens_per_second:g} tokens/s")
    header = ("configuration", "sections", "first text", "first section", "first prose", "whole chapter")
    print(f"{header[0]:<36} {header[1]:>8} {header[2]:>12} {header[3]:>14} {header[4]:>12} {header[5]:>14}")
    for name, sections, text_at, first, prose, total in rows:
        print(f"{name:<36} {sections:>8} {text_at:>10.3f} s {first:>12.3f} s {prose:>10.3f} s {total:>12.3f} s")
    path = write_results(results, results_path("pages"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
