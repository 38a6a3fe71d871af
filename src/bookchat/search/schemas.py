"""Request and response bodies of POST /api/search."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bookchat.retrieval.search import Passage

SearchQuery = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class SearchFiltersIn(BaseModel):
    """Narrow the search to some documents and/or to the files under a folder of the book."""

    model_config = ConfigDict(extra="forbid")

    document_ids: list[UUID] | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Only chunks of these documents (ids from GET /api/documents).",
        examples=[["5b0c2a4e-9a4f-5d53-8f3e-2f1c8e6f7a10"]],
    )
    path_prefix: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        pattern=r"^[^\x00-\x1f]+$",
        description="Only documents whose source path is this file or lies under this folder.",
        examples=["docs/module-2"],
    )


class SearchRequest(BaseModel):
    """A search over the indexed book."""

    model_config = ConfigDict(extra="forbid")

    query: SearchQuery = Field(
        description="What to look for, in plain words (1–1000 characters).",
        examples=["How do I add a depth camera to a Gazebo robot?"],
    )
    limit: int = Field(10, ge=1, le=50, description="How many passages to return.", examples=[10])
    filters: SearchFiltersIn | None = Field(None, description="Optional restrictions.")
    mode: Literal["hybrid", "dense", "bm25"] = Field(
        "hybrid",
        description="`hybrid` (default) fuses semantic and keyword search; `dense` and `bm25` run one of them.",
        examples=["hybrid"],
    )


class SearchHit(BaseModel):
    """One passage, with where it comes from and how well it matched."""

    chunk_id: str = Field(examples=["0d5ef1f2-51a4-5c7e-a1b5-0d0b3f2f8c11"])
    document_id: str = Field(examples=["5b0c2a4e-9a4f-5d53-8f3e-2f1c8e6f7a10"])
    chunk_index: int = Field(ge=0, examples=[3])
    source_path: str = Field(examples=["docs/module-2/gazebo/sensors.md"])
    title: str = Field(examples=["Simulating sensors"])
    url: str | None = Field(examples=["https://book.example.org/docs/module-2/gazebo/sensors#depth-cameras"])
    heading_path: list[str] = Field(examples=[["Module 2", "Gazebo", "Depth cameras"]])
    text: str = Field(examples=["A depth camera plugin publishes..."])
    page: int | None = Field(None, examples=[None])
    score: float = Field(description="Fused rank score (hybrid) or similarity (dense, bm25).", examples=[0.0312])

    @classmethod
    def from_passage(cls, passage: Passage) -> SearchHit:
        return cls(
            chunk_id=passage.chunk_id,
            document_id=passage.document_id,
            chunk_index=passage.chunk_index,
            source_path=passage.source_path,
            title=passage.title,
            url=passage.url,
            heading_path=list(passage.heading_path),
            text=passage.text,
            page=passage.page,
            score=passage.score,
        )


class SearchResponse(BaseModel):
    """The best passages, best first."""

    query: str = Field(examples=["How do I add a depth camera to a Gazebo robot?"])
    mode: Literal["hybrid", "dense", "bm25"] = Field(examples=["hybrid"])
    hits: list[SearchHit]
    took_ms: float = Field(description="Time spent searching, in milliseconds.", examples=[14.2])
