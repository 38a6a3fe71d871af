"""What a file's name says: Docusaurus number prefixes (`01-intro.md` is the doc `intro`) and fallback titles."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

# As Docusaurus's DefaultNumberPrefixParser: date-like and version-like names keep their numbers.
_IGNORED_PREFIX = re.compile(r"^((\d{2}|\d{4})[-_.]\d{2}([-_.](\d{2}|\d{4}))?)(.*)$|^(\d+[-_.]\d+)(.*)$")
_NUMBER_PREFIX = re.compile(r"^(?P<number>\d+)(?P<sep>\s*[-_.]+\s*)(?P<suffix>.*)$")


def strip_number_prefix(name: str) -> str:
    """`01-intro` → `intro`; date-like (`2021-01-31-x`) and version-like (`8.0-x`) names stay as they are."""
    if _IGNORED_PREFIX.match(name):
        return name
    match = _NUMBER_PREFIX.match(name)
    return match.group("suffix") if match else name


def humanize(stem: str) -> str:
    """A readable title from a file name: `01-getting_started` → `Getting started`."""
    words = re.sub(r"[-_]+", " ", strip_number_prefix(stem)).strip()
    return words[:1].upper() + words[1:] if words else stem


def title_from_path(source_path: str) -> str:
    """The title of last resort, for a document that names none: its file name, humanized."""
    return humanize(PurePosixPath(source_path).stem)
