"""The local embedder: a sentence-embedding model in ONNX with its Hugging Face tokenizer, run by onnxruntime."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from bookchat.retrieval.embeddings.base import ONNX_MAX_BATCH, EmbeddingError, Vectors, normalise
from bookchat.retrieval.embeddings.bundled_model import (
    BUNDLED_MAX_TOKENS,
    BUNDLED_MODEL_ID,
    verified_bundled_minilm_files,
)
from bookchat.retrieval.embeddings.int8_conversion import dynamic_int8_model
from bookchat.retrieval.embeddings.threads import EmbeddingThreads, cpu_count

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Pooling = Literal["mean", "cls"]
_PADDING_PIECE = "[PAD]"


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
        self._worker = EmbeddingThreads("embed", documents=threads or min(cpu_count(), 4))

    @classmethod
    def bundled(cls, *, cache_dir: Path, threads: int | None = None) -> OnnxEmbedder:
        """all-MiniLM-L6-v2 (384 dimensions) as installed, nothing downloaded, each file checked against its pinned
        SHA-256: its int8 ONNX file, converted on first use to run its MatMuls on int8 (a second or two, once) and
        kept in `cache_dir`, and the tokenizer bookchat ships."""
        source, tokenizer_file = verified_bundled_minilm_files()
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
            return normalise(states)
        if self.pooling == "cls":
            return normalise(states[:, 0])
        weights = mask[..., None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalise(pooled)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
