"""PostgreSQL stopped while a chapter is being translated: the reader still gets every section (the cache writes
fail and are logged), new requests get 503 problem+json while it is down, and after it is back the sections that
could not be stored are made again and cached."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import httpx

from bookchat.config import Settings
from tests.chat.fixtures import live_server, llm_settings
from tests.fakes.llm_server import FakeLLMServer
from tests.faults.services import PrivatePostgres
from tests.pages.conftest import CHAPTER, book_app
from tests.pages.fakes import page_reply


def _slow(body: dict[str, Any]) -> Any:
    return dataclasses.replace(page_reply(body), chunk_delay=0.1)


async def test_translation_through_a_postgres_outage(
    private_pg: PrivatePostgres, make_settings: Callable[..., Settings]
) -> None:
    with FakeLLMServer(default=_slow) as model:
        settings = llm_settings(
            make_settings, model, database_url=private_pg.url, llm_timeout=10.0, pages_concurrency=1
        )
        async with book_app(settings, model) as book:
            token = await book.reader()
            events: list[tuple[str, dict[str, Any]]] = []
            # A real server: the in-process transport would run the whole stream before handing over its first line.
            async with (
                live_server(book.app) as url,
                httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
                http.stream("POST", "/api/pages/translate", json={"page": book.document_id, "stream": True}) as reply,
            ):
                assert reply.status_code == 200
                name = ""
                stopped = False
                async for line in reply.aiter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        events.append((name, json.loads(line[6:])))
                        if name == "section" and not stopped:
                            # The first section is stored; PostgreSQL goes away before the others are.
                            await asyncio.to_thread(private_pg.stop)
                            stopped = True
            assert [n for n, _ in events if n in ("section", "done")] == ["section"] * 4 + ["done"]
            assert all(data["status"] == "rewritten" for n, data in events if n == "section")
            async with book.client(token) as http:
                down = await http.post("/api/pages/translate", json={"page": book.document_id})
                assert down.status_code == 503
                assert down.headers["content-type"] == "application/problem+json"
                assert down.json()["code"] == "database-unavailable"
                await asyncio.to_thread(private_pg.start)
                calls = len(model.requests)
                for _ in range(100):  # the pool reconnects by itself
                    again = await http.post("/api/pages/translate", json={"page": book.document_id})
                    if again.status_code == 200:
                        break
                    await asyncio.sleep(0.2)
                assert again.status_code == 200
                body = again.json()
                # Section 0 came from the cache; the three whose writes failed were made (and stored) again.
                assert [s["cached"] for s in body["sections"]] == [True, False, False, False]
                assert len(model.requests) == calls + 3
                cached = (await http.post("/api/pages/translate", json={"page": book.document_id})).json()
            assert cached["cached"] is True
    assert "Raspberry Pi" in cached["markdown"]
    assert CHAPTER.count("```") == cached["markdown"].count("```")
