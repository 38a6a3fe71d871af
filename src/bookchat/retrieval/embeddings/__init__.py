"""Embedders: text to dense vectors, locally (ONNX) or through an OpenAI-compatible API, off the event loop.

The names other modules use are re-exported here, so `from bookchat.retrieval.embeddings import X` does not depend
on which module of the package holds X.
"""

from __future__ import annotations

from bookchat.retrieval.embeddings.api_embedder import (
    API_MAX_RETRIES,
    API_TIMEOUT_SECONDS,
    DEFAULT_OPENAI_EMBEDDING_MODEL,
    ApiEmbedder,
)
from bookchat.retrieval.embeddings.base import (
    API_CHARS_PER_TOKEN,
    ONNX_MAX_BATCH,
    Embedder,
    EmbeddingError,
    Vectors,
    normalise,
)
from bookchat.retrieval.embeddings.bundled_model import (
    BUNDLED_MAX_TOKENS,
    BUNDLED_MODEL_ID,
    BUNDLED_ONNX_SHA256,
    BUNDLED_TOKENIZER_SHA256,
    bundled_minilm_files,
    verified_bundled_minilm_files,
)
from bookchat.retrieval.embeddings.factory import create_embedder
from bookchat.retrieval.embeddings.fastembed_embedder import DEFAULT_FASTEMBED_MODEL, FastembedEmbedder
from bookchat.retrieval.embeddings.int8_conversion import DYNAMIC_INT8_RECIPE, dynamic_int8_model
from bookchat.retrieval.embeddings.onnx_embedder import OnnxEmbedder, Pooling

__all__ = [
    "API_CHARS_PER_TOKEN",
    "API_MAX_RETRIES",
    "API_TIMEOUT_SECONDS",
    "BUNDLED_MAX_TOKENS",
    "BUNDLED_MODEL_ID",
    "BUNDLED_ONNX_SHA256",
    "BUNDLED_TOKENIZER_SHA256",
    "DEFAULT_FASTEMBED_MODEL",
    "DEFAULT_OPENAI_EMBEDDING_MODEL",
    "DYNAMIC_INT8_RECIPE",
    "ONNX_MAX_BATCH",
    "ApiEmbedder",
    "Embedder",
    "EmbeddingError",
    "FastembedEmbedder",
    "OnnxEmbedder",
    "Pooling",
    "Vectors",
    "bundled_minilm_files",
    "create_embedder",
    "dynamic_int8_model",
    "normalise",
    "verified_bundled_minilm_files",
]
