"""The errors every vector-store engine raises: one type that names the fix, whatever the engine."""

from __future__ import annotations


class VectorStoreError(RuntimeError):
    """Qdrant cannot be used as configured; the message names the fix."""


class EmbeddingModelMismatch(VectorStoreError):
    """The collection was built with another embedding model or size than the one configured."""


class FolderInUse(VectorStoreError):
    """Another process holds the embedded index's folder."""


class UnsupportedRequest(ValueError):
    """A request the embedded engine's bridge does not translate (bookchat never makes one)."""
