"""Chat streaming benchmark: time to the first SSE delta and streams/s of POST /api/chat vs a bare relay.

Three servers run as separate processes on loopback: the fake OpenAI-compatible LLM (answers instantly,
~30 word chunks), bookchat (one uvicorn worker: JWT auth, PostgreSQL writes, hybrid search on a small
corpus, the Agents SDK, citation rewriting) and the floor — a bare FastAPI endpoint that only relays the
same fake LLM stream as SSE. This process is the load generator. Each level (1 and 32 concurrent
streams) is measured against both targets in the same run, in rounds that alternate between them (the
machine's speed drifts over a run; alternating makes the drift hit both alike); the table shows both and
their ratios.

    .venv/bin/python bench/chat.py                    # PostgreSQL from BOOKCHAT_TEST_DATABASE_URL, or embedded
    .venv/bin/python bench/chat.py --streams 200 --concurrent-streams 960
    .venv/bin/python bench/chat.py --followups        # first turns vs their follow-ups, at 1 stream
    .venv/bin/python bench/chat.py --followups --rewrite   # the same with the model's rewrite of follow-ups

Writes bench/results/chat-<time>.json. Targets (issue 4): p50 at 1 stream at most 25 ms above the relay;
at 32 streams p99 ≤ 2.5x the relay's and throughput ≥ 0.4x the relay's; no errors.

`--followups` (issue 14) writes bench/results/chat-followups-<time>.json instead: conversations one at a time,
each a first question then a dependent follow-up in it ("And how is that configured?"), so first turns and
follow-ups alternate; target: a follow-up's p50 first delta at most 15 ms above a first turn's, every measured
turn answered (the retrieval-confidence gate let it through), no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import uvloop

from bookchat.retrieval.evaluation import machine_description
from record import results_path, write_results

ROOT = Path(__file__).resolve().parents[1]
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"  # noqa: S105 - a throw-away test secret
TARGETS = {
    "p50_ms_over_relay_at_1": 25.0,
    "p99_ratio_at_32": 2.5,
    "throughput_ratio_at_32": 0.4,
}
FOLLOWUP_TARGET_MS = 15.0  # a follow-up's p50 first delta at most this much above a first turn's (issue 14)


# ------------------------------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def corpus_passages() -> list[Any]:
    """Paragraphs of the project's docs as passages (a small but real book), plus a few fixed ones."""
    from bookchat.retrieval.search import Passage, chunk_point_id

    passages = []
    sources = sorted((ROOT / "docs").glob("**/*.md")) or []
    for path in sources:
        document_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "bookchat-bench:" + str(path.relative_to(ROOT))))
        paragraphs = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 80]
        for index, text in enumerate(paragraphs):
            passages.append(
                Passage(
                    chunk_id=chunk_point_id(document_id, index),
                    document_id=document_id,
                    chunk_index=index,
                    source_path=str(path.relative_to(ROOT)),
                    title=path.stem,
                    url=f"https://book.example.org/{path.stem}",
                    heading_path=(path.stem,),
                    text=text,
                )
            )
    document_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "bookchat-bench:fixed"))
    for index in range(20):
        passages.append(
            Passage(
                chunk_id=chunk_point_id(document_id, index),
                document_id=document_id,
                chunk_index=index,
                source_path="fixed.md",
                title="Logging",
                url="https://book.example.org/logging",
                heading_path=("Operations", "Logging"),
                text=f"Section {index}: bookchat writes one JSON log line per request and redacts secrets, "
                "API keys and bearer tokens before a line is written; the selected text is logged by length only.",
            )
        )
    return passages


async def serve_bookchat(port: int) -> None:
    """Role `bookchat`: the real app (settings from the environment), a small corpus indexed, one worker."""
    from bookchat.config import load_settings
    from bookchat.main import create_app
    from bookchat.runtime.observability import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, json_lines=True)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.resources.retriever.index_passages(corpus_passages())
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, timeout_keep_alive=30)
        server = _Server(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
        profile_to = os.environ.get("BOOKCHAT_BENCH_PROFILE")
        profiler = cProfile.Profile() if profile_to else None
        if profiler is not None:
            profiler.enable()
        print("READY", flush=True)
        try:
            await server.serve(sockets=[_listen(port)])
        finally:
            if profiler is not None and profile_to:
                profiler.disable()
                profiler.dump_stats(profile_to)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after shutting down, which would kill the process before the profile is saved;
    this server leaves signals to the caller."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def relay_app(llm_url: str) -> Any:
    """Role `relay`: the floor — authless FastAPI that streams the fake LLM's deltas straight out as SSE."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from openai import AsyncOpenAI

    from bookchat.chat.context import prompt_passage
    from bookchat.chat.prompts import RETRIEVAL_INSTRUCTIONS, retrieval_input

    app = FastAPI()
    client = AsyncOpenAI(base_url=llm_url, api_key="bench", max_retries=0)
    # The messages bookchat sends, with one passage: the fake then streams the same reply to both (it answers a
    # request whose text asks for [n] citations with its long cited answer, anything else with one short line).
    passage = corpus_passages()[-1]
    messages = [
        {"role": "system", "content": RETRIEVAL_INSTRUCTIONS},
        {"role": "user", "content": retrieval_input(QUESTIONS[0], [prompt_passage(1, passage)])},
    ]

    @app.post("/relay")
    async def relay() -> StreamingResponse:
        stream = await client.chat.completions.create(model="fake-model", messages=messages, stream=True)  # type: ignore[arg-type]

        async def events() -> AsyncIterator[bytes]:
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield b"event: delta\ndata: " + json.dumps({"text": choice.delta.content}).encode() + b"\n\n"
            yield b"event: done\ndata: {}\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return app


async def serve_relay(port: int, llm_url: str) -> None:
    config = uvicorn.Config(relay_app(llm_url), lifespan="off", log_config=None, access_log=False)
    print("READY", flush=True)
    await uvicorn.Server(config).serve(sockets=[_listen(port)])


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


@dataclass
class Child:
    pid: int
    line: str

    def cpu_seconds(self) -> float:
        """User + system CPU this process and its running children (the embedded engine's process) have used so
        far (Linux /proc)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return sum(_cpu_seconds(int(pid)) for pid in [self.pid, *children])


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # a child that has just exited
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[Child]:
    """Start a child process, wait for its `ready` line on stdout, yield it, stop it at the end."""
    with log.open("w") as stderr:
        child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            assert child.stdout is not None
            deadline = time.monotonic() + 180
            while True:
                line = child.stdout.readline()
                if line.startswith(ready):
                    break
                if (not line and child.poll() is not None) or time.monotonic() > deadline:
                    raise RuntimeError(f"{args[1:3]} did not start; see {log}")
            yield Child(child.pid, line.strip())
        finally:
            child.terminate()
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


# ------------------------------------------------------------------------------------------ load


@dataclass
class Level:
    target: str
    concurrency: int
    streams: int
    errors: int
    seconds: float
    streams_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    server_cpu_ms_per_stream: float = 0.0
    fake_cpu_ms_per_stream: float = 0.0
    # From bookchat's own "chat turn" log lines: question stored + passages found, and first delta ready.
    server_prepare_p50_ms: float | None = None
    server_first_delta_p50_ms: float | None = None
    # The text of one streamed answer: the relay must carry the same reply as bookchat to be its floor.
    answer: str = ""


_counter = itertools.count()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


QUESTIONS = [
    "How does bookchat keep secrets out of the logs?",
    "Which headers does the API add for security?",
    "How is the Docusaurus widget embedded in a page?",
    "How does bookchat limit the rate of requests?",
    "How are API keys configured for the OpenAI-compatible endpoint?",
    "Where does the chat widget send its requests?",
    "How does the service log a request?",
    "What does the admin token allow?",
]


# `--followups`: conversations of a first question and a dependent follow-up that leans on it for its subject, as
# readers' do, so the service searches the follow-up with the conversation (retrieval/followups.py) and gates that
# search. All about the bench corpus, so the retrieval-confidence gate lets both turns through (checked: `answered`).
# No "(reader n)" tag here: its two words are in no passage, and the gate's term coverage refuses most questions
# that carry them; the repeats are harmless, as nothing in the service caches by question.
CONVERSATIONS = [
    ("How does bookchat keep secrets out of the logs?", "And what about bearer tokens?"),
    ("Which headers does the API add for security?", "And what does each one do?"),
    ("How is the Docusaurus widget embedded in a page?", "Which options does it take?"),
    ("How does bookchat limit the rate of requests?", "And how long until I can ask again?"),
    ("How are API keys configured for the OpenAI-compatible endpoint?", "And which model does it call?"),
    ("Where does the chat widget send its requests?", "And how is that configured?"),
    ("How does the service log a request?", "And what does that line contain?"),
    ("What does the admin token allow?", "And how is it issued?"),
]


def chat_body(number: int) -> dict[str, Any]:
    # The questions cycle: nothing in the service caches by question. (A "(reader n)" tag that once made each
    # question unique is in no passage, and the retrieval-confidence gate then refuses most of them unanswered.)
    return {"message": QUESTIONS[number % len(QUESTIONS)], "stream": True}


def answer_text(raw: bytes) -> str:
    """The answer a stream carried: the text of its `delta` events, joined."""
    texts = []
    for message in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in message.splitlines() if ": " in line)
        if fields.get("event") == "delta":
            texts.append(json.loads(fields["data"])["text"])
    return "".join(texts)


async def one_stream(
    http: httpx.AsyncClient, path: str, body: dict[str, Any] | None, received: list[bytes] | None = None
) -> float | None:
    """Seconds from sending the request to receiving the first `delta` event; None when the stream failed.
    The raw stream is appended to `received` when given."""
    started = time.perf_counter()
    first: float | None = None
    buffer = b""
    if body is None:
        body = chat_body(next(_counter))
    async with http.stream("POST", path, json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return None
        async for chunk in response.aiter_raw():
            buffer += chunk
            if first is None and b"event: delta" in buffer:
                first = time.perf_counter() - started
    if received is not None:
        received.append(buffer)
    if b"event: done" not in buffer or b"event: error" in buffer:
        return None
    # A refusal by the coverage gate never reaches the model: it would flatter the figures, so it counts as failed.
    if b'"answered":false' in buffer.replace(b" ", b""):
        return None
    return first


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """A stream's events as (name, data) in order."""
    events = []
    for message in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in message.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields.get("data") or "{}")))
    return events


@dataclass
class Round:
    """One uninterrupted batch of streams against one target."""

    latencies: list[float]
    errors: int
    seconds: float
    answer: str
    server_cpu_seconds: float  # over the measured streams, warm-up excluded
    fake_cpu_seconds: float


async def run_round(
    base_url: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
    concurrency: int,
    streams: int,
    server: Child,
    fake: Child,
) -> Round:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60, limits=limits) as http:
        warm_up: list[bytes] = []
        for _ in range(min(10, streams)):  # warm-up: connections, caches, JIT-less but lazy imports
            await one_stream(http, path, body, warm_up)
        latencies: list[float] = []
        errors = 0
        remaining = streams

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                try:
                    result = await one_stream(http, path, body)
                except httpx.HTTPError:
                    result = None
                if result is None:
                    errors += 1
                else:
                    latencies.append(result)

        cpu_before = server.cpu_seconds(), fake.cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        server_cpu, fake_cpu = server.cpu_seconds() - cpu_before[0], fake.cpu_seconds() - cpu_before[1]
    return Round(latencies, errors, seconds, answer_text(warm_up[0]) if warm_up else "", server_cpu, fake_cpu)


def level_of(target: str, concurrency: int, rounds: list[Round]) -> Level:
    """A target's figures at one concurrency, over all its rounds: percentiles of every stream, and streams per
    second as completed streams over the time the rounds took."""
    ms = [value * 1000 for one in rounds for value in one.latencies]
    seconds = sum(one.seconds for one in rounds)
    errors = sum(one.errors for one in rounds)
    streams = len(ms) + errors
    return Level(
        target=target,
        concurrency=concurrency,
        streams=streams,
        errors=errors,
        seconds=round(seconds, 3),
        streams_per_second=round(len(ms) / seconds, 1),
        p50_ms=round(percentile(ms, 50), 1),
        p90_ms=round(percentile(ms, 90), 1),
        p99_ms=round(percentile(ms, 99), 1),
        mean_ms=round(statistics.fmean(ms), 1) if ms else float("nan"),
        answer=rounds[0].answer,
        server_cpu_ms_per_stream=round(sum(one.server_cpu_seconds for one in rounds) * 1000 / streams, 1),
        fake_cpu_ms_per_stream=round(sum(one.fake_cpu_seconds for one in rounds) * 1000 / streams, 1),
    )


def turn_log(path: Path, offset: int) -> dict[str, list[float]]:
    """Timings of the "chat turn" lines bookchat logged after `offset` (JSON lines on its stderr)."""
    values: dict[str, list[float]] = {"prepare_ms": [], "first_delta_ms": []}
    with path.open() as log:
        log.seek(offset)
        for line in log:
            if '"chat turn"' not in line:
                continue
            entry = json.loads(line)
            for key, collected in values.items():
                if entry.get(key) is not None:
                    collected.append(float(entry[key]))
    return values


# ------------------------------------------------------------------------------------------ follow-ups


@dataclass
class TurnLevel:
    """First turns or follow-ups of a `--followups` run: time to the first delta, client side and server side."""

    turn: str
    streams: int
    errors: int
    unanswered: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    server_prepare_p50_ms: float | None = None
    server_first_delta_p50_ms: float | None = None


@dataclass
class TurnResult:
    seconds: float | None  # to the first delta; None when the stream failed
    answered: bool
    conversation_id: str | None
    message_id: str | None


async def one_turn(http: httpx.AsyncClient, body: dict[str, Any]) -> TurnResult:
    received: list[bytes] = []
    try:
        seconds = await one_stream(http, "/api/chat", body, received)
    except httpx.HTTPError:
        return TurnResult(None, False, None, None)
    events = dict(sse_events(received[0])) if received else {}
    meta, done = events.get("meta", {}), events.get("done", {})
    return TurnResult(seconds, bool(done.get("answered")), meta.get("conversation_id"), meta.get("message_id"))


async def run_followups(base_url: str, headers: dict[str, str], conversations: int) -> dict[str, list[TurnResult]]:
    """`conversations` conversations one after the other (1 concurrent stream), each a first question then its
    follow-up with the returned conversation_id, after 10 warm-up conversations; turns of both kinds alternate."""
    results: dict[str, list[TurnResult]] = {"first": [], "follow-up": []}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as http:
        for number in range(-10, conversations):
            question, followup = CONVERSATIONS[number % len(CONVERSATIONS)]
            first = await one_turn(http, {"message": question, "stream": True})
            second = None
            if first.conversation_id is not None:
                body = {
                    "message": followup,
                    "stream": True,
                    "conversation_id": first.conversation_id,
                }
                second = await one_turn(http, body)
            if number >= 0:
                results["first"].append(first)
                results["follow-up"].append(second or TurnResult(None, False, None, None))
    return results


def server_turns(path: Path, offset: int) -> dict[str, dict[str, Any]]:
    """bookchat's "chat turn" log lines after `offset`, by message_id."""
    turns = {}
    with path.open() as log:
        log.seek(offset)
        for line in log:
            if '"chat turn"' in line:
                entry = json.loads(line)
                turns[str(entry.get("message_id"))] = entry
    return turns


def turn_level(turn: str, results: list[TurnResult], logged: dict[str, dict[str, Any]]) -> TurnLevel:
    ms = [one.seconds * 1000 for one in results if one.seconds is not None]
    entries = [logged[one.message_id] for one in results if one.message_id in logged]

    def server_p50(key: str) -> float | None:
        values = [float(entry[key]) for entry in entries if entry.get(key) is not None]
        return round(percentile(values, 50), 1) if values else None

    return TurnLevel(
        turn=turn,
        streams=len(results),
        errors=sum(one.seconds is None for one in results),
        unanswered=sum(one.seconds is not None and not one.answered for one in results),
        p50_ms=round(percentile(ms, 50), 1),
        p90_ms=round(percentile(ms, 90), 1),
        p99_ms=round(percentile(ms, 99), 1),
        mean_ms=round(statistics.fmean(ms), 1) if ms else float("nan"),
        server_prepare_p50_ms=server_p50("prepare_ms"),
        server_first_delta_p50_ms=server_p50("first_delta_ms"),
    )


def followups_report(levels: list[TurnLevel], out: Path | None) -> int:
    """Print the first-turn vs follow-up table and the differences, write the JSON; 0 when the target is met."""
    header = (
        f"{'turn':<10} {'streams':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'errors':>6}"
        f" {'unanswered':>10} {'prepare p50':>12} {'1st delta p50':>14}"
    )
    print(header)
    print("-" * len(header))
    for level in levels:
        print(
            f"{level.turn:<10} {level.streams:>7} {level.p50_ms:>8.1f} {level.p90_ms:>8.1f} {level.p99_ms:>8.1f}"
            f" {level.mean_ms:>8.1f} {level.errors:>6} {level.unanswered:>10}"
            f" {_ms(level.server_prepare_p50_ms):>12} {_ms(level.server_first_delta_p50_ms):>14}"
        )
    first, followup = levels
    differences = {
        "p50_ms_followup_over_first": round(followup.p50_ms - first.p50_ms, 2),
        "p90_ms_followup_over_first": round(followup.p90_ms - first.p90_ms, 2),
    }
    print()
    for name, value in differences.items():
        print(f"{name:<28} {value:+8.2f}")
    passed = differences["p50_ms_followup_over_first"] <= FOLLOWUP_TARGET_MS and not any(
        level.errors or level.unanswered for level in levels
    )
    print(
        f"\ntarget (p50 at most {FOLLOWUP_TARGET_MS:.0f} ms above, all answered, no errors)"
        f" {'met' if passed else 'NOT met'}"
    )
    written = write_results(
        {
            "benchmark": "chat-followups",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {**machine_description(), "platform": platform.platform()},
            "concurrency": 1,
            "turns": [asdict(level) for level in levels],
            "differences": differences,
            "targets": {"p50_ms_followup_over_first": FOLLOWUP_TARGET_MS},
            "targets_met": passed,
        },
        out or results_path("chat-followups"),
    )
    print(f"wrote {written.relative_to(ROOT) if written.is_relative_to(ROOT) else written}")
    return 0 if passed else 1


# ------------------------------------------------------------------------------------------ main


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


def guest_token() -> str:
    from bookchat.auth.tokens import TokenCodec
    from bookchat.config import load_settings

    codec = TokenCodec.from_settings(load_settings(jwt_secret=JWT_SECRET, _env_file=None))
    return codec.issue_access(f"guest:{uuid.uuid4()}", "guest").token


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_table(levels: list[Level], ratios: dict[str, float]) -> None:
    header = (
        f"{'target':<9} {'streams':>7} {'conc':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'streams/s':>10}"
        f" {'errors':>6} {'CPU ms/stream':>14} {'prepare p50':>12} {'1st delta p50':>14}"
    )
    print(header)
    print("-" * len(header))
    for level in levels:
        print(
            f"{level.target:<9} {level.streams:>7} {level.concurrency:>5} {level.p50_ms:>8.1f} {level.p90_ms:>8.1f} "
            f"{level.p99_ms:>8.1f} {level.streams_per_second:>10.1f} {level.errors:>6}"
            f" {level.server_cpu_ms_per_stream:>14.1f}"
            f" {_ms(level.server_prepare_p50_ms):>12} {_ms(level.server_first_delta_p50_ms):>14}"
        )
    print()
    for name, value in ratios.items():
        print(f"{name:<28} {value:8.2f}   (target {'≤' if 'throughput' not in name else '≥'} {TARGETS[name]})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["bench", "bookchat", "relay"], default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--llm-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=100, help="Streams measured at 1 concurrent stream.")
    parser.add_argument("--concurrent-streams", type=int, default=640, help="Streams measured at 32 concurrent.")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=2, help="Rounds per level, in the order relay, bookchat, bookchat, relay, ..."
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results path.")
    parser.add_argument(
        "--followups", action="store_true", help="Measure first turns vs their follow-ups (1 stream) instead."
    )
    parser.add_argument("--conversations", type=int, default=100, help="Conversations measured with --followups.")
    parser.add_argument(
        "--rewrite",
        action="store_true",
        help="Let follow-ups be rewritten by the (fake, instant) model; default: the model-free path only.",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="Write a cProfile of the bookchat server (event-loop thread) here."
    )
    parser.add_argument(
        "--vector-store",
        choices=["edge", "edge-threads", "local-legacy"],
        default="edge",
        help="The embedded engine of the server: edge (in its own process, the default), edge-threads (on the "
        "server's threads) or local-legacy. CPU per stream counts the engine's process too.",
    )
    args = parser.parse_args()
    # Servers run on uvloop, as `bookchat serve` (uvicorn's default loop) does in production.
    if args.role == "bookchat":
        uvloop.run(serve_bookchat(args.port))
        return 0
    if args.role == "relay":
        uvloop.run(serve_relay(args.port, args.llm_url))
        return 0

    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="bookchat-bench-") as folder, bench_database() as database_url:
        work = Path(folder)
        env = {key: value for key, value in os.environ.items() if not key.startswith("BOOKCHAT_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
        with process([python, "-m", "tests.fakes.llm_server"], env, work / "fake.log", "FAKE_LLM_BASE_URL=") as fake:
            llm_url = fake.line.split("=", 1)[1]
            bookchat_port, relay_port = free_port(), free_port()
            server_env = {
                **env,
                "BOOKCHAT_DATA_DIR": str(work / "data"),
                "BOOKCHAT_LLM_PROVIDER": "openai",
                "BOOKCHAT_LLM_BASE_URL": llm_url,
                "BOOKCHAT_LLM_MODEL": "fake-model",
                "BOOKCHAT_LLM_API_KEY": "bench",
                "BOOKCHAT_JWT_SECRET": JWT_SECRET,
                "BOOKCHAT_RATE_LIMIT_ENABLED": "false",
                "BOOKCHAT_LOG_LEVEL": "INFO",
                "BOOKCHAT_QUERY_REWRITE": "true" if args.rewrite else "false",
                "BOOKCHAT_VECTOR_STORE": "local-legacy" if args.vector_store == "local-legacy" else "edge",
                "BOOKCHAT_EDGE_PROCESS": "false" if args.vector_store == "edge-threads" else "true",
            }
            if database_url:
                server_env["BOOKCHAT_DATABASE_URL"] = database_url
            if args.profile:
                server_env["BOOKCHAT_BENCH_PROFILE"] = str(args.profile.resolve())
            bookchat_cmd = [python, str(ROOT / "bench" / "chat.py"), "--role", "bookchat", "--port", str(bookchat_port)]
            relay_cmd = [
                python,
                str(ROOT / "bench" / "chat.py"),
                "--role",
                "relay",
                "--port",
                str(relay_port),
                "--llm-url",
                llm_url,
            ]
            with (
                process(bookchat_cmd, server_env, work / "bookchat.log", "READY") as bookchat_server,
                process(relay_cmd, env, work / "relay.log", "READY") as relay_server,
            ):
                time.sleep(0.5)
                token = guest_token()
                if args.followups:
                    log_offset = (work / "bookchat.log").stat().st_size
                    url = f"http://127.0.0.1:{bookchat_port}"
                    results = asyncio.run(run_followups(url, {"Authorization": f"Bearer {token}"}, args.conversations))
                    logged = server_turns(work / "bookchat.log", log_offset)
                    return followups_report(
                        [turn_level(name, turns, logged) for name, turns in results.items()], args.out
                    )
                targets: list[tuple[str, str, str, dict[str, Any] | None, dict[str, str], Child]] = [
                    (f"http://127.0.0.1:{relay_port}", "relay", "/relay", {}, {}, relay_server),
                    (
                        f"http://127.0.0.1:{bookchat_port}",
                        "bookchat",
                        "/api/chat",
                        None,  # a distinct question per stream
                        {"Authorization": f"Bearer {token}"},
                        bookchat_server,
                    ),
                ]
                levels: list[Level] = []
                for concurrency, streams in ((1, args.streams), (args.concurrency, args.concurrent_streams)):
                    rounds: dict[str, list[Round]] = {target[1]: [] for target in targets}
                    turns: dict[str, list[float]] = {"prepare_ms": [], "first_delta_ms": []}
                    for number in range(args.rounds):
                        # Alternating which target goes first, so a drift in the machine's speed hits both alike.
                        for base_url, target, path, body, headers, server in targets[:: 1 if number % 2 == 0 else -1]:
                            log_offset = (work / "bookchat.log").stat().st_size
                            share = streams // args.rounds + (1 if number < streams % args.rounds else 0)
                            rounds[target].append(
                                asyncio.run(run_round(base_url, path, body, headers, concurrency, share, server, fake))
                            )
                            if target == "bookchat":
                                for name, values in turn_log(work / "bookchat.log", log_offset).items():
                                    turns[name].extend(values)
                    for target in rounds:
                        level = level_of(target, concurrency, rounds[target])
                        if target == "bookchat":
                            level.server_prepare_p50_ms = percentile(turns["prepare_ms"], 50)
                            level.server_first_delta_p50_ms = percentile(turns["first_delta_ms"], 50)
                        levels.append(level)
    by = {(level.target, level.concurrency): level for level in levels}
    for concurrency in (1, args.concurrency):
        if by["relay", concurrency].answer != by["bookchat", concurrency].answer:
            raise SystemExit(
                "the relay did not stream the reply bookchat got, so it is no floor:\n"
                f"  relay:    {by['relay', concurrency].answer!r}\n  bookchat: {by['bookchat', concurrency].answer!r}"
            )
    high = args.concurrency
    ratios = {
        "p50_ms_over_relay_at_1": round(by["bookchat", 1].p50_ms - by["relay", 1].p50_ms, 2),
        "p99_ratio_at_32": round(by["bookchat", high].p99_ms / by["relay", high].p99_ms, 2),
        "throughput_ratio_at_32": round(
            by["bookchat", high].streams_per_second / by["relay", high].streams_per_second, 2
        ),
    }
    print_table(levels, ratios)
    passed = (
        ratios["p50_ms_over_relay_at_1"] <= TARGETS["p50_ms_over_relay_at_1"]
        and ratios["p99_ratio_at_32"] <= TARGETS["p99_ratio_at_32"]
        and ratios["throughput_ratio_at_32"] >= TARGETS["throughput_ratio_at_32"]
        and not any(level.errors for level in levels)
    )
    print(f"\ntargets {'met' if passed else 'NOT met'}")
    out = write_results(
        {
            "benchmark": "chat",
            "vector_store": args.vector_store,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {**machine_description(), "platform": platform.platform()},
            "levels": [asdict(level) for level in levels],
            "ratios": ratios,
            "targets": TARGETS,
            "targets_met": passed,
        },
        args.out or results_path("chat"),
    )
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
