"""The language model: provider factory (Gemini / OpenAI-compatible / none), error mapping, extractive fallback.

Import the submodules themselves: `provider` loads the OpenAI Agents SDK, which the extractive mode never needs.
"""
