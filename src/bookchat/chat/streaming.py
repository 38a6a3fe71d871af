"""Answer text re-cut for a stream: whatever arrived since the last delta is sent as one, at a bounded rate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

# Text that arrives faster than this is sent as one delta: the first piece goes out at once, later ones at most
# 50 times a second. A reader cannot tell, and a fast model no longer costs one write per token per stream.
DELTA_INTERVAL_SECONDS = 0.02


class SourceInterrupted(RuntimeError):
    """The source raised a cancellation nobody asked for (from inside a library's stream): a failed answer.

    Raised as such rather than as `CancelledError`, which would read as the consumer being cancelled (the
    reader leaving) and end the turn without an error; the original is its `__cause__`.
    """


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


async def coalesce(pieces: AsyncIterator[str], interval: float) -> AsyncGenerator[str, None]:
    """`pieces` re-cut: each yield joins everything that arrived since the previous one, and after a yield
    the next waits `interval` seconds (the first piece is never delayed). An error from `pieces` is raised
    after the text that came before it (a stray `CancelledError` as `SourceInterrupted`); closing this
    generator, or cancelling its consumer, stops reading `pieces`."""
    queue: asyncio.Queue[str | _End] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for piece in pieces:
                queue.put_nowait(piece)
        except BaseException as exc:
            # Whatever ends the source, the consumer hears of it: it must never wait on an empty queue for ever.
            queue.put_nowait(_End(exc))
            if not isinstance(exc, Exception):
                raise
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
                if isinstance(item.error, asyncio.CancelledError):
                    raise SourceInterrupted("the answer stream was cancelled from inside") from item.error
                if item.error is not None:
                    raise item.error
                return
            await asyncio.sleep(interval)
    finally:
        reader.cancel()
        # `wait`, not `await reader`: a cancellation of this task during the wait is raised here, not taken for
        # the reader's own (and the reader's outcome is not raised: its error, if any, was queued above).
        await asyncio.wait({reader})
        if not reader.cancelled():
            reader.exception()  # retrieved, so asyncio does not log it as never retrieved
