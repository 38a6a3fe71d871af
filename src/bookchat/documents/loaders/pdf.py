"""The PDF loader: each page's extracted text as a numbered page, titled by the PDF's metadata."""

from __future__ import annotations

import io
import logging
import re

from bookchat.documents.loaders.document import LoadedDocument, Page, UnsupportedDocument
from bookchat.documents.loaders.naming import title_from_path

# The package's logger, as before the loaders were split up, so the `logger` field of its log lines stays put.
log = logging.getLogger("bookchat.documents.loaders")


def load_pdf(source_path: str, data: bytes) -> LoadedDocument:
    # Imported here so that only PDF ingestion pays for pypdf.
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedDocument(f"{source_path}: the PDF is password-protected", reason="invalid")
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            text = _tidy_pdf_text(page.extract_text() or "")
            if text:
                pages.append(Page(text, number))
        metadata_title = (reader.metadata.title if reader.metadata else None) or ""
    except UnsupportedDocument:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise UnsupportedDocument(f"{source_path}: not a readable PDF ({exc})", reason="invalid") from exc
    if not pages:
        log.warning("PDF has no extractable text (scanned?)", extra={"source_path": source_path})
    title = str(metadata_title).strip() or title_from_path(source_path)
    return LoadedDocument(source_path=source_path, format="pdf", title=title, pages=tuple(pages))


def _tidy_pdf_text(text: str) -> str:
    # Join words hyphenated across line ends; keep the line structure otherwise.
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()
