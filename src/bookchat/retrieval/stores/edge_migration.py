"""Moving a folder of qdrant-client's local mode aside for the embedded engine, crash-safely, keeping the old one.

The index itself is not converted: PostgreSQL keeps every document's text, so the new engine's index is rebuilt
from it (`documents.index_migration`), the way `bookchat ingest --reindex` rebuilds any index. This module does
the file part, in steps a crash can interrupt anywhere:

1. a new embedded-engine folder is made beside the old one (`<root>.edge-new`), recording the rebuild it owes;
2. the old folder is renamed to `<root>.local-mode` (kept: the way back, and the source of chunks whose document
   predates stored sources) while holding its lock, so no local-mode process can be using it;
3. the new folder is renamed to `<root>`.

A crash after 2 is finished by the next start (step 3); before 2, the new folder is made again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

from bookchat.retrieval.stores.edge_folder import CATALOG, EdgeFolder, is_edge_folder, is_legacy_folder, read_json
from bookchat.retrieval.stores.errors import FolderInUse, VectorStoreError

log = logging.getLogger(__name__)

PENDING_REASON = "moved from qdrant-client's local mode"


def legacy_backup(root: Path) -> Path:
    """Where a migrated local-mode folder is kept."""
    return root.with_name(f"{root.name}.local-mode")


def _staging(root: Path) -> Path:
    return root.with_name(f"{root.name}.edge-new")


def migrate_legacy_folder(root: Path) -> Path | None:
    """Make `root` an embedded-engine folder when it holds local mode (or a migration was interrupted); return
    the kept local-mode folder when this call moved it, else None. The new folder records the rebuild it owes."""
    backup, staging = legacy_backup(root), _staging(root)
    if not root.exists() and staging.exists() and is_edge_folder(staging):
        os.replace(staging, root)  # interrupted between the two renames
        return backup if backup.exists() else None
    if not is_legacy_folder(root):
        return None
    if backup.exists():
        raise VectorStoreError(
            f"cannot move the local-mode Qdrant folder {root} to {backup}: that folder exists already; move it "
            "away, then start again"
        )
    shutil.rmtree(staging, ignore_errors=True)
    folder = EdgeFolder(staging)
    folder.open(pending_rebuild={"reason": PENDING_REASON, "legacy_folder": str(backup)})
    folder.close()
    with open(root / ".lock", "a+", encoding="utf-8") as lock:
        try:
            # qdrant-client's local mode holds this lock (portalocker: flock) while a client has the folder open.
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise FolderInUse(
                f"the local Qdrant folder {root} is in use by another bookchat process; stop it, then start again "
                "to move the index to the embedded engine"
            ) from exc
        os.replace(root, backup)
    os.replace(staging, root)
    log.warning(
        "the vector index moves from qdrant-client's local mode to the embedded engine: it is rebuilt from "
        "PostgreSQL now; the old folder is kept",
        extra={"folder": str(root), "kept": str(backup)},
    )
    return backup


def owes_rebuild(root: Path) -> bool:
    """True when opening `root` for the embedded engine will move local mode aside or finish such a move."""
    if is_legacy_folder(root) or (not root.exists() and _staging(root).exists()):
        return True
    if not is_edge_folder(root):
        return False
    return bool(read_json(root / CATALOG).get("pending_rebuild"))
