"""Docusaurus page URLs: a document's slug from its path and front matter, and a chunk's `#anchor` or `#page=N`."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from bookchat.documents.chunking.packing import Chunk
from bookchat.documents.loaders import LoadedDocument, strip_number_prefix


def _strip_path_prefixes(path: str) -> str:
    return "/".join(strip_number_prefix(segment) for segment in path.split("/"))


def _resolve_pathname(to: str, base_dir: str) -> str:
    """`resolve-pathname` as Docusaurus uses it: `to` relative to the folder `base_dir` (ends with `/`)."""
    resolved = posixpath.normpath(posixpath.join(base_dir, to))
    if resolved.startswith("//"):
        resolved = "/" + resolved.lstrip("/")
    if to.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    return resolved


def docusaurus_slug(doc_path: str, front_matter: Mapping[str, Any] | None = None) -> str:
    """The URL path Docusaurus gives a doc at `doc_path` (relative to the docs folder), e.g. `/module-2/gazebo`.

    Follows plugin-content-docs: number prefixes (`01-`) are stripped from file and folder names unless
    `parse_number_prefixes: false`; front-matter `id` replaces the file name, `slug` (absolute or relative)
    replaces the path; `index.md`, `README.md` and `folder/folder.md` stand for their folder.
    """
    front_matter = front_matter or {}
    path = PurePosixPath(doc_path)
    stem = path.stem
    dir_name = str(path.parent)
    parse_prefixes = front_matter.get("parse_number_prefixes", True) is not False
    unprefixed = strip_number_prefix(stem) if parse_prefixes else stem
    front_id = front_matter.get("id")
    base_id = str(front_id) if isinstance(front_id, str | int) and str(front_id) else unprefixed
    front_slug = front_matter.get("slug")
    slug = str(front_slug) if isinstance(front_slug, str | int) else None
    if slug is not None and slug.startswith("/"):
        return slug
    if dir_name == ".":
        dir_slug = "/"
    else:
        dir_slug = "/" + (_strip_path_prefixes(dir_name) if parse_prefixes else dir_name).strip("/") + "/"
    last_dir = dir_name.rsplit("/", 1)[-1].lower()
    if not slug and stem.lower() in ("index", "readme", last_dir):
        return dir_slug
    return _resolve_pathname(slug if slug is not None else base_id, dir_slug)


_URL_SAFE = "/-._~!$&'()*+,;=:@%"


def document_url(document: LoadedDocument, base_url: str | None) -> str | None:
    """The page URL of a document under `base_url` (the book's docs URL), or None without a base URL."""
    if not base_url:
        return None
    base = base_url.rstrip("/")
    if document.format in ("markdown", "mdx"):
        path = docusaurus_slug(document.doc_path, document.front_matter)
    else:
        path = "/" + document.doc_path.lstrip("/")
    return base + quote(path, safe=_URL_SAFE)


def chunk_url(document_url: str | None, chunk: Chunk) -> str | None:
    """The document URL pointing at the chunk: `#anchor` of its heading, or `#page=N` in a PDF."""
    if document_url is None:
        return None
    if chunk.anchor:
        return f"{document_url}#{quote(chunk.anchor, safe='-._~')}"
    if chunk.page is not None:
        return f"{document_url}#page={chunk.page}"
    return document_url
