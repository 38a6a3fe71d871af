"""Insights benchmark: the summary and the content gaps over 100,000 stored synthetic questions.

    BOOKCHAT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        PYTHONPATH=src .venv/bin/python bench/insights.py [--questions 100000] [--unanswered 0.5] [--requests 40]

Builds questions from the development sets (bench/data/*.jsonl) with variations a reader would make (greetings,
trailing words, case, a dropped letter), spreads them over 90 days of conversations (four turns each), with
ratings and citations, and copies them into a throw-away database. Unanswered ones are then grouped into gaps the
way `bookchat insights gaps` does, and timed; then `GET /api/insights/gaps` (nothing left to
group: the steady state; and with 20 new unanswered questions per request), `GET /api/insights/summary` (day and
week) and the CSV export are timed through the app (httpx's ASGI transport, no network), against
`GET /api/health` in the same run as the baseline cost of a request. Also times, once, the alternative the app
does not take: grouping every unanswered question on each request. Results go to bench/results/insights-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bookchat.config import Settings
from bookchat.insights.gap_repository import GapVectors
from bookchat.insights.gaps import GapIndexer, assign, embed_questions, vector_cache
from bookchat.main import create_app
from bookchat.retrieval.evaluation import machine_description, percentile
from record import results_path, write_results

DATA = Path(__file__).resolve().parent / "data"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"  # noqa: S105
DAYS = 90
BACKFILL_BATCH = 4096
TURNS_PER_CONVERSATION = 4
PREFIXES = ["", "", "", "Hi! ", "Quick question: ", "Please tell me: ", "hey, ", "Sorry if this is obvious, "]
SUFFIXES = ["", "", "", " Thanks!", " thanks", " Any idea?", " (asking for a class)", "??"]
SECTIONS = [
    {
        "title": f"Section {n}",
        "url": f"https://book.example.org/docs/module-{n % 4}/page-{n}",
        "heading_path": [f"Module {n % 4}", f"Page {n}"],
    }
    for n in range(60)
]


def lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def base_questions() -> tuple[list[str], list[str]]:
    covered = [row["question"] for row in lines("covered.jsonl")]
    covered += [row["second_standalone"] for row in lines("followups.jsonl")]
    uncovered = [row["question"] for row in lines("uncovered.jsonl")]
    uncovered += [row["b"] for row in lines("paraphrases.jsonl") if row["of"].startswith("un-")]
    return covered, uncovered


def vary(question: str, rng: random.Random) -> str:
    text = rng.choice(PREFIXES) + question + rng.choice(SUFFIXES)
    roll = rng.random()
    if roll < 0.15:
        text = text.lower()
    elif roll < 0.20 and len(text) > 12:
        cut = rng.randrange(4, len(text) - 4)
        text = text[:cut] + text[cut + 1 :]  # a typo
    return text


def citations(rng: random.Random) -> str:
    chosen = rng.sample(SECTIONS[: rng.choice([8, 20, 60])], rng.randrange(1, 4))
    return json.dumps(
        [
            {**section, "index": i + 1, "document_id": None, "chunk_id": None, "snippet": "…", "score": 0.5}
            for i, section in enumerate(chosen)
        ]
    )


async def populate(url: str, questions: int, unanswered_share: float, seed: int = 15) -> dict[str, int]:
    """Conversations, messages and feedback by COPY: the rows the app would have written."""
    rng = random.Random(seed)
    covered, uncovered = base_questions()
    now = datetime.now(UTC)
    conversations, messages, feedback = [], [], []
    for _ in range(questions // TURNS_PER_CONVERSATION):
        conversation = uuid.uuid4()
        owner = f"guest:{uuid.uuid4()}"
        start = now - timedelta(seconds=rng.uniform(60, DAYS * 86_400))
        conversations.append((conversation, owner, "bench", start, start))
        for turn in range(TURNS_PER_CONVERSATION):
            at = start + timedelta(minutes=2 * turn)
            answered = rng.random() >= unanswered_share
            question = vary(rng.choice(covered if answered else uncovered), rng)
            answer = uuid.uuid4()
            mode = rng.choices(["retrieval", "selection", "extractive"], weights=[8, 1, 1])[0]
            messages.append(
                (uuid.uuid4(), conversation, "user", question, None, None, "[]", None, None, None, "ok", at, None)
            )
            messages.append(
                (
                    answer,
                    conversation,
                    "assistant",
                    "An answer." if answered else "The book does not cover this.",
                    mode,
                    rng.randrange(300, 6000),
                    citations(rng) if answered else "[]",
                    rng.randrange(80, 1500),
                    answered,
                    None,
                    "ok",
                    at + timedelta(microseconds=1),
                    None,
                )
            )
            if rng.random() < 0.15:
                feedback.append((uuid.uuid4(), answer, owner, rng.choice(["up", "up", "down"]), None))
    columns = [
        "id",
        "conversation_id",
        "role",
        "content",
        "mode",
        "latency_ms",
        "citations",
        "first_token_ms",
        "answered",
        "error_code",
        "status",
        "created_at",
        "search_query",
    ]
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "conversations", records=conversations, columns=["id", "owner_id", "title", "created_at", "updated_at"]
        )
        # COPY of jsonb needs text input: the citations column is copied through a staging table.
        await conn.execute(
            "CREATE TEMP TABLE staging (id uuid, conversation_id uuid, role text, content text, mode text,"
            " latency_ms int, citations text, first_token_ms int, answered boolean, error_code text, status text,"
            " created_at timestamptz, search_query text)"
        )
        await conn.copy_records_to_table("staging", records=messages, columns=columns)
        await conn.execute(
            f"INSERT INTO messages ({', '.join(columns)}) SELECT id, conversation_id, role, content, mode, latency_ms,"  # noqa: S608
            " citations::jsonb, first_token_ms, answered, error_code, status, created_at, search_query FROM staging"
        )
        await conn.copy_records_to_table(
            "feedback", records=feedback, columns=["id", "message_id", "owner_id", "rating", "comment"]
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return {
        "questions": len(messages) // 2,
        "unanswered": sum(1 for row in messages if row[2] == "assistant" and row[8] is False),
        "conversations": len(conversations),
        "feedback": len(feedback),
        "distinct_phrasings": len({row[3] for row in messages if row[2] == "user"}),
    }


async def timed(
    http: httpx.AsyncClient, path: str, requests: int, params: dict[str, str] | None = None
) -> dict[str, float]:
    await http.get(path, params=params)  # warm: statement cache, buffers
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await http.get(path, params=params)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return {
        "p50_ms": round(percentile(samples, 50), 1),
        "p95_ms": round(percentile(samples, 95), 1),
        "requests": requests,
    }


async def add_unanswered(url: str, count: int, rng: random.Random) -> None:
    _, uncovered = base_questions()
    conn = await asyncpg.connect(url)
    try:
        conversation = await conn.fetchval(
            "INSERT INTO conversations (owner_id, title) VALUES ('guest:bench', 'new') RETURNING id"
        )
        for _ in range(count):
            await conn.execute(
                "INSERT INTO messages (conversation_id, role, content) VALUES ($1, 'user', $2)",
                conversation,
                vary(rng.choice(uncovered), rng),
            )
            await conn.execute(
                "INSERT INTO messages (conversation_id, role, content, mode, answered, latency_ms)"
                " VALUES ($1, 'assistant', 'no', 'retrieval', false, 500)",
                conversation,
            )
    finally:
        await conn.close()


async def regroup_everything(url: str, embedder: Any, threshold: float) -> dict[str, float]:
    """The alternative: read every unanswered question and cluster them all, as one request would."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        rows = await conn.fetch(
            "SELECT u.content FROM messages m JOIN messages u ON u.conversation_id = m.conversation_id"
            " AND u.role = 'user' AND u.created_at = m.created_at - interval '1 microsecond'"
            " WHERE m.role = 'assistant' AND m.answered = false"
        )
        read = time.perf_counter() - started
        vectors = await embed_questions(embedder, [row["content"] for row in rows], vector_cache())
        embedded = time.perf_counter() - started - read
        result = assign(vectors, GapVectors([], np.zeros((0, embedder.dim), np.float32), []), threshold)
        total = time.perf_counter() - started
    finally:
        await conn.close()
    return {
        "questions": len(rows),
        "gaps": len(result.members),
        "read_s": round(read, 2),
        "embed_s_cached": round(embedded, 2),
        "total_s": round(total, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    server = os.environ.get("BOOKCHAT_BENCH_DATABASE_URL") or os.environ.get("BOOKCHAT_TEST_DATABASE_URL")
    if not server:
        raise SystemExit("set BOOKCHAT_TEST_DATABASE_URL (a PostgreSQL server the benchmark may create a database on)")
    name = f"bookchat_bench_insights_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = server.rsplit("/", 1)[0] + "/" + name
    results: dict[str, Any] = {"machine": machine_description(), "settings": vars(args)}
    try:
        with tempfile.TemporaryDirectory(prefix="bookchat-bench-") as folder:
            settings = Settings(  # type: ignore[call-arg]
                data_dir=Path(folder),
                database_url=url,
                llm_provider="none",
                admin_token=ADMIN_TOKEN,
                jwt_secret="bench-jwt-secret-0123456789abcdef0123456789",  # noqa: S106
                log_json=False,
                log_level="WARNING",
                rate_limit_enabled=False,
                _env_file=None,
            )
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                started = time.perf_counter()
                results["data"] = await populate(url, args.questions, args.unanswered)
                results["data"]["populate_s"] = round(time.perf_counter() - started, 1)
                resources = app.state.resources
                transport = httpx.ASGITransport(app=app)
                headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://bench", headers=headers, timeout=600
                ) as http:
                    everything = {"from": (datetime.now(UTC) - timedelta(days=DAYS + 1)).isoformat()}
                    # The backlog (every question arrived at once) is grouped as `bookchat insights gaps` does it;
                    # requests then find it done, as they do when questions arrive at readers' pace.
                    indexer = GapIndexer(
                        resources.database.pool,
                        resources.embedder,
                        threshold=settings.insights_gap_threshold,
                        batch=BACKFILL_BATCH,
                    )
                    started = time.perf_counter()
                    batches = 1
                    while not (await indexer.assign_pending()).complete:
                        batches += 1
                    backfill = time.perf_counter() - started
                    # The summary's first request folds 90 closed days into the rollup, once.
                    started = time.perf_counter()
                    await http.get("/api/insights/summary", params=everything)
                    first_summary = time.perf_counter() - started
                    gaps = await resources.database.pool.fetchval("SELECT count(*) FROM insight_gaps")
                    results["backfill"] = {
                        "batches": batches,
                        "batch": BACKFILL_BATCH,
                        "first_summary_s": round(first_summary, 2),
                        "seconds": round(backfill, 1),
                        "questions_per_s": round(results["data"]["unanswered"] / backfill),
                        "gaps": gaps,
                    }
                    n = args.requests
                    timings = {
                        "health (baseline)": await timed(http, "/api/health", n),
                        "gaps, 90 days, 20 per page": await timed(http, "/api/insights/gaps", n, everything),
                        "gaps, last 30 days": await timed(http, "/api/insights/gaps", n),
                        "summary, 90 days by day": await timed(http, "/api/insights/summary", n, everything),
                        "summary, 90 days by week": await timed(
                            http, "/api/insights/summary", n, {**everything, "interval": "week"}
                        ),
                        "summary, last 30 days": await timed(http, "/api/insights/summary", n),
                        "feedback, rating=down": await timed(http, "/api/insights/feedback", n),
                    }
                    rng = random.Random(7)
                    samples = []
                    for _ in range(max(5, n // 4)):
                        await add_unanswered(url, 20, rng)
                        begun = time.perf_counter()
                        assert (await http.get("/api/insights/gaps", params=everything)).status_code == 200
                        samples.append((time.perf_counter() - begun) * 1000)
                    timings["gaps, 20 new questions to group first"] = {
                        "p50_ms": round(percentile(samples, 50), 1),
                        "p95_ms": round(percentile(samples, 95), 1),
                        "requests": len(samples),
                    }
                    begun = time.perf_counter()
                    export = await http.get("/api/insights/questions.csv", params=everything)
                    rows = export.text.count("\n") - 1
                    results["export"] = {
                        "rows": rows,
                        "seconds": round(time.perf_counter() - begun, 2),
                        "megabytes": round(len(export.content) / 1e6, 1),
                    }
                results["timings"] = timings
                results["regroup_on_every_request"] = await regroup_everything(
                    url, resources.embedder, settings.insights_gap_threshold
                )
    finally:
        admin = await asyncpg.connect(server)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=100_000)
    parser.add_argument("--unanswered", type=float, default=0.5, help="Share of questions the book does not answer.")
    parser.add_argument("--requests", type=int, default=40, help="Timed requests per endpoint.")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    console = Console()
    data = results["data"]
    console.print(
        f"{data['questions']} questions ({data['unanswered']} unanswered) in {data['conversations']} conversations, "
        f"{data['feedback']} ratings; {results['backfill']['gaps']} gaps; grouping the backlog: "
        f"{results['backfill']['seconds']} s ({results['backfill']['questions_per_s']} questions/s)"
    )
    table = Table(title="insights endpoints (ms)")
    for column in ("request", "p50", "p95", "n"):
        table.add_column(column, justify="left" if column == "request" else "right")
    for label, figures in results["timings"].items():
        table.add_row(label, f"{figures['p50_ms']:.1f}", f"{figures['p95_ms']:.1f}", str(figures["requests"]))
    console.print(table)
    console.print(f"CSV export: {results['export']}")
    console.print(f"grouping everything on one request instead: {results['regroup_on_every_request']}")
    path = write_results(results, args.output or results_path("insights"))
    console.print(f"results written to {path}")


if __name__ == "__main__":
    main()
