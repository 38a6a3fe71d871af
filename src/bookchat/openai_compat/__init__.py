"""OpenAI-compatible API: `/v1/models` and `/v1/chat/completions` on top of bookchat's chat service."""

from bookchat.openai_compat.router import router

__all__ = ["router"]
