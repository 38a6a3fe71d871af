"""Per-turn answering state shared by the chat service and the agent, free of the Agents SDK.

The extractive mode (no language model) never runs the agent, so the service imports the SDK — about a second
and a half of start-up — only when a model is configured (`bookchat.chat.agent`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bookchat.chat.prompts import PromptPassage
from bookchat.retrieval.search import HybridRetriever, Passage, SearchFilters

AgentMode = Literal["retrieval", "selection"]


@dataclass
class AnswerContext:
    """Per-request state the tool reads through `RunContextWrapper`: where to search and what was found.

    `passages` is the numbered list the model cites: passage `n` is `passages[n - 1]`. The tool appends
    new hits, so they get the next numbers and earlier numbers never change.
    """

    retriever: HybridRetriever | None
    filters: SearchFilters | None
    passages: list[Passage]
    search_limit: int
    searches: list[str] = field(default_factory=list)


def prompt_passage(number: int, passage: Passage) -> PromptPassage:
    return PromptPassage(number, passage.title, " › ".join(passage.heading_path), passage.text)


@dataclass(frozen=True)
class RunUsage:
    """Model calls and tokens of one turn, as the Agents SDK counted them."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
