"""How the embedded engine starts a helper process (this interpreter, a module of this very bookchat) and how the
helper goes with its parent."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

import bookchat


def module_command(module: str, *args: str) -> list[str]:
    """`python -m module args…` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def environment() -> dict[str, str]:
    """This process's environment, with the bookchat it runs importable (installed or from a source tree)."""
    variables = dict(os.environ)
    package_root = str(Path(bookchat.__file__).resolve().parents[1])
    variables["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, variables.get("PYTHONPATH")) if p)
    return variables


# <linux/prctl.h>: deliver a signal to this process when its parent exits.
PR_SET_PDEATHSIG = 1


def dies_with_parent(parent: int) -> bool:
    """Have the kernel kill this process when its parent exits (Linux; elsewhere a no-op); False when the parent,
    which named itself on the command line, is already gone (nobody is waiting for this process's work).

    For helpers that run one long native call and so cannot watch for their parent themselves."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # Checked after arming: a parent that died before this line is seen here, one that dies after it kills us.
    return os.getppid() == parent
