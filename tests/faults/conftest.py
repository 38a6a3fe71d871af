"""Fixtures of the fault tests: private servers to break, and figures printed for docs/reliability.md."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.services import PrivatePostgres, PrivateRedis


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.close()


def report(fault: str, **figures: Any) -> None:
    """One line of figures per fault, printed (`pytest -s tests/faults`) for the table in docs/reliability.md."""
    print(f"\nFAULT-FIGURES {json.dumps({'fault': fault, **figures})}")
