"""Loaders: turn Markdown, MDX, HTML, plain-text and PDF bytes into clean, Markdown-like text and metadata."""

from __future__ import annotations

# One module a format, `registry.load_document` picking among them; code outside the package imports from here.
from bookchat.documents.loaders.decoding import decode_text
from bookchat.documents.loaders.document import (
    STRUCTURED_FORMATS,
    DocumentFormat,
    LoadedDocument,
    Page,
    UnsupportedDocument,
)
from bookchat.documents.loaders.html import load_html
from bookchat.documents.loaders.markdown import clean_mdx, load_markdown, split_front_matter, strip_tags
from bookchat.documents.loaders.naming import humanize, strip_number_prefix
from bookchat.documents.loaders.pdf import load_pdf
from bookchat.documents.loaders.plain_text import load_text
from bookchat.documents.loaders.registry import (
    CONTENT_TYPE_FORMATS,
    MAX_TITLE_CHARS,
    SUFFIX_FORMATS,
    detect_format,
    load_document,
)

__all__ = [
    "CONTENT_TYPE_FORMATS",
    "MAX_TITLE_CHARS",
    "STRUCTURED_FORMATS",
    "SUFFIX_FORMATS",
    "DocumentFormat",
    "LoadedDocument",
    "Page",
    "UnsupportedDocument",
    "clean_mdx",
    "decode_text",
    "detect_format",
    "humanize",
    "load_document",
    "load_html",
    "load_markdown",
    "load_pdf",
    "load_text",
    "split_front_matter",
    "strip_number_prefix",
    "strip_tags",
]
