"""The embedder the settings name: `create_embedder`, the one place that maps a provider to its class."""

from __future__ import annotations

from bookchat.config import DEFAULT_GEMINI_EMBEDDING_MODEL, GEMINI_OPENAI_BASE_URL, Settings
from bookchat.retrieval.embeddings.api_embedder import (
    API_MAX_RETRIES,
    API_TIMEOUT_SECONDS,
    DEFAULT_OPENAI_EMBEDDING_MODEL,
    ApiEmbedder,
)
from bookchat.retrieval.embeddings.base import Embedder, EmbeddingError
from bookchat.retrieval.embeddings.fastembed_embedder import DEFAULT_FASTEMBED_MODEL, FastembedEmbedder
from bookchat.retrieval.embeddings.onnx_embedder import OnnxEmbedder


def create_embedder(settings: Settings) -> Embedder:
    """The embedder `settings.embedding_provider` names. Loading a local model takes about a second."""
    provider = settings.embedding_provider
    batch = settings.embedding_batch_size
    if provider == "local":
        if settings.embedding_model_path is not None:
            return OnnxEmbedder.from_folder(settings.embedding_model_path, batch_size=batch)
        return OnnxEmbedder.bundled(cache_dir=settings.data_dir / "models")
    if provider == "fastembed":
        return FastembedEmbedder(
            settings.embedding_model or DEFAULT_FASTEMBED_MODEL,
            cache_dir=settings.data_dir / "models" / "fastembed",
            batch_size=batch,
        )
    from openai import AsyncOpenAI

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
    base_url = settings.embedding_base_url
    if provider == "gemini":
        if key is None:
            raise EmbeddingError("BOOKCHAT_EMBEDDING_PROVIDER=gemini needs GEMINI_API_KEY (or BOOKCHAT_LLM_API_KEY)")
        model = settings.embedding_model or DEFAULT_GEMINI_EMBEDDING_MODEL
        base_url = base_url or GEMINI_OPENAI_BASE_URL
    else:
        model = settings.embedding_model or DEFAULT_OPENAI_EMBEDDING_MODEL
        base_url = base_url or settings.llm_base_url
        if key is None and base_url is None:
            raise EmbeddingError(
                "BOOKCHAT_EMBEDDING_PROVIDER=openai needs BOOKCHAT_LLM_API_KEY, or BOOKCHAT_LLM_BASE_URL for a "
                "server that takes no key"
            )
    client = AsyncOpenAI(
        api_key=key or "unused",  # local OpenAI-compatible servers (Ollama, vLLM) ignore the key
        base_url=base_url,
        max_retries=API_MAX_RETRIES,
        timeout=API_TIMEOUT_SECONDS,
    )
    return ApiEmbedder(client, model, dim=settings.embedding_dim, model_id=f"{provider}:{model}", batch_size=batch)
