"""Answer text re-cut for a stream: whatever arrived since the last delta is sent as one, at a bounded rate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

# Text that arrives faster than this is sent as one delta: the first piece goes out at once, later ones at most
# 50 times a second. A reader cannot tell, and a fast model no longer costs one write per token per stream.
DELTA_INTERVAL_SECONDS = 0.02


@dataclass(frozen=True)
class _End:
    error: Exception | None = None


async def coalesce(pieces: AsyncIterator[str], interval: float) -> AsyncIterator[str]:
    """`pieces` re-cut: each yield joins everything that arrived since the previous one, and after a yield
    the next waits `interval` seconds (the first piece is never delayed). An error from `pieces` is raised
    after the text that came before it; closing this generator stops reading `pieces`."""
    queue: asyncio.Queue[str | _End] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for piece in pieces:
                queue.put_nowait(piece)
        except Exception as exc:
            queue.put_nowait(_End(exc))
        else:
            queue.put_nowait(_End())

    reader = asyncio.create_task(pump())
    try:
        while True:
            item = await queue.get()
            text: list[str] = []
            while not isinstance(item, _End):
                text.append(item)
                if queue.empty():
                    break
                item = queue.get_nowait()
            if text:
                yield "".join(text)
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            await asyncio.sleep(interval)
    finally:
        if not reader.done():
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
