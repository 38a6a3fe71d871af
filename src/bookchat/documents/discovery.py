"""Finding the files to ingest under the paths given, and the source path each one is known by."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bookchat.documents.loaders import SUFFIX_FORMATS

log = logging.getLogger(__name__)

DOCUSAURUS_CONFIGS = tuple(f"docusaurus.config.{ext}" for ext in ("js", "ts", "mjs", "cjs", "mts", "cts"))


class IngestError(RuntimeError):
    """An ingestion cannot start (bad path, lock held); the message says what to do."""


@dataclass(frozen=True)
class SkippedFile:
    source_path: str
    reason: str


@dataclass(frozen=True)
class SourceFile:
    """A file found under an ingest root: `source_path` is `<root name>/<path in root>`, `doc_path` the latter."""

    path: Path
    source_path: str
    doc_path: str


@dataclass(frozen=True)
class Discovery:
    files: list[SourceFile]
    skipped: list[SkippedFile]
    # Source-path prefixes that prune may clean: one per directory given.
    scopes: list[str]


def _docs_root(path: Path) -> Path | None:
    """The Docusaurus docs folder holding `path`, if a `docusaurus.config.*` sits beside one of its ancestors."""
    for candidate in [path, *path.parents][:12]:
        parent = candidate.parent
        if parent != candidate and any((parent / name).is_file() for name in DOCUSAURUS_CONFIGS):
            return candidate
    return None


def _ignored_dir(name: str) -> bool:
    return name.startswith((".", "_")) or name in ("node_modules", "__pycache__")


def _known_root(path: Path, known: set[str]) -> Path | None:
    """The ancestor of `path` that an earlier ingestion used as root, judged by the source paths it recorded."""
    for ancestor in list(path.parents)[:12]:
        if ancestor.name and _join(ancestor.name, path.relative_to(ancestor).as_posix()) in known:
            return ancestor
    return None


def _prefixes(source_paths: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for source_path in source_paths:
        parts = source_path.split("/")
        found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return found


def discover(paths: Sequence[Path | str], known: Iterable[str] = ()) -> Discovery:
    """The files to ingest under `paths` (folders are walked; hidden, `_partials` and unknown types skipped).

    Source paths are `<root folder name>/<path in root>`. A folder is its own root and a file's root is its
    folder, unless they lie inside a Docusaurus docs folder (which is then the root) or inside a root of an
    earlier ingestion (`known` source paths tell): `ingest book/module-1` after `ingest book` names files as
    the latter did, so nothing is duplicated and prune stays inside `book/module-1`.
    """
    files: dict[str, SourceFile] = {}
    skipped: list[SkippedFile] = []
    scopes: list[str] = []
    unsupported: Counter[str] = Counter()
    known_prefixes = _prefixes(known)
    for given in paths:
        path = Path(given).expanduser().resolve()
        if not path.exists():
            raise IngestError(f"{given}: no such file or folder")
        is_dir = path.is_dir()
        root = _docs_root(path) or _known_root(path, known_prefixes) or (path if is_dir else path.parent)
        prefix = root.name
        candidates: list[Path] = []
        if is_dir:
            relative = path.relative_to(root).as_posix()
            scopes.append(_join(prefix, "" if relative == "." else relative))
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not _ignored_dir(d))
                for name in sorted(names):
                    if name.startswith("."):
                        continue
                    candidates.append(Path(folder) / name)
        else:
            candidates.append(path)
        for file in candidates:
            doc_path = file.relative_to(root).as_posix()
            source_path = _join(prefix, doc_path)
            suffix = file.suffix.lower()
            if suffix not in SUFFIX_FORMATS:
                unsupported[suffix or file.name] += 1
                skipped.append(SkippedFile(source_path, "unsupported-type"))
                continue
            if is_dir and suffix in (".md", ".mdx") and file.name.startswith("_"):
                # Docusaurus does not publish `_partial.mdx` files; they are imported into other pages.
                skipped.append(SkippedFile(source_path, "partial"))
                continue
            if source_path in files:
                if files[source_path].path != file:
                    log.warning("two files map to one source path; the first wins", extra={"source_path": source_path})
                continue
            files[source_path] = SourceFile(file, source_path, doc_path)
    if unsupported:
        kinds = ", ".join(f"{kind} ×{n}" for kind, n in unsupported.most_common())
        log.warning(f"skipped {sum(unsupported.values())} files of unsupported types ({kinds})")
    return Discovery(list(files.values()), skipped, scopes)


def _join(prefix: str, path: str) -> str:
    return "/".join(part for part in (prefix, path) if part)


def in_scopes(source_path: str, scopes: list[str]) -> bool:
    path = PurePosixPath(source_path).as_posix()
    return any(scope == "" or path == scope or path.startswith(scope + "/") for scope in scopes)
