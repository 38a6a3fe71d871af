"""What every embedder shares: the Embedder protocol, EmbeddingError, and the vector helpers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

# Texts per onnxruntime run. Throughput is flat from 1 to 8 texts (13-15 a second for 256-token chunks on 2 cores)
# and falls beyond, while memory grows with batch x tokens^2 (attention): 0.6 GB at 8, 2.7 GB at 64.
ONNX_MAX_BATCH = 8
# Rough tokens-per-character of English for API models whose tokenizer we do not have.
API_CHARS_PER_TOKEN = 4


class EmbeddingError(RuntimeError):
    """Text could not be embedded; the message says why and what to change. `status` is the upstream HTTP status."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Embedder(Protocol):
    """Turns text into unit-length dense vectors of size `dim`; `model_id` names the vector space."""

    model_id: str
    dim: int

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...

    def count_tokens(self, text: str) -> int: ...


def normalise(vectors: Vectors) -> Vectors:
    """Each row scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    result: Vectors = (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
    return result


def approximate_tokens(text: str) -> int:
    """Tokens of `text` estimated from its length, for models whose tokenizer is not at hand."""
    return max(1, math.ceil(len(text) / API_CHARS_PER_TOKEN)) if text else 0
