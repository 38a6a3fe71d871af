"""The loaded-document type every loader returns, and the error a loader raises for a file it cannot read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

DocumentFormat = Literal["markdown", "mdx", "html", "text", "pdf"]

# Formats whose text carries Markdown headings (plain text and PDF pages are prose only).
STRUCTURED_FORMATS: frozenset[DocumentFormat] = frozenset({"markdown", "mdx", "html"})


class UnsupportedDocument(ValueError):
    """A file the loaders cannot read: `reason` is "unsupported-type", "binary" or "invalid"."""

    def __init__(self, message: str, *, reason: Literal["unsupported-type", "binary", "invalid"]) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Page:
    """A stretch of a document's text; `number` is the 1-based PDF page, None for other formats."""

    text: str
    number: int | None = None


@dataclass(frozen=True)
class LoadedDocument:
    """One source file, cleaned: Markdown-like `pages` text plus the metadata citations need.

    `source_path` identifies the document in the collection; `doc_path` is the path inside the docs
    root that Docusaurus sees (it decides the page URL); both are POSIX and relative.
    """

    source_path: str
    format: DocumentFormat
    title: str
    pages: tuple[Page, ...]
    front_matter: Mapping[str, Any] = field(default_factory=dict)
    doc_path: str = ""

    def __post_init__(self) -> None:
        if not self.doc_path:
            object.__setattr__(self, "doc_path", self.source_path)

    @property
    def structured(self) -> bool:
        """Whether the text has Markdown headings worth following."""
        return self.format in STRUCTURED_FORMATS

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages)

    @property
    def slug(self) -> str | None:
        return front_matter_str(self.front_matter, "slug")

    @property
    def sidebar_label(self) -> str | None:
        return front_matter_str(self.front_matter, "sidebar_label")

    @property
    def description(self) -> str | None:
        return front_matter_str(self.front_matter, "description")


def front_matter_str(front_matter: Mapping[str, Any], key: str) -> str | None:
    """A front-matter value as non-empty text; booleans, lists and mappings are not text and give None."""
    value = front_matter.get(key)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None
