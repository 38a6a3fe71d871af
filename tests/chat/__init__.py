"""Tests of POST /api/chat: modes, citations, streaming, upstream failures."""
