"""Conversation test fixtures: the chat apps of tests/chat/fixtures.py (history is made by chatting)."""

from tests.chat.fixtures import chat_app, extractive_app, reader

__all__ = ["chat_app", "extractive_app", "reader"]
