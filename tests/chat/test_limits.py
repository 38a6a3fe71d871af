"""Chat rate limits and the cap on concurrent streams per reader: 429 before anything is stored or streamed."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from bookchat.config import Settings
from tests.chat.fixtures import chat_app_for, live_server, llm_settings, reader_on, token_for
from tests.fakes.llm_server import FakeLLMServer, Text


async def test_chat_is_rate_limited_per_reader(make_settings: Callable[..., Settings], llm: FakeLLMServer) -> None:
    settings = llm_settings(make_settings, llm, rate_limit_enabled=True, rate_limit_chat="2/minute")
    async with chat_app_for(settings) as app, reader_on(app) as reader:
        for _ in range(2):
            assert (await reader.http.post("/api/chat", json={"message": "How long does charging take?"})).is_success
        refused = await reader.http.post("/api/chat", json={"message": "And the sensors?"})
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-limit"] == "2"
        listed = (await reader.http.get("/api/conversations")).json()
        assert len(listed["items"]) == 2, "the refused question started no conversation"
        # Another reader has a budget of their own.
        async with reader_on(app) as other:
            assert (await other.http.post("/api/chat", json={"message": "And the sensors?"})).is_success


async def test_a_reader_may_hold_only_so_many_open_streams(
    make_settings: Callable[..., Settings], llm: FakeLLMServer
) -> None:
    settings = llm_settings(make_settings, llm, rate_limit_enabled=True, max_concurrent_streams=1, llm_timeout=10.0)
    slow = "Gazebo casts rays from the sensor [1]. " * 5
    llm.script(Text(slow, chunks=re.findall(r"\S+\s*", slow), chunk_delay=0.05), Text("It casts rays [1]."))
    async with chat_app_for(settings) as app, live_server(app) as base:
        headers = {"Authorization": f"Bearer {token_for(app)}"}
        # A question the book covers: the coverage gate refuses an uncovered one at once, and a reply that ends
        # at once frees its slot before the second request comes.
        body = {"message": "How does Gazebo simulate a lidar sensor?", "stream": True}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            async with http.stream("POST", "/api/chat", json=body) as first:
                assert first.status_code == 200
                lines = first.aiter_lines()
                async for line in lines:
                    if line.startswith("event: delta"):
                        break
                second = await http.post("/api/chat", json=body)
                assert second.status_code == 429
                assert second.json()["code"] == "too-many-streams"
                async for _ in lines:
                    pass
            # The slot is released when the stream ends.
            third = await http.post("/api/chat", json=body)
            assert third.status_code == 200
            assert "event: done" in third.text
