"""Chat test fixtures (defined in tests/chat/fixtures.py, shared with the conversations tests)."""

from tests.chat.fixtures import chat_app, extractive_app, reader

__all__ = ["chat_app", "extractive_app", "reader"]
