"""Builders shared by the retrieval and search tests."""

from __future__ import annotations

from bookchat.retrieval.search import Passage, chunk_point_id


def passage(
    document_id: str,
    chunk_index: int,
    text: str,
    *,
    source_path: str = "docs/intro.md",
    title: str = "Introduction",
    heading_path: tuple[str, ...] = (),
    url: str | None = None,
    page: int | None = None,
) -> Passage:
    return Passage(
        chunk_id=chunk_point_id(document_id, chunk_index),
        document_id=document_id,
        chunk_index=chunk_index,
        source_path=source_path,
        title=title,
        url=url,
        heading_path=heading_path,
        text=text,
        page=page,
    )
