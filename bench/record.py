"""Where every benchmark writes its figures: one JSON file per run in bench/results/ (git-ignored)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def results_path(benchmark: str) -> Path:
    """bench/results/<benchmark>-<UTC time>.json, the folder created."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{benchmark}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"


def write_results(results: dict[str, Any], path: Path) -> Path:
    """`results` as indented JSON at `path` (its folder created); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return path
