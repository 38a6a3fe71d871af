"""The plain-text loader: decoded text as one page of prose, titled by its file name."""

from __future__ import annotations

from bookchat.documents.loaders.decoding import decode_text
from bookchat.documents.loaders.document import LoadedDocument, Page
from bookchat.documents.loaders.naming import title_from_path


def load_text(source_path: str, data: bytes) -> LoadedDocument:
    text = decode_text(data, source_path).strip("\n")
    return LoadedDocument(
        source_path=source_path, format="text", title=title_from_path(source_path), pages=(Page(text),)
    )
