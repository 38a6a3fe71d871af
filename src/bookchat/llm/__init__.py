"""The language model: provider factory (Gemini / OpenAI-compatible / none), error mapping, extractive fallback."""

from bookchat.llm.errors import upstream_error
from bookchat.llm.extractive import extractive_answer
from bookchat.llm.provider import LLM, create_llm

__all__ = ["LLM", "create_llm", "extractive_answer", "upstream_error"]
