"""`bookchat serve` as a user runs it: nothing configured, embedded PostgreSQL, sample book, Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bookchat.runtime.database import _first_line, _live_pid
from tests.conftest import traversable_temp_dir

STARTUP_SECONDS = 180
ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with traversable_temp_dir() as folder:
        yield folder / "data"


def _start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("BOOKCHAT_") and key != "GEMINI_API_KEY"
    }
    env.update({"BOOKCHAT_DATA_DIR": str(data_dir), "BOOKCHAT_LOG_JSON": "false", "BOOKCHAT_ADMIN_TOKEN": ADMIN_TOKEN})
    return subprocess.Popen(
        [sys.executable, "-m", "bookchat", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_ready(process: subprocess.Popen[bytes], port: int) -> httpx.Response:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else "serve exited"
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/api/ready", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def _interrupt(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return output.decode()


def test_serve_runs_on_embedded_defaults_and_ctrl_c_stops_postgres(data_dir: Path) -> None:
    port = _free_port()
    process = _start(data_dir, port)
    try:
        assert _wait_ready(process, port).json()["checks"]["postgres"]["ok"]
        base = f"http://127.0.0.1:{port}"
        # What is configured is shown to an admin only.
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ready = httpx.get(f"{base}/api/ready", headers=admin, timeout=10).json()
        assert ready["checks"]["llm"]["detail"].startswith("none configured")
        guest = httpx.post(f"{base}/api/auth/guest", timeout=10).json()["access_token"]
        answer = httpx.post(
            f"{base}/api/chat",
            json={"message": "How do I ingest a book?"},
            headers={"Authorization": f"Bearer {guest}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["mode"] == "extractive"
        assert body["citations"], "the sample book was ingested on first start"
        link = body["citations"][0]["url"]
        assert link.startswith("/guide/") or link == "/" or link.startswith("/#"), link
        page = httpx.get(base + link.split("#")[0], timeout=10, follow_redirects=True)
        assert page.status_code == 200, "citations open the demo guide"
        postmaster = _first_line(data_dir / "postgres" / "postmaster.pid")
        assert _live_pid(postmaster) is not None
    finally:
        output = _interrupt(process)
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}/docs" in output, "the banner says where it listens"
    assert "embedded PostgreSQL stopped" in output
    assert _live_pid(postmaster) is None, "Ctrl-C left PostgreSQL running"

    # A second start reuses the data: no re-ingestion, same answers.
    process = _start(data_dir, port)
    try:
        _wait_ready(process, port)
    finally:
        output = _interrupt(process)
    assert process.returncode == 0, output
    assert "sample book ingested" not in output
    assert _live_pid(_first_line(data_dir / "postgres" / "postmaster.pid")) is None


def test_serve_refuses_a_bad_setting_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bookchat", "serve"],
        env={**os.environ, "BOOKCHAT_DATABASE_URL": "nonsense"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert any("BOOKCHAT_DATABASE_URL" in line for line in lines)
    assert "Traceback" not in result.stderr
