"""Settings: environment parsing, list formats, and one-line errors for bad values."""

from __future__ import annotations

import pytest

from bookchat.config import SettingsError, load_settings


def test_defaults_need_nothing_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(_env_file=None)
    assert settings.database_url is None
    assert settings.collection == "bookchat"
    assert settings.embedding_provider == "local"
    assert settings.resolved_llm_provider == "none"
    assert settings.resolved_qdrant_path == settings.data_dir / "qdrant"


@pytest.mark.parametrize("raw", ['["https://a.example", "https://b.example"]', "https://a.example, https://b.example"])
def test_list_settings_accept_json_or_commas(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("BOOKCHAT_CORS_ORIGINS", raw)
    assert load_settings(_env_file=None).cors_origins == ["https://a.example", "https://b.example"]


def test_gemini_api_key_selects_gemini(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-key")
    settings = load_settings(_env_file=None)
    assert settings.llm_api_key is not None
    assert settings.llm_api_key.get_secret_value() == "AIza-test-key"
    assert settings.resolved_llm_provider == "gemini"
    assert "AIza" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("BOOKCHAT_DATABASE_URL", "nonsense", "BOOKCHAT_DATABASE_URL: expected a postgresql://"),
        ("BOOKCHAT_PORT", "eighty", "BOOKCHAT_PORT:"),
        ("BOOKCHAT_JWT_SECRET", "short", "BOOKCHAT_JWT_SECRET: expected at least 32 bytes"),
        ("BOOKCHAT_LLM_PROVIDER", "claude", "BOOKCHAT_LLM_PROVIDER:"),
        ("BOOKCHAT_QDRANT_URL", "localhost:6333", "BOOKCHAT_QDRANT_URL: expected an http"),
        ("BOOKCHAT_API_KEYS", "[not json", "JSON array"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_pool_bounds_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKCHAT_DB_POOL_MIN_SIZE", "20")
    monkeypatch.setenv("BOOKCHAT_DB_POOL_MAX_SIZE", "5")
    with pytest.raises(SettingsError, match="POOL_MIN_SIZE must not exceed"):
        load_settings(_env_file=None)


def test_a_pool_of_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # An ingestion holds a connection for its lock and writes on another: one connection would wait for ever.
    monkeypatch.setenv("BOOKCHAT_DB_POOL_MIN_SIZE", "0")
    monkeypatch.setenv("BOOKCHAT_DB_POOL_MAX_SIZE", "1")
    with pytest.raises(SettingsError, match="BOOKCHAT_DB_POOL_MAX_SIZE"):
        load_settings(_env_file=None)


def test_dotenv_file_is_read(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"  # type: ignore[operator]
    env.write_text("BOOKCHAT_COLLECTION=from-dotenv\n")
    assert load_settings(_env_file=str(env)).collection == "from-dotenv"
