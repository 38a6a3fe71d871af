"""Fakes of external services used by the test suite (the LLM provider, over HTTP)."""
