"""How the embedded engine starts a helper process: this interpreter, running a module of this very bookchat."""

from __future__ import annotations

import os
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
