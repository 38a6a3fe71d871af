"""Tests of the LLM provider factory, error mapping and the extractive fallback."""
