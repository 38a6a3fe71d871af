"""`bookchat ask` streams the answer and lists its sources in the terminal."""

from __future__ import annotations

import io

from fastapi import FastAPI

from bookchat.chat.terminal import ask_in_terminal
from tests.fakes.llm_server import Error, FakeLLMServer, Text


async def test_streams_the_answer_then_the_sources(chat_app: FastAPI, llm: FakeLLMServer) -> None:
    llm.script(Text("Gazebo casts rays [1]."))
    out, err = io.StringIO(), io.StringIO()
    code = await ask_in_terminal(chat_app.state.resources, "How does Gazebo simulate a lidar?", out=out, err=err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert text.startswith("Gazebo casts rays [1].\n")
    assert "Sources:\n[1] " in text
    assert "https://book.example.org/docs/" in text


async def test_selection_goes_to_the_model(chat_app: FastAPI, llm: FakeLLMServer) -> None:
    llm.script(Text("Six [1]."))
    out = io.StringIO()
    code = await ask_in_terminal(chat_app.state.resources, "How many?", selection="Six joints.", out=out)
    assert code == 0
    assert "Six joints." in llm.last_request["messages"][-1]["content"]
    assert "[1] Your selection" in out.getvalue()


async def test_failures_and_bad_questions(chat_app: FastAPI, llm: FakeLLMServer) -> None:
    llm.script(Error(500))
    err = io.StringIO()
    assert (
        await ask_in_terminal(chat_app.state.resources, "Why do URDF joints connect links?", out=io.StringIO(), err=err)
        == 1
    )
    assert "llm-error" in err.getvalue()
    err = io.StringIO()
    assert await ask_in_terminal(chat_app.state.resources, "  ", out=io.StringIO(), err=err) == 2
    assert err.getvalue().startswith("bookchat ask: question:")
