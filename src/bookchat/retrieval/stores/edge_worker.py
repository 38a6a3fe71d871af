"""The embedded engine's own process: serves one folder's `EdgeQdrantClient` to the process that started it.

Started by `edge_process.EdgeProcessClient` as
`python -m bookchat.retrieval.stores.edge_worker <fd> <folder> <optimize_after>`, with one end of a socket pair as
file descriptor `fd`. It answers with `("ready", pending_rebuild)` or
`("error", exception)`, then takes `(call_id, method, args, kwargs)` and replies `(call_id, ok, value)`, in
whatever order the calls finish. It exits when told to close or when its parent's end goes away (the parent died),
closing the engine first, so the folder's lock never outlives the process that used it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bookchat.retrieval.stores.edge_client import EdgeQdrantClient
from bookchat.retrieval.stores.errors import VectorStoreError

log = logging.getLogger(__name__)

# The client calls a parent may make; anything else is refused (the parent is trusted, but a typo is a bug).
METHODS = frozenset(
    {
        "clear_pending_rebuild",
        "collection_exists",
        "create_collection",
        "create_payload_index",
        "get_collection",
        "update_collection",
        "delete_collection",
        "get_collections",
        "get_aliases",
        "update_collection_aliases",
        "upsert",
        "upsert_rows",
        "stored_keys",
        "delete",
        "query_points",
        "query_batch_points",
        "scroll",
        "retrieve",
        "count",
        "optimize",
    }
)
CLOSE = "close"


def portable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling (its type and message reach the parent), else a VectorStoreError naming it."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301  # our own bytes, never another's
    except Exception:
        return VectorStoreError(f"the embedded Qdrant engine failed: {type(exc).__name__}: {exc}")
    return exc


async def serve(connection: Connection, root: Path, *, parent: int | None = None, optimize_after: int = 0) -> None:
    """Open the folder, answer calls until told to close or the parent goes away, then close the engine.

    `parent`: the process this one exits with, recorded in the folder's lock so that the next opener waits for
    an orphaned engine to finish closing instead of being refused. `optimize_after`: see `EdgeQdrantClient`."""
    try:
        client = EdgeQdrantClient(root, exits_with=parent, optimize_after=optimize_after)
    except Exception as exc:
        connection.send(("error", portable(exc)))
        return
    try:
        connection.send(("ready", client.pending_rebuild))
    except OSError:  # the parent died while the folder was opening
        await client.close()
        return
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()
    close_id: int | None = None
    # Receiving blocks, so it has a thread of its own; replies are sent from the loop, one at a time.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-worker-recv") as receiver:
        try:
            while True:
                try:
                    call_id, method, args, kwargs = await loop.run_in_executor(receiver, connection.recv)
                except (EOFError, OSError):
                    break  # the parent is gone
                if method == CLOSE:
                    close_id = call_id
                    break
                task = asyncio.create_task(_answer(connection, client, call_id, method, args, kwargs))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            # An optimization would hold the close for minutes: it is dropped (the index stays as it was).
            client.stop_optimizing()
            await asyncio.gather(*running, return_exceptions=True)
            await client.close()
    if close_id is not None:
        connection.send((close_id, True, None))


async def _answer(
    connection: Connection, client: EdgeQdrantClient, call_id: int, method: str, args: Any, kwargs: Any
) -> None:
    try:
        if method not in METHODS:
            raise VectorStoreError(f"the embedded engine's process has no call {method!r}")
        reply: tuple[int, bool, Any] = (call_id, True, await getattr(client, method)(*args, **kwargs))
    except Exception as exc:
        reply = (call_id, False, portable(exc))
    try:
        connection.send(reply)
    except (OSError, ValueError):
        pass  # the parent is gone; the receiving loop sees it too and ends
    except Exception as exc:  # a result that does not pickle: the caller still gets an answer
        connection.send((call_id, False, portable(exc)))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s (engine process): %(message)s")
    connection = Connection(int(argv[0]))
    # The parent names itself: had it died before this line, getppid() would name whoever adopted this process,
    # and the folder's lock would not show the next opener an orphan to wait for.
    parent = int(argv[3])
    try:
        if os.getppid() != parent:
            return  # the parent is already gone: nobody to serve
        asyncio.run(serve(connection, Path(argv[1]), parent=parent, optimize_after=int(argv[2])))
    finally:
        connection.close()


if __name__ == "__main__":
    main()
