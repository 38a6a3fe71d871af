"""The README's configuration table is generated from `Settings` and must stay in step with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bookchat.config import SETTINGS_TABLE_FILES, settings_reference

ROOT = Path(__file__).resolve().parents[1]
TABLE = re.compile(r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", re.S)


@pytest.mark.parametrize("name", SETTINGS_TABLE_FILES)
def test_settings_tables_match_settings(name: str) -> None:
    text = (ROOT / name).read_text()
    found = TABLE.search(text)
    assert found, f"{name} lost its settings-table markers"
    assert found.group(1).strip() == settings_reference(), "regenerate with: python -m bookchat.config"
