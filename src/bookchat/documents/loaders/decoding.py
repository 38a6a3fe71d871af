"""Bytes to text for the text formats: UTF-8, UTF-16 with BOM or Windows-1252, with binary content refused."""

from __future__ import annotations

import logging

from bookchat.documents.loaders.document import UnsupportedDocument

# The package's logger, as before the loaders were split up, so the `logger` field of its log lines stays put.
log = logging.getLogger("bookchat.documents.loaders")

_SNIFF_BYTES = 8192


def looks_binary(data: bytes) -> bool:
    """Whether NUL bytes near the start mark the data as binary (no text encoding but UTF-16 has them)."""
    return b"\x00" in data[:_SNIFF_BYTES]


def decode_text(data: bytes, source_path: str) -> str:
    """Bytes to text: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252. NUL bytes mean binary."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise UnsupportedDocument(f"{source_path}: not valid UTF-16", reason="binary") from exc
    elif looks_binary(data):
        raise UnsupportedDocument(f"{source_path}: binary content, not text", reason="binary")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            # Legacy files: cp1252 maps almost every byte; latin-1 maps the rest.
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
            log.warning("not UTF-8, read as Windows-1252", extra={"source_path": source_path})
    return text.replace("\r\n", "\n").replace("\r", "\n")
