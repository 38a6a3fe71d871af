"""Load and soak: 200 concurrent answer streams from a model that takes ~2 s, then steady mixed traffic.

Three processes on loopback: the fake OpenAI-compatible model (each answer streamed over `--answer-seconds`),
bookchat (one uvicorn worker, the real app, the small corpus of bench/chat.py) and this load generator.

1. Burst: `--streams` (200) streams at once, each from its own guest; errors, time to first delta, duration.
2. Soak: `--minutes` (10) of steady mixed traffic from `--workers` loops — streamed and plain chat, search,
   conversation reads, and an admin upload every few seconds — with the server's RSS, open file descriptors
   and threads sampled every 10 s.
3. Idle: after the load stops, the server's threads and descriptors, and its PostgreSQL connections (none
   active), compared with before the load.

    BOOKCHAT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/soak.py
    .venv/bin/python bench/soak.py --minutes 1          # a short run

Writes bench/results/soak-<time>.json; figures in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bookchat.retrieval.evaluation import machine_description
from chat import JWT_SECRET, QUESTIONS, ROOT, bench_database, free_port, guest_token, percentile, process
from record import results_path, write_results

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"  # noqa: S105 - a throw-away bench secret


@dataclass
class Sample:
    second: float
    rss_mb: float
    open_fds: int
    threads: int


@dataclass
class Counts:
    ok: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, kind: str, ok: bool, seconds: float) -> None:
        bucket = self.ok if ok else self.errors
        bucket[kind] = bucket.get(kind, 0) + 1
        self.latency_ms.setdefault(kind, []).append(seconds * 1000)


def sample(pid: int, started: float) -> Sample:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return Sample(
        round(time.monotonic() - started, 1),
        int(status["VmRSS"].split()[0]) / 1024,
        len(os.listdir(f"/proc/{pid}/fd")),
        int(status["Threads"]),
    )


async def stream_once(http: httpx.AsyncClient, token: str, message: str) -> tuple[bool, float | None, float]:
    """One streamed answer: (finished with `done`, seconds to the first delta, seconds in all)."""
    started = time.monotonic()
    first: float | None = None
    ok = False
    async with http.stream(
        "POST",
        "/api/chat",
        json={"message": message, "stream": True},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        if response.status_code != 200:
            return False, None, time.monotonic() - started
        async for line in response.aiter_lines():
            if line == "event: delta" and first is None:
                first = time.monotonic() - started
            elif line == "event: done":
                ok = True
            elif line == "event: error":
                return False, first, time.monotonic() - started
    return ok, first, time.monotonic() - started


async def burst(base_url: str, streams: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
        tokens = [guest_token() for _ in range(streams)]
        started = time.monotonic()
        results = await asyncio.gather(
            *(stream_once(http, token, QUESTIONS[i % len(QUESTIONS)]) for i, token in enumerate(tokens)),
            return_exceptions=True,
        )
        seconds = time.monotonic() - started
    firsts = [r[1] * 1000 for r in results if isinstance(r, tuple) and r[1] is not None]
    errors = sum(1 for r in results if not isinstance(r, tuple) or not r[0])
    return {
        "streams": streams,
        "errors": errors,
        "seconds": round(seconds, 2),
        "first_delta_p50_ms": round(percentile(firsts, 50), 1),
        "first_delta_p99_ms": round(percentile(firsts, 99), 1),
    }


async def soak(base_url: str, minutes: float, workers: int, pid: int) -> tuple[Counts, list[Sample]]:
    counts = Counts()
    samples: list[Sample] = []
    deadline = time.monotonic() + minutes * 60
    started = time.monotonic()
    uploads = itertools.count()
    chance = random.Random(7)

    async def worker(number: int, http: httpx.AsyncClient) -> None:
        token = guest_token()
        headers = {"Authorization": f"Bearer {token}"}
        conversation: str | None = None
        while time.monotonic() < deadline:
            kind = chance.choice(["stream", "chat", "search", "read", "read"])
            begun = time.monotonic()
            try:
                if kind == "stream":
                    ok = (await stream_once(http, token, chance.choice(QUESTIONS)))[0]
                elif kind == "chat":
                    body: dict[str, Any] = {"message": chance.choice(QUESTIONS)}
                    if conversation:
                        body["conversation_id"] = conversation
                    response = await http.post("/api/chat", json=body, headers=headers)
                    ok = response.status_code == 200
                    if ok:
                        conversation = response.json()["conversation_id"]
                elif kind == "search":
                    response = await http.post("/api/search", json={"query": chance.choice(QUESTIONS)}, headers=headers)
                    ok = response.status_code == 200
                else:
                    response = await http.get("/api/conversations", headers=headers)
                    ok = response.status_code == 200
                    if ok and conversation:
                        ok = (await http.get(f"/api/conversations/{conversation}", headers=headers)).status_code == 200
            except httpx.HTTPError:
                ok = False
            counts.add(kind, ok, time.monotonic() - begun)

    async def uploader(http: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        while time.monotonic() < deadline:
            number = next(uploads) % 20  # the same 20 pages rewritten over and over
            body = {
                "source_path": f"soak/page-{number}.md",
                "content": f"# Soak page {number}\n\nRevision {uuid.uuid4().hex}: notes on sensor fusion.",
            }
            begun = time.monotonic()
            try:
                ok = (await http.post("/api/documents", json=body, headers=headers)).status_code == 201
            except httpx.HTTPError:
                ok = False
            counts.add("upload", ok, time.monotonic() - begun)
            await asyncio.sleep(3)

    async def sampler() -> None:
        while time.monotonic() < deadline:
            samples.append(sample(pid, started))
            await asyncio.sleep(10)
        samples.append(sample(pid, started))

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        await asyncio.gather(sampler(), uploader(http), *(worker(number, http) for number in range(workers)))
    return counts, samples


async def database_connections(database_url: str | None) -> dict[str, int] | None:
    if database_url is None:
        return None
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT state, count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() GROUP BY state"
        )
    finally:
        await conn.close()
    return {str(row["state"]): int(row["n"]) for row in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--answer-seconds", type=float, default=2.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="bookchat-soak-") as folder, bench_database() as database_url:
        work = Path(folder)
        env = {key: value for key, value in os.environ.items() if not key.startswith("BOOKCHAT_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
        fake_cmd = [python, "-m", "tests.fakes.llm_server", "--answer-seconds", str(args.answer_seconds)]
        with process(fake_cmd, env, work / "fake.log", "FAKE_LLM_BASE_URL=") as fake:
            port = free_port()
            server_env = {
                **env,
                "BOOKCHAT_DATA_DIR": str(work / "data"),
                "BOOKCHAT_LLM_PROVIDER": "openai",
                "BOOKCHAT_LLM_BASE_URL": fake.line.split("=", 1)[1],
                "BOOKCHAT_LLM_MODEL": "fake-model",
                "BOOKCHAT_LLM_API_KEY": "bench",
                "BOOKCHAT_LLM_TIMEOUT": "30",
                "BOOKCHAT_JWT_SECRET": JWT_SECRET,
                "BOOKCHAT_ADMIN_TOKEN": ADMIN_TOKEN,
                "BOOKCHAT_RATE_LIMIT_ENABLED": "false",
                "BOOKCHAT_DB_POOL_MAX_SIZE": "20",
                "BOOKCHAT_LOG_LEVEL": "WARNING",
            }
            if database_url:
                server_env["BOOKCHAT_DATABASE_URL"] = database_url
            server_cmd = [python, str(ROOT / "bench" / "chat.py"), "--role", "bookchat", "--port", str(port)]
            with process(server_cmd, server_env, work / "bookchat.log", "READY") as server:
                base_url = f"http://127.0.0.1:{port}"
                time.sleep(0.5)
                before = sample(server.pid, time.monotonic())
                burst_figures = asyncio.run(burst(base_url, args.streams))
                print(f"burst: {burst_figures}", flush=True)
                counts, samples = asyncio.run(soak(base_url, args.minutes, args.workers, server.pid))
                time.sleep(5)
                after = sample(server.pid, time.monotonic())
                connections = asyncio.run(database_connections(database_url))
    requests = sum(counts.ok.values()) + sum(counts.errors.values())
    rows = [
        ("burst: streams / errors", f"{burst_figures['streams']} / {burst_figures['errors']}"),
        (
            "burst: first delta p50 / p99 ms",
            f"{burst_figures['first_delta_p50_ms']} / {burst_figures['first_delta_p99_ms']}",
        ),
        ("burst: seconds for all", f"{burst_figures['seconds']}"),
        (f"soak: requests in {args.minutes:g} min / errors", f"{requests} / {sum(counts.errors.values())}"),
        ("soak: by kind (ok)", ", ".join(f"{kind} {n}" for kind, n in sorted(counts.ok.items()))),
        (
            "RSS MB: before / after burst+soak / max",
            f"{before.rss_mb:.0f} / {after.rss_mb:.0f} / {max(s.rss_mb for s in samples):.0f}",
        ),
        ("RSS MB: first / last soak sample", f"{samples[0].rss_mb:.0f} / {samples[-1].rss_mb:.0f}"),
        ("open fds: before / after (idle)", f"{before.open_fds} / {after.open_fds}"),
        ("threads: before / after (idle)", f"{before.threads} / {after.threads}"),
        ("PostgreSQL connections after (by state)", str(connections)),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    out = write_results(
        {
            "benchmark": "soak",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {**machine_description(), "platform": platform.platform()},
            "arguments": vars(args) | {"out": str(args.out) if args.out else None},
            "burst": burst_figures,
            "soak": {
                "ok": counts.ok,
                "errors": counts.errors,
                "p50_ms": {kind: round(percentile(v, 50), 1) for kind, v in counts.latency_ms.items()},
            },
            "samples": [asdict(s) for s in samples],
            "before": asdict(before),
            "after": asdict(after),
            "database_connections_after": connections,
        },
        args.out or results_path("soak"),
    )
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if burst_figures["errors"] == 0 and not counts.errors else 1


if __name__ == "__main__":
    sys.exit(main())
