"""The threads embedders run their models on: off the event loop, with queries never queued behind documents."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class EmbeddingThreads:
    """Threads per kind of call: a query never waits behind documents being indexed, and documents use at most
    `documents` threads (model runs never oversubscribe the cores)."""

    def __init__(self, name: str, *, documents: int = 1) -> None:
        self._documents = ThreadPoolExecutor(max_workers=documents, thread_name_prefix=f"{name}-documents")
        self._queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-queries")

    async def documents(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._documents, fn)

    async def query(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._queries, fn)


def cpu_count() -> int:
    """The cores this process may run on (its affinity), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
