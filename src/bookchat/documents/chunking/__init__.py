"""Chunking: split loaded documents along their headings into token-sized passages with Docusaurus URLs."""

from __future__ import annotations

# `sections` parses, `sizing` counts and cuts, `packing` makes the chunks, `urls` points at them; code outside
# imports from here. Slugger and github_slug live with the heading helpers in documents.markdown, re-exported for
# the callers that always took them from here.
from bookchat.documents.chunking.packing import (
    CHUNKER_VERSION,
    Chunk,
    chunk_document,
    chunk_markdown,
    chunk_sections,
)
from bookchat.documents.chunking.sections import Block, BlockKind, Section, parse_markdown, parse_plain
from bookchat.documents.chunking.sizing import TokenCounter
from bookchat.documents.chunking.urls import chunk_url, document_url, docusaurus_slug
from bookchat.documents.markdown import Slugger, github_slug

__all__ = [
    "CHUNKER_VERSION",
    "Block",
    "BlockKind",
    "Chunk",
    "Section",
    "Slugger",
    "TokenCounter",
    "chunk_document",
    "chunk_markdown",
    "chunk_sections",
    "chunk_url",
    "document_url",
    "docusaurus_slug",
    "github_slug",
    "parse_markdown",
    "parse_plain",
]
