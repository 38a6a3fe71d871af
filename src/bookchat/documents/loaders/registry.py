"""Which loader reads a file: its format from the file name or MIME type, and the one entry point that loads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import PurePosixPath

from bookchat.documents.loaders.decoding import looks_binary
from bookchat.documents.loaders.document import DocumentFormat, LoadedDocument, UnsupportedDocument
from bookchat.documents.loaders.html import load_html
from bookchat.documents.loaders.markdown import load_markdown
from bookchat.documents.loaders.pdf import load_pdf
from bookchat.documents.loaders.plain_text import load_text

SUFFIX_FORMATS: Mapping[str, DocumentFormat] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "mdx",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".text": "text",
    ".pdf": "pdf",
}
CONTENT_TYPE_FORMATS: Mapping[str, DocumentFormat] = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/mdx": "mdx",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
    "application/pdf": "pdf",
}
MAX_TITLE_CHARS = 500  # the documents.title column's limit


def detect_format(path: str, content_type: str | None = None) -> DocumentFormat | None:
    """The format of a file from its name, else from a MIME type; None when bookchat cannot read it."""
    fmt = SUFFIX_FORMATS.get(PurePosixPath(path).suffix.lower())
    if fmt is None and content_type:
        fmt = CONTENT_TYPE_FORMATS.get(content_type.split(";", 1)[0].strip().lower())
    return fmt


def load_document(
    source_path: str,
    data: bytes,
    *,
    fmt: DocumentFormat | None = None,
    content_type: str | None = None,
    doc_path: str | None = None,
) -> LoadedDocument:
    """Load one document from its bytes; raise `UnsupportedDocument` for unknown types, binary or broken files.

    `fmt` overrides detection by file name (then MIME type). `doc_path` is the path Docusaurus sees, for URLs.
    """
    fmt = fmt or detect_format(source_path, content_type)
    if fmt is None:
        raise UnsupportedDocument(f"{source_path}: unsupported file type", reason="unsupported-type")
    if fmt == "pdf":
        if not data.startswith(b"%PDF"):
            raise UnsupportedDocument(f"{source_path}: not a PDF file", reason="invalid")
        document = load_pdf(source_path, data)
    elif fmt == "html":
        if looks_binary(data):
            raise UnsupportedDocument(f"{source_path}: binary content, not HTML", reason="binary")
        document = load_html(source_path, data)
    elif fmt == "text":
        document = load_text(source_path, data)
    else:
        document = load_markdown(source_path, data, mdx=fmt == "mdx")
    if doc_path:
        document = replace(document, doc_path=doc_path)
    if len(document.title) > MAX_TITLE_CHARS:
        document = replace(document, title=document.title[: MAX_TITLE_CHARS - 1] + "…")
    return document
