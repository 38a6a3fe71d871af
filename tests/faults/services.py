"""Private servers the fault tests may stop and start at will: PostgreSQL, Redis and PgBouncer on free ports.

They never touch the machine's shared servers: each lives in a temp folder of its own and goes with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def required_binary(name: str, package: str) -> str:
    """The path of a server binary; on CI its absence fails the test, elsewhere it skips with the fix."""
    found = shutil.which(name) or next(
        (str(path) for path in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if path.exists()), None
    )
    if found is None:
        message = f"{name} is not installed: `apt-get install {package}` (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


class PrivatePostgres:
    """A PostgreSQL of the `pgserver` package's binaries, in a folder of its own, on a TCP port; `stop()` and
    `start()` restart it for real (`pg_ctl -m fast`), as an operator or a crash would."""

    def __init__(self) -> None:
        import pgserver

        self.folder = Path(tempfile.mkdtemp(prefix="bookchat-faults-pg-"))
        self.folder.chmod(0o755)
        self.pgdata = self.folder / "data"
        self.port = free_port()
        # pgserver runs initdb (as its own account when we are root) and starts a socket-only server; it is
        # restarted below on a TCP port, as a real server listens.
        self._server = pgserver.get_server(self.pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
        self._user = self._server.system_user
        self._pg_ctl(["-w", "-m", "fast", "stop"])
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, args: list[str]) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(args, pgdata=self.pgdata, user=self._user, timeout=30)

    def start(self) -> None:
        log = self.folder / "postgres.log"
        log.touch()
        if self._user is not None:
            shutil.chown(log, self._user)
        options = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}"
        self._pg_ctl(["-w", "-o", options, "-l", str(log), "start"])
        wait_for_port(self.port)

    def stop(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "stop"])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """A `redis-server` on a free port that keeps nothing on disk; `stop()` and `start()` take it away and back."""

    def __init__(self) -> None:
        self.binary = required_binary("redis-server", "redis-server")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="bookchat-faults-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PgBouncer:
    """Debian's `pgbouncer` in `pool_mode = transaction` (as Neon's pooled URL) in front of a PostgreSQL."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.binary = required_binary("pgbouncer", "pgbouncer")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="bookchat-pgbouncer-"))
        self.folder.chmod(0o755)
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={upstream_host} port={upstream_port} user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            "max_client_conn = 500\ndefault_pool_size = 10\n"
            # Server sessions are reused by other clients between transactions: exactly what breaks session locks.
            "server_reset_query =\n"
            f"logfile = {self.folder / 'pgbouncer.log'}\n"
        )
        config.chmod(0o644)
        command = [self.binary, str(config)]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            command = [self.binary, "-u", "postgres", str(config)]
            shutil.chown(self.folder, "postgres")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, timeout=10)
        except AssertionError:
            self.process.kill()
            _, err = self.process.communicate(timeout=5)
            raise AssertionError(f"pgbouncer did not start: {err.decode(errors='replace')[-2000:]}") from None

    def url_for(self, database_url: str) -> str:
        """`database_url` (a database of the upstream server) reached through this pooler."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(database_url)
        return urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{self.port}"))

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
