"""Start-up benchmark: `bookchat serve` from the command to the first 200 of /api/ready, beside a bare uvicorn app.

Runs `bookchat serve` with nothing configured (embedded PostgreSQL, local Qdrant, bundled model, extractive
answers) on one fresh data folder several times in a row, stopping it with Ctrl-C (SIGINT) each time: the first
start creates the database and ingests the user guide, the later ones are the "second start" of issue 2. The
baseline, measured in the same run, is the floor of any Python web service here: a FastAPI app with one route
under uvicorn, started as its own process and timed the same way. Prints a table and writes JSON to bench/results/.

    .venv/bin/python bench/startup.py              # 3 starts
    .venv/bin/python bench/startup.py --starts 5
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bookchat.retrieval.evaluation import machine_description
from record import results_path, write_results

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECOND_START_SECONDS = 3.0
BARE_APP = """
import sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/api/ready")
async def ready() -> dict[str, str]:
    return {"status": "ready"}


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def time_to_ready(command: list[str], port: int, env: dict[str, str], timeout: float = 180.0) -> float:
    """Seconds from starting `command` to its first 200 on /api/ready; then SIGINT and wait for it to exit."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=1.0) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited with {process.returncode} before it was ready")
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"not ready after {timeout:.0f} s")
                try:
                    if client.get(f"http://127.0.0.1:{port}/api/ready").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--starts", type=int, default=3, help="starts of bookchat on one data folder (>= 2)")
    args = parser.parse_args()
    bookchat = str(Path(sys.executable).with_name("bookchat"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("BOOKCHAT_")}
    for key in ("GEMINI_API_KEY", "OPENAI_API_KEY"):
        env.pop(key, None)

    rows: list[tuple[str, float]] = []
    bare_port = free_port()
    bare = time_to_ready([sys.executable, "-c", BARE_APP, str(bare_port)], bare_port, env)
    with tempfile.TemporaryDirectory() as data_dir:
        env["BOOKCHAT_DATA_DIR"] = data_dir
        for start in range(1, max(args.starts, 2) + 1):
            port = free_port()
            seconds = time_to_ready([bookchat, "serve", "--port", str(port)], port, env)
            label = "first (creates the database, ingests the guide)" if start == 1 else f"start {start}"
            rows.append((label, seconds))
    again = [seconds for _, seconds in rows[1:]]

    table = Table(title="bookchat serve: seconds from the command to the first 200 of /api/ready")
    for column in ("start", "seconds", "over the bare app"):
        table.add_column(column)
    for label, seconds in rows:
        table.add_row(label, f"{seconds:.2f}", f"+{seconds - bare:.2f}")
    table.add_row("baseline: bare FastAPI app under uvicorn", f"{bare:.2f}", "—")
    Console().print(table)
    worst = max(again)
    verdict = "met" if worst < TARGET_SECOND_START_SECONDS else "not met"
    print(f"later starts: worst {worst:.2f} s (target < {TARGET_SECOND_START_SECONDS:.0f} s: {verdict})")

    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "bare_app_seconds": round(bare, 3),
        "starts": [{"start": label, "seconds": round(seconds, 3)} for label, seconds in rows],
        "later_starts_worst_seconds": round(worst, 3),
        "target_seconds": TARGET_SECOND_START_SECONDS,
    }
    print(f"written to {write_results(results, results_path('startup'))}")


if __name__ == "__main__":
    main()
