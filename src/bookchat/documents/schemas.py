"""Request and response models of the admin documents API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A JSON document's text may not exceed this many characters; the byte limit (settings.max_upload_bytes) is
# checked too, by the service, and is usually the tighter one.
MAX_CONTENT_CHARS = 100_000_000


class InvalidSourcePath(ValueError):
    """A document path that would escape the corpus or cannot be stored."""


def normalise_source_path(value: str) -> str:
    """`./docs\\a//b.md` → `docs/a/b.md`; rejects `..`, absolute paths, control characters and empty names."""
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise InvalidSourcePath("the path contains control characters")
    cleaned = value.replace("\\", "/").strip()
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise InvalidSourcePath("the path must be relative, like `module-1/intro.md`")
    parts = [part.strip() for part in cleaned.split("/") if part.strip() not in ("", ".")]
    if any(part == ".." for part in parts):
        raise InvalidSourcePath("the path may not contain `..`")
    if not parts:
        raise InvalidSourcePath("the path is empty")
    path = "/".join(parts)
    if len(path) > 1000:
        raise InvalidSourcePath("the path is longer than 1000 characters")
    return path


class DocumentCreate(BaseModel):
    """A document sent as JSON text: its path in the corpus (which decides its type and URL) and content."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "source_path": "docs/module-1/01-nodes.md",
                    "content": "---\ntitle: Nodes\n---\n\n# Nodes\n\nA node is one process of the ROS graph.",
                }
            ]
        },
    )

    source_path: str = Field(
        min_length=1,
        max_length=1000,
        description="Path of the document in the corpus; its extension picks the loader (.md, .mdx, .html, .txt).",
        examples=["docs/module-1/01-nodes.md"],
    )
    content: str = Field(
        min_length=1, max_length=MAX_CONTENT_CHARS, description="The document's text.", examples=["# Nodes\n\n..."]
    )
    title: str | None = Field(
        None, min_length=1, max_length=500, description="Overrides the title found in the document.", examples=["Nodes"]
    )
    url: str | None = Field(
        None,
        max_length=2000,
        pattern=r"^https?://\S+$",
        description="Page URL for citations; by default derived from the path and BOOKCHAT_PUBLIC_BASE_URL.",
        examples=["https://book.example.org/docs/module-1/nodes"],
    )

    @field_validator("source_path")
    @classmethod
    def _path(cls, value: str) -> str:
        return normalise_source_path(value)


class DocumentOut(BaseModel):
    """A document of the corpus as recorded in PostgreSQL."""

    model_config = ConfigDict(from_attributes=True)

    id: UUID = Field(examples=["0f8c5a52-5f0e-5a7d-9a57-3f6d4c1e2b10"])
    source_path: str = Field(examples=["docs/module-1/01-nodes.md"])
    title: str = Field(examples=["Nodes"])
    url: str | None = Field(examples=["https://book.example.org/docs/module-1/nodes"])
    status: Literal["ready", "pending"] = Field(
        description="`pending` while its chunks are being written (or after an interrupted ingestion).",
        examples=["ready"],
    )
    chunk_count: int = Field(ge=0, examples=[7])
    embedding_model: str = Field(examples=["sentence-transformers/all-MiniLM-L6-v2"])
    content_hash: str = Field(description="SHA-256 of the content and chunking settings.", examples=["3f2a..."])
    created_at: datetime
    updated_at: datetime


class DocumentPage(BaseModel):
    """One page of documents, ordered by path; pass `next_cursor` back as `cursor` for the next page."""

    items: list[DocumentOut]
    next_cursor: str | None = Field(description="Opaque; null on the last page.", examples=[None])


class IngestedDocument(BaseModel):
    """What happened to one document of an ingestion."""

    id: UUID
    source_path: str = Field(examples=["docs/module-1/01-nodes.md"])
    outcome: Literal["added", "updated", "unchanged", "removed"] = Field(examples=["added"])
    chunks: int = Field(ge=0, examples=[7])


class IngestResponse(BaseModel):
    """The summary of an ingestion (upload or reindex)."""

    run_id: UUID | None = Field(description="The `ingest_runs` row of this run.")
    added: int = Field(ge=0, examples=[1])
    updated: int = Field(ge=0, examples=[0])
    unchanged: int = Field(ge=0, examples=[0])
    removed: int = Field(ge=0, examples=[0])
    chunks: int = Field(ge=0, description="Chunks embedded and written by this run.", examples=[7])
    seconds: float = Field(ge=0, examples=[0.42])
    documents: list[IngestedDocument]
