"""The embedded engine's helper processes go with their parent: a helper armed by `dies_with_parent` is killed when
its parent is, and one whose parent is already gone does no work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bookchat.retrieval.stores import edge_optimizer, helper_process
from tests.retrieval.test_edge_process import running


def test_a_helper_dies_with_its_killed_parent() -> None:
    helper = (
        "import os, time; from bookchat.retrieval.stores.helper_process import dies_with_parent; "
        "print(dies_with_parent(os.getppid()), flush=True); time.sleep(120)"
    )
    parent_script = (
        "import subprocess, sys; "
        f"child = subprocess.Popen([sys.executable, '-c', {helper!r}], stdout=sys.stdout); "
        "print(child.pid, flush=True); child.wait()"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_script], stdout=subprocess.PIPE, text=True, env=helper_process.environment()
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert parent.stdout.readline() == "True\n"  # armed, and its parent is the one it was told of
    assert running(child)
    parent.send_signal(signal.SIGKILL)  # no clean-up of any kind
    parent.wait()
    deadline = time.monotonic() + 10
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(child)


def test_the_optimizer_does_nothing_for_a_parent_that_is_gone(tmp_path: Path) -> None:
    """Started for a process that is not its parent (that one exited), it exits before touching the folder:
    the folder here does not even exist, which would otherwise be an error."""
    not_the_parent = os.getpid() + 1 if os.getppid() != os.getpid() + 1 else os.getpid() + 2
    done = subprocess.run(
        helper_process.module_command(
            "bookchat.retrieval.stores.edge_optimizer", str(tmp_path / "missing"), str(not_the_parent)
        ),
        env=helper_process.environment(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == edge_optimizer.PARENT_GONE, done.stderr
