"""The model's rewrite of a follow-up (or a question in another script): asked only when it may help, fused with
the model-free search, and harmless when it is wrong, fails or is slow. Real PostgreSQL and Qdrant, fake model."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI

from bookchat.config import Settings
from tests.chat.fixtures import chat_app_for, llm_settings, reader_on
from tests.chat.test_chat_api import LIDAR_QUESTION, conversation, passage_number
from tests.chat.test_followup_search import FOLLOWUP, GAZEBO, URDF, ask
from tests.fakes.llm_server import Error, FakeLLMServer, Text, rewrite_message

GOOD_REWRITE = "How many rays does a Gazebo lidar sensor cast?"
# Entirely in Urdu: "In which file are a robot's links and joints described?" (no word of the English book).
URDU_QUESTION = "روبوٹ کے جوڑ اور روابط کس فائل میں بیان کیے جاتے ہیں؟"
URDU_REWRITE = "Which file describes the links and joints of a robot?"


@pytest.fixture(scope="module")
async def impatient_app(make_settings: Callable[..., Settings], fake_llm: FakeLLMServer) -> AsyncIterator[FastAPI]:
    """The chat app with a rewrite allowed only 0.3 s."""
    async with chat_app_for(llm_settings(make_settings, fake_llm, query_rewrite_timeout=0.3)) as app:
        yield app


@pytest.fixture(scope="module")
async def no_rewrite_app(make_settings: Callable[..., Settings], fake_llm: FakeLLMServer) -> AsyncIterator[FastAPI]:
    async with chat_app_for(llm_settings(make_settings, fake_llm, query_rewrite=False)) as app:
        yield app


async def test_a_dependent_follow_up_is_rewritten_once_and_the_rewrite_is_searched(
    reader: Any, llm: FakeLLMServer
) -> None:
    llm.rewriter = lambda body: Text(f'Query: "{GOOD_REWRITE}"')
    llm.script(Text("Gazebo casts rays [1]."), Text("The plugin sets the ray count [1]."))
    first = await ask(reader, LIDAR_QUESTION)
    assert llm.rewrite_requests == []  # a first turn is searched as it is
    await ask(reader, FOLLOWUP, first["conversation_id"])
    assert len(llm.rewrite_requests) == 1
    request = llm.rewrite_requests[0]
    assert rewrite_message(request) == ([LIDAR_QUESTION], FOLLOWUP)
    assert request["max_tokens"] == 256
    assert request["temperature"] == 0.0
    assert not request.get("stream")
    assert "English" in request["messages"][0]["content"]
    assert passage_number(llm.last_request, GAZEBO) == 1
    stored = await conversation(reader.http, first["conversation_id"])
    assert stored["messages"][3]["search_query"] == GOOD_REWRITE  # label and quotes taken off


@pytest.mark.parametrize(
    "rewrite",
    [
        "Photorealistic scenes rendered with ray tracing in Isaac Sim",  # fluent, about another page
        "zxqv blorp qwerty",  # garbage
        "The book does not say; I cannot rewrite this question without more context, sorry.",  # an answer
    ],
)
async def test_a_wrong_rewrite_does_not_lower_retrieval(reader: Any, llm: FakeLLMServer, rewrite: str) -> None:
    llm.rewriter = lambda body: Text(rewrite)
    llm.script(Text("Gazebo casts rays [1]."), Text("The plugin sets the ray count [1]."))
    first = await ask(reader, LIDAR_QUESTION)
    await ask(reader, FOLLOWUP, first["conversation_id"])
    assert len(llm.rewrite_requests) == 1
    assert passage_number(llm.last_request, GAZEBO) == 1  # the model-free search keeps the ties


async def test_a_failing_rewrite_falls_back_silently(reader: Any, llm: FakeLLMServer) -> None:
    llm.rewriter = lambda body: Error(500, "upstream broke")
    llm.script(Text("Gazebo casts rays [1]."), Text("The plugin sets the ray count [1]."))
    first = await ask(reader, LIDAR_QUESTION)
    second = await ask(reader, FOLLOWUP, first["conversation_id"])
    assert second["answered"] is True
    assert passage_number(llm.last_request, GAZEBO) == 1
    stored = await conversation(reader.http, first["conversation_id"])
    assert "lidar" in stored["messages"][3]["search_query"]  # the model-free query, not the failed rewrite


async def test_a_slow_rewrite_is_abandoned_at_its_own_timeout(impatient_app: FastAPI, llm: FakeLLMServer) -> None:
    llm.rewriter = lambda body: Text(GOOD_REWRITE, delay=5.0)
    llm.script(Text("Gazebo casts rays [1]."), Text("The plugin sets the ray count [1]."))
    async with reader_on(impatient_app) as reader:
        first = await ask(reader, LIDAR_QUESTION)
        started = time.perf_counter()
        second = await ask(reader, FOLLOWUP, first["conversation_id"])
        elapsed = time.perf_counter() - started
    assert elapsed < 2.0, elapsed  # 0.3 s of rewrite at most, never the model's 5 s
    assert second["answered"] is True
    assert passage_number(llm.last_request, GAZEBO) == 1


async def test_self_contained_follow_ups_make_no_rewrite_call(reader: Any, llm: FakeLLMServer) -> None:
    llm.script(Text("Gazebo casts rays [1]."), Text("It describes links and joints [1]."))
    first = await ask(reader, LIDAR_QUESTION)
    await ask(reader, "What is a URDF file?", first["conversation_id"])
    assert llm.rewrite_requests == []
    assert passage_number(llm.last_request, URDF) == 1


async def test_a_question_in_another_script_is_searched_and_gated_in_the_books_language(
    reader: Any, llm: FakeLLMServer
) -> None:
    llm.rewriter = lambda body: Text(URDU_REWRITE)
    llm.script(Text("یو آر ڈی ایف فائل [1]."))
    reply = await ask(reader, URDU_QUESTION)
    assert len(llm.rewrite_requests) == 1  # a first turn, but in Urdu
    assert rewrite_message(llm.rewrite_requests[0]) == ([], URDU_QUESTION)
    assert reply["answered"] is True
    assert passage_number(llm.last_request, URDF) == 1
    assert reply["citations"][0]["title"] == URDF


async def test_without_the_rewrite_the_same_urdu_question_is_refused(
    no_rewrite_app: FastAPI, llm: FakeLLMServer
) -> None:
    async with reader_on(no_rewrite_app) as reader:
        reply = await ask(reader, URDU_QUESTION)
    assert reply["answered"] is False  # none of its words are in the book: the step above is what finds it
    assert llm.rewrite_requests == []
    assert llm.requests == []


async def test_a_rewrite_cannot_make_the_gate_refuse(reader: Any, llm: FakeLLMServer) -> None:
    llm.rewriter = lambda body: Text("chocolate cake recipe with buttercream")
    llm.script(Text("Gazebo casts rays [1]."), Text("The plugin sets the ray count [1]."))
    first = await ask(reader, LIDAR_QUESTION)
    second = await ask(reader, FOLLOWUP, first["conversation_id"])
    assert second["answered"] is True
    assert passage_number(llm.last_request, GAZEBO) == 1
