"""Embedders: the bundled ONNX model, local folders, fastembed's error path, and the API embedder over HTTP."""

from __future__ import annotations

import itertools
import json
import logging
import re
import sys
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from openai import AsyncOpenAI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bookchat.config import DEFAULT_GEMINI_EMBEDDING_MODEL, Settings
from bookchat.retrieval.embeddings import (
    BUNDLED_MODEL_ID,
    ONNX_MAX_BATCH,
    ApiEmbedder,
    EmbeddingError,
    FastembedEmbedder,
    OnnxEmbedder,
    bundled_minilm_files,
    create_embedder,
    dynamic_int8_model,
)
from tests.conftest import share_models
from tests.fakes.llm_server import FakeLLMServer

API_KEY = "sk-test-embeddings"


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------------------- local model


async def test_bundled_model_gives_unit_vectors_where_similar_sentences_are_close(embedder: OnnxEmbedder) -> None:
    assert embedder.model_id == BUNDLED_MODEL_ID
    assert embedder.dim == 384
    cat, kitten, revenue = await embedder.embed_documents(
        ["A cat sits on the mat.", "A kitten is resting on a rug.", "Quarterly revenue grew by five percent."]
    )
    assert all(abs(np.linalg.norm(vector) - 1) < 1e-5 for vector in (cat, kitten, revenue))
    assert cosine(cat, kitten) > 0.5
    assert cosine(cat, kitten) > cosine(cat, revenue) + 0.4
    query = await embedder.embed_query("Where is the cat?")
    assert cosine(query, cat) > cosine(query, revenue)


async def test_batches_keep_the_input_order_and_match_single_embeddings(embedder: OnnxEmbedder, tmp_path: Path) -> None:
    texts = [
        "short",
        "a considerably longer sentence about robots and their sensors",
        "mid length text",
        "x",
        "the last one, of medium size",
    ]
    # The bundled model runs one text at a time: a document's vector is exactly the query's for the same text.
    assert embedder.batch_size == 1
    for text, vector in zip(texts, await embedder.embed_documents(texts), strict=True):
        assert vector == await embedder.embed_query(text)
    # A folder model runs them in batches (of 2 here: three runs, sorted by length) and puts them back in order.
    folder = OnnxEmbedder.from_folder(_link_bundled(tmp_path / "plain"), batch_size=2, threads=1)
    batched = await folder.embed_documents(texts)
    assert len(batched) == len(texts)
    for text, vector in zip(texts, batched, strict=True):
        assert cosine(vector, await folder.embed_query(text)) > 0.999
    assert await embedder.embed_documents([]) == []


async def test_long_texts_are_truncated_to_the_model_window_not_rejected(embedder: OnnxEmbedder) -> None:
    text = "robots " * 2000
    assert embedder.count_tokens(text) == 2000  # counting is never truncated
    (vector,) = await embedder.embed_documents([text])
    assert len(vector) == 384


def test_onnx_batches_are_capped_to_bound_memory(tmp_path: Path) -> None:
    folder = _link_bundled(tmp_path / "plain")
    assert OnnxEmbedder.from_folder(folder, batch_size=64, threads=1).batch_size == ONNX_MAX_BATCH


def test_count_tokens_counts_word_pieces_without_special_tokens(embedder: OnnxEmbedder) -> None:
    assert embedder.count_tokens("") == 0
    assert embedder.count_tokens("hello world") == 2
    assert embedder.count_tokens("Gazebo") >= 2  # split into word pieces


async def test_model_runs_off_the_event_loop(embedder: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    original = embedder._encode

    def recording(texts: list[str]) -> Any:
        threads.append(threading.current_thread().name)
        return original(texts)

    monkeypatch.setattr(embedder, "_encode", recording)
    await embedder.embed_query("a question")
    await embedder.embed_documents(["a passage"])
    assert threads[0].startswith("embed-queries")
    assert threads[1].startswith("embed-documents")
    assert threading.current_thread().name not in threads


async def test_documents_run_side_by_side_in_order(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each run uses one thread; with threads=2 two runs go at once. The barrier only opens for two runs in flight.
    embedder = OnnxEmbedder.bundled(cache_dir=models_dir, threads=2)
    texts = ["a short one", "a somewhat longer passage about robots", "mid length text", "x"]
    expected = [await embedder.embed_query(text) for text in texts]
    both_running = threading.Barrier(2, timeout=10)
    threads: set[str] = set()
    calls = itertools.count()
    original = embedder._encode

    def meeting(batch: list[str]) -> Any:
        threads.add(threading.current_thread().name)
        if next(calls) < 2:  # the first two runs wait for each other
            both_running.wait()
        return original(batch)

    monkeypatch.setattr(embedder, "_encode", meeting)
    vectors = await embedder.embed_documents(texts)
    assert len(threads) == 2
    assert all(name.startswith("embed-documents") for name in threads)
    for vector, alone in zip(vectors, expected, strict=True):
        assert np.allclose(vector, alone, atol=1e-6)


# ------------------------------------------------------------------------------------------- dynamic int8


def _integer_matmuls(model_file: Path) -> tuple[int, int]:
    """(integer MatMuls, float MatMuls with a constant weight) in an ONNX file."""
    graph = onnx.load(str(model_file)).graph
    constants = {tensor.name for tensor in graph.initializer}
    integer = sum(node.op_type == "MatMulInteger" for node in graph.node)
    weighted = sum(node.op_type == "MatMul" and node.input[1] in constants for node in graph.node)
    return integer, weighted


def test_the_bundled_model_is_converted_once_then_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source, _ = bundled_minilm_files()
    cache = tmp_path / "models"
    with caplog.at_level(logging.DEBUG):
        converted = dynamic_int8_model(source, cache, name="minilm")
    # One line of ours; none of the quantizer's own (a line per tensor, on the root logger).
    assert [record.name for record in caplog.records] == ["bookchat.retrieval.embeddings"]
    assert "converting" in caplog.records[0].getMessage()
    assert converted.parent == cache
    assert converted.name.startswith("minilm-")
    assert list(cache.iterdir()) == [converted]  # no temporary file left behind
    assert converted.stat().st_mode & 0o777 == 0o644  # readable by another account serving the same folder
    # Every weighted MatMul of the bundled file (6 layers x 6) now runs on integers; none is left in float.
    assert _integer_matmuls(converted) == (36, 0)

    written = converted.stat()
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        assert dynamic_int8_model(source, cache, name="minilm") == converted
    assert caplog.records == []
    assert (converted.stat().st_ino, converted.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


def test_two_conversions_at_once_leave_one_whole_file(tmp_path: Path) -> None:
    source, _ = bundled_minilm_files()
    cache = tmp_path / "models"
    start = threading.Barrier(2)

    def convert() -> Path:
        start.wait()
        return dynamic_int8_model(source, cache, name="minilm")

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda _: convert(), range(2))
    assert first == second
    assert list(cache.iterdir()) == [first]
    assert _integer_matmuls(first) == (36, 0)


async def test_the_converted_model_embeds_like_the_bundled_file(embedder: OnnxEmbedder) -> None:
    source, tokenizer = bundled_minilm_files()
    original = OnnxEmbedder(source, tokenizer, model_id="weight-only-int8", threads=1)
    texts = [
        "A cat sits on the mat.",
        "Quarterly revenue grew by five percent.",
        "The robot localises itself with a lidar and wheel odometry, fused by an extended Kalman filter. " * 6,
    ]
    for converted, reference in zip(
        await embedder.embed_documents(texts), await original.embed_documents(texts), strict=True
    ):
        assert cosine(converted, reference) > 0.98  # 0.994 on average over a book's chunks


def test_an_unwritable_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(EmbeddingError, match="cannot write the converted embedding model"):
        dynamic_int8_model(bundled_minilm_files()[0], tmp_path / "file" / "models", name="minilm")


def _link_bundled(folder: Path, *, onnx_subfolder: bool = False) -> Path:
    model, tokenizer = bundled_minilm_files()
    target = folder / "onnx" if onnx_subfolder else folder
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.onnx").symlink_to(model)
    (folder / "tokenizer.json").symlink_to(tokenizer)
    return folder


def test_a_local_folder_with_sentence_transformers_files(tmp_path: Path) -> None:
    folder = _link_bundled(tmp_path / "my-model", onnx_subfolder=True)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    model = OnnxEmbedder.from_folder(folder, threads=1)
    assert (model.model_id, model.dim, model.max_tokens, model.pooling) == ("onnx:my-model", 384, 128, "cls")


def test_settings_select_a_local_folder(tmp_path: Path) -> None:
    folder = _link_bundled(tmp_path / "plain")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    model = create_embedder(settings(embedding_model_path=folder))
    assert isinstance(model, OnnxEmbedder)
    assert (model.model_id, model.max_tokens, model.pooling) == ("onnx:plain", 256, "mean")


def test_bad_local_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="is not a folder"):
        OnnxEmbedder.from_folder(tmp_path / "missing")
    with pytest.raises(EmbeddingError, match=r"no model\.onnx"):
        OnnxEmbedder.from_folder(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not an onnx file")
    (tmp_path / "tokenizer.json").symlink_to(bundled_minilm_files()[1])
    with pytest.raises(EmbeddingError, match="cannot load the ONNX model"):
        OnnxEmbedder.from_folder(tmp_path)


def test_the_default_provider_is_the_bundled_model(tmp_path: Path, models_dir: Path) -> None:
    model = create_embedder(settings(data_dir=share_models(tmp_path / "data", models_dir)))
    assert isinstance(model, OnnxEmbedder)
    assert model.model_id == BUNDLED_MODEL_ID
    assert [path.name for path in (tmp_path / "data" / "models").glob("all-MiniLM-L6-v2-dynamic-int8-*.onnx")]


def test_the_fastembed_provider_without_its_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fastembed", None)  # what an installation without the extra sees
    with pytest.raises(EmbeddingError, match=re.escape("pip install 'bookchat[fastembed]'")):
        create_embedder(settings(embedding_provider="fastembed", embedding_model="BAAI/bge-small-en-v1.5"))
    with pytest.raises(EmbeddingError, match="needs the fastembed package"):
        FastembedEmbedder("BAAI/bge-small-en-v1.5", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------- API embedder


class FlakyEmbeddingsServer(FakeLLMServer):
    """The shared fake OpenAI server, with scripted failures (status codes) in front of /v1/embeddings."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures: deque[int] = deque()
        self.embedding_calls = 0

    async def _embeddings(self, request: Request) -> Response:
        self.embedding_calls += 1
        if self.failures:
            status = self.failures.popleft()
            # retry-after-ms keeps the client's backoff short in tests.
            return JSONResponse(
                {"error": {"message": f"scripted {status}", "type": "server_error", "code": status}},
                status_code=status,
                headers={"retry-after-ms": "5"},
            )
        return await super()._embeddings(request)


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FlakyEmbeddingsServer]:
    server = FlakyEmbeddingsServer(api_key=API_KEY)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(fake_api: FlakyEmbeddingsServer) -> FlakyEmbeddingsServer:
    fake_api.reset()
    fake_api.failures.clear()
    fake_api.embedding_calls = 0
    return fake_api


def api_embedder(server: FakeLLMServer, *, key: str = API_KEY, retries: int = 3, **kwargs: Any) -> ApiEmbedder:
    client = AsyncOpenAI(api_key=key, base_url=server.base_url, max_retries=retries, timeout=5)
    values: dict[str, Any] = {"dim": 768, "model_id": "gemini:test", "batch_size": 2} | kwargs
    return ApiEmbedder(client, "gemini-embedding-001", **values)


async def test_api_embedder_batches_and_normalises(api: FlakyEmbeddingsServer) -> None:
    model = api_embedder(api)
    vectors = await model.embed_documents(["one robot", "two robots", "three", "four", "five"])
    assert len(vectors) == 5
    assert all(len(vector) == 768 and abs(np.linalg.norm(vector) - 1) < 1e-5 for vector in vectors)
    assert [len(body["input"]) for body in api.embedding_requests] == [2, 2, 1]
    assert all(body["dimensions"] == 768 and body["model"] == "gemini-embedding-001" for body in api.embedding_requests)
    query = await model.embed_query("one robot")
    assert cosine(query, vectors[0]) > 0.999


async def test_api_embedder_retries_rate_limits_and_server_errors(api: FlakyEmbeddingsServer) -> None:
    api.failures.extend([429, 503])
    vector = await api_embedder(api).embed_query("a question")
    assert len(vector) == 768
    assert api.embedding_calls == 3


async def test_api_embedder_gives_up_after_its_retries(api: FlakyEmbeddingsServer) -> None:
    api.failures.extend([500, 500, 500])
    with pytest.raises(EmbeddingError, match="HTTP 500") as caught:
        await api_embedder(api, retries=1).embed_query("a question")
    assert caught.value.status == 500
    assert api.embedding_calls == 2
    api.failures.clear()
    api.failures.extend([429, 429])
    with pytest.raises(EmbeddingError, match="after retries") as caught:
        await api_embedder(api, retries=1).embed_query("a question")
    assert caught.value.status == 429


async def test_a_bad_api_key_is_a_clear_error_without_retries(api: FlakyEmbeddingsServer) -> None:
    with pytest.raises(EmbeddingError, match="refused the API key") as caught:
        await api_embedder(api, key="sk-wrong").embed_query("a question")
    assert caught.value.status == 401
    assert "sk-wrong" not in str(caught.value)
    assert api.embedding_calls == 1


async def test_a_dimension_mismatch_is_reported(api: FlakyEmbeddingsServer) -> None:
    model = api_embedder(api, dim=64, send_dimensions=False)  # the fake then answers with 768
    with pytest.raises(EmbeddingError, match="768-dimensional"):
        await model.embed_query("a question")


async def test_an_unreachable_api_is_a_clear_error() -> None:
    client = AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    with pytest.raises(EmbeddingError, match="could not be reached"):
        await ApiEmbedder(client, "m", dim=8, model_id="openai:m").embed_query("hello")


def test_api_count_tokens_is_an_estimate(api: FlakyEmbeddingsServer) -> None:
    model = api_embedder(api)
    assert model.count_tokens("") == 0
    assert model.count_tokens("abcd" * 10) == 10


async def test_create_embedder_for_gemini_and_openai(api: FlakyEmbeddingsServer) -> None:
    gemini = create_embedder(
        settings(embedding_provider="gemini", embedding_base_url=api.base_url, BOOKCHAT_LLM_API_KEY=API_KEY)
    )
    assert isinstance(gemini, ApiEmbedder)
    assert (gemini.model_id, gemini.dim) == (f"gemini:{DEFAULT_GEMINI_EMBEDDING_MODEL}", 768)
    assert len(await gemini.embed_query("hello")) == 768
    openai = create_embedder(
        settings(
            embedding_provider="openai", llm_base_url=api.base_url, embedding_dim=256, BOOKCHAT_LLM_API_KEY=API_KEY
        )
    )
    assert (openai.model_id, openai.dim) == ("openai:text-embedding-3-small", 256)
    assert len(await openai.embed_query("hello")) == 256


def test_api_providers_need_a_key_or_an_endpoint() -> None:
    with pytest.raises(EmbeddingError, match="GEMINI_API_KEY"):
        create_embedder(settings(embedding_provider="gemini"))
    with pytest.raises(EmbeddingError, match="BOOKCHAT_LLM_API_KEY"):
        create_embedder(settings(embedding_provider="openai"))
