"""The README's configuration table is generated from `Settings` and must stay in step with it."""

from __future__ import annotations

import re
from pathlib import Path

from bookchat.config import settings_reference

ROOT = Path(__file__).resolve().parents[1]
TABLE = re.compile(r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", re.S)


def test_readme_settings_table_matches_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    found = TABLE.search(readme)
    assert found, "README.md lost its settings-table markers"
    assert found.group(1).strip() == settings_reference(), "regenerate with: python -m bookchat.config"
