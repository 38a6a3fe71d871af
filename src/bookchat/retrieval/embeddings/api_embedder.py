"""The API embedder: vectors from an OpenAI-compatible `/embeddings` endpoint (Gemini, OpenAI, Ollama, vLLM)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bookchat.retrieval.embeddings.base import EmbeddingError, approximate_tokens, normalise

if TYPE_CHECKING:
    from openai import AsyncOpenAI

DEFAULT_OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"
API_MAX_RETRIES = 4
API_TIMEOUT_SECONDS = 30.0


class ApiEmbedder:
    """An OpenAI-compatible `/embeddings` endpoint (Gemini, OpenAI, Ollama, vLLM, ...).

    Retries with exponential backoff on 408/409/429/5xx and connection errors are the OpenAI SDK's own
    (`max_retries`; it honours `Retry-After`). Vectors are L2-normalised here because Gemini returns
    unnormalised vectors below its full 3072 dimensions.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        dim: int,
        model_id: str,
        batch_size: int = 64,
        send_dimensions: bool = True,
    ) -> None:
        self._client = client
        self.model = model
        self.dim = dim
        self.model_id = model_id
        self.batch_size = batch_size
        self.send_dimensions = send_dimensions

    def count_tokens(self, text: str) -> int:
        """An estimate (4 characters a token): the API's tokenizer is not available offline."""
        return approximate_tokens(text)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(await self._embed(list(texts[start : start + self.batch_size])))
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        return (await self._embed([text]))[0]

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        import openai

        extra: dict[str, Any] = {"dimensions": self.dim} if self.send_dimensions else {}
        try:
            response = await self._client.embeddings.create(
                model=self.model, input=texts, encoding_format="float", **extra
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise EmbeddingError(
                f"the embeddings API at {self._client.base_url} refused the API key (HTTP {exc.status_code}); "
                "set BOOKCHAT_LLM_API_KEY (or GEMINI_API_KEY) to a valid key",
                status=exc.status_code,
            ) from exc
        except openai.APIStatusError as exc:
            raise EmbeddingError(
                f"the embeddings API at {self._client.base_url} answered HTTP {exc.status_code} for model "
                f"{self.model!r}{' after retries' if exc.status_code == 429 or exc.status_code >= 500 else ''}: "
                f"{_short(exc.message)}",
                status=exc.status_code,
            ) from exc
        except openai.APIConnectionError as exc:  # includes timeouts
            raise EmbeddingError(
                f"the embeddings API at {self._client.base_url} could not be reached: {exc}", status=None
            ) from exc
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(texts):
            raise EmbeddingError(f"the embeddings API returned {len(data)} vectors for {len(texts)} texts")
        vectors = np.asarray([item.embedding for item in data], dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise EmbeddingError(
                f"the embeddings API returned {vectors.shape[-1]}-dimensional vectors for model {self.model!r} "
                f"but BOOKCHAT_EMBEDDING_DIM is {self.dim}"
            )
        result: list[list[float]] = normalise(vectors).tolist()
        return result


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[:limit] + "…"
