"""The Agents SDK side of a turn: the answering agent, its `search_book` tool, and running it whole or streamed."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from agents import Agent, ItemHelpers, RunContextWrapper, Runner, TResponseInputItem, function_tool
from agents.items import MessageOutputItem
from agents.result import RunResultStreaming

from bookchat.chat.context import AgentMode, AnswerContext, RunUsage, prompt_passage
from bookchat.chat.prompts import (
    RETRIEVAL_INSTRUCTIONS,
    SEARCH_TOOL_DESCRIPTION,
    SELECTION_INSTRUCTIONS,
    PromptPassage,
    tool_result,
)
from bookchat.llm.provider import LLM

log = logging.getLogger(__name__)

# One follow-up search covers the common case (a vague follow-up question); two leave room, no more.
MAX_SEARCHES = 2
# Each model call is a turn: the first answer attempt, one per search, and the final answer.
MAX_TURNS = MAX_SEARCHES + 2
MAX_QUERY_CHARS = 500
TURN_SEPARATOR = "\n\n"


@function_tool(name_override="search_book", description_override=SEARCH_TOOL_DESCRIPTION)
async def search_book(ctx: RunContextWrapper[AnswerContext], query: str) -> str:
    """Search the book.

    Args:
        query: A short, self-contained search query.
    """
    state = ctx.context
    if state.retriever is None:
        return "Searching is not available for this question; answer from the text you have."
    if len(state.searches) >= MAX_SEARCHES:
        return "The search limit is reached; answer now from the passages you have."
    state.searches.append(query[:MAX_QUERY_CHARS])
    hits = await state.retriever.search(query[:MAX_QUERY_CHARS], limit=state.search_limit, filters=state.filters)
    numbers = {passage.chunk_id: number for number, passage in enumerate(state.passages, 1)}
    new: list[PromptPassage] = []
    known: list[int] = []
    for hit in hits:
        if hit.chunk_id in numbers:
            known.append(numbers[hit.chunk_id])
            continue
        state.passages.append(hit)
        numbers[hit.chunk_id] = len(state.passages)
        new.append(prompt_passage(len(state.passages), hit))
    log.info("search_book", extra={"query_chars": len(query), "new_passages": len(new), "known": len(known)})
    return tool_result(new, known)


@functools.lru_cache(maxsize=16)
def build_agent(llm: LLM, mode: AgentMode) -> Agent[AnswerContext]:
    """The answering agent: retrieval mode may search again; selection mode has no tool at all.

    Agents hold configuration only (per-request state travels in `AnswerContext`), so one per LLM and mode
    serves every request.
    """
    if mode == "selection":
        return Agent[AnswerContext](
            name="bookchat-selection",
            instructions=SELECTION_INSTRUCTIONS,
            model=llm.model,
            model_settings=llm.model_settings,
        )
    return Agent[AnswerContext](
        name="bookchat",
        instructions=RETRIEVAL_INSTRUCTIONS,
        tools=[search_book],
        model=llm.model,
        model_settings=llm.model_settings,
    )


def _usage(result_usage: object) -> RunUsage:
    return RunUsage(
        requests=int(getattr(result_usage, "requests", 0) or 0),
        prompt_tokens=int(getattr(result_usage, "input_tokens", 0) or 0),
        completion_tokens=int(getattr(result_usage, "output_tokens", 0) or 0),
    )


@dataclass(frozen=True)
class AgentAnswer:
    text: str
    usage: RunUsage


async def run_answer(
    llm: LLM, mode: AgentMode, items: Sequence[TResponseInputItem], context: AnswerContext
) -> AgentAnswer:
    """Run the agent to completion. The answer is every assistant text of the run, turns joined by a blank line
    (normally one turn; a model that writes before calling the tool keeps that text, as a stream would show it)."""
    result = await Runner.run(build_agent(llm, mode), list(items), context=context, max_turns=MAX_TURNS)
    texts = [ItemHelpers.text_message_output(item) for item in result.new_items if isinstance(item, MessageOutputItem)]
    return AgentAnswer(TURN_SEPARATOR.join(text for text in texts if text), _usage(result.context_wrapper.usage))


class AnswerStream:
    """A streamed run: `deltas()` yields the answer text as the model writes it; `cancel()` stops the model."""

    def __init__(self, result: RunResultStreaming) -> None:
        self._result = result

    @classmethod
    def start(
        cls, llm: LLM, mode: AgentMode, items: Sequence[TResponseInputItem], context: AnswerContext
    ) -> AnswerStream:
        return cls(Runner.run_streamed(build_agent(llm, mode), list(items), context=context, max_turns=MAX_TURNS))

    async def deltas(self) -> AsyncIterator[str]:
        wrote_text = False
        new_turn = False
        async for event in self._result.stream_events():
            if event.type != "raw_response_event":
                continue
            data = event.data
            if data.type == "response.created":
                new_turn = True
            elif data.type == "response.output_text.delta" and data.delta:
                if new_turn and wrote_text:
                    yield TURN_SEPARATOR
                new_turn = False
                wrote_text = True
                yield data.delta

    def cancel(self) -> None:
        self._result.cancel()

    @property
    def usage(self) -> RunUsage:
        return _usage(self._result.context_wrapper.usage)
