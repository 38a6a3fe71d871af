"""Tests of the conversation history API."""
