"""Settings: every knob of bookchat, read from `BOOKCHAT_*` environment variables and `.env`.

Long because every setting is declared here and nowhere else (settings only via `config.Settings`), each with its
limits and the description the generated tables of the README and docs/configuration.md show.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "BOOKCHAT_"
GEMINI_OPENAI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"
DEFAULT_GEMINI_MODEL = "gemini-2.5-flash"
DEFAULT_GEMINI_EMBEDDING_MODEL = "gemini-embedding-001"

EmbeddingProvider = Literal["local", "fastembed", "gemini", "openai"]
LLMProvider = Literal["gemini", "openai", "none"]
StringList = Annotated[list[str], NoDecode]


class SettingsError(ValueError):
    """A setting has a value bookchat cannot use; the message names the variable and what is expected."""


def _split_list(value: Any) -> Any:
    """Accept a JSON array or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("expected a JSON array or comma-separated values") from None
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every configuration knob of bookchat. Read once at start-up and passed down through `Depends()`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # Storage
    data_dir: Path = Field(
        Path(".bookchat"), description="Where embedded PostgreSQL, Qdrant and the prepared embedding model keep data."
    )
    database_url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL (Neon, RDS, ...). Unset: an embedded server under DATA_DIR/postgres.",
    )
    test_database_url: SecretStr | None = Field(
        None, description="Server the test suite creates its throw-away databases on."
    )
    db_pool_min_size: int = Field(1, ge=0, le=100, description="Connections kept open in the pool.")
    # At least 2: an ingestion holds one connection for its lock's transaction and writes on another.
    db_pool_max_size: int = Field(10, ge=2, le=500, description="Upper bound of pooled connections.")
    db_command_timeout: float = Field(30.0, gt=0, le=600, description="Seconds before a SQL command is cancelled.")
    db_statement_cache_size: int = Field(
        100,
        ge=0,
        le=10_000,
        description="asyncpg prepared-statement cache; 0 for PgBouncer / Neon pooled URLs.",
    )

    qdrant_url: str | None = Field(None, max_length=2000, description="Qdrant server or Cloud URL.")
    qdrant_api_key: SecretStr | None = Field(None, description="API key for QDRANT_URL.")
    qdrant_path: Path | None = Field(None, description="Local Qdrant folder. Default DATA_DIR/qdrant.")
    collection: str = Field(
        "bookchat", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="Qdrant collection."
    )
    # The embedded vector store (used while QDRANT_URL is unset), see docs/configuration.md.
    vector_store: Literal["edge", "local-legacy"] = Field(
        "edge",
        description="Embedded engine in QDRANT_PATH: edge (Qdrant's engine in process) or local-legacy "
        "(qdrant-client's pure-Python local mode, kept for one release).",
    )
    edge_process: bool = Field(
        True,
        description="Run the embedded engine (edge) in a child process of its own, so that its searches never hold "
        "this process's GIL; false runs it on threads of this process.",
    )
    edge_optimize_after: int = Field(
        10_000,
        ge=0,
        le=100_000_000,
        description="Points written to a collection of the embedded engine (edge) since its last optimization "
        "after which the engine optimizes it in the background, once writes pause (a copy, in a low-priority "
        "process, swapped in when done; searches go on meanwhile); 0 turns it off.",
    )

    # Embeddings
    embedding_provider: EmbeddingProvider = Field("local", description="local | fastembed | gemini | openai.")
    embedding_model: str | None = Field(
        None, max_length=200, description="Model name for fastembed / gemini / openai embedders."
    )
    embedding_model_path: Path | None = Field(None, description="A local ONNX model folder for the local embedder.")
    embedding_dim: int = Field(768, ge=8, le=8192, description="Output size for gemini / openai embedders.")
    embedding_batch_size: int = Field(
        64, ge=1, le=2048, description="Texts per embedding call (API and model folders; the bundled model takes one)."
    )
    embedding_base_url: str | None = Field(
        None, max_length=2000, description="OpenAI-compatible embeddings endpoint (gemini / openai providers)."
    )

    # Ingestion and retrieval
    chunk_tokens: int = Field(
        240, ge=32, le=8192, description="Chunk size in embedder tokens (fits the local model's 256)."
    )
    chunk_overlap_tokens: int = Field(32, ge=0, le=1024, description="Tokens shared by neighbouring chunks.")
    fusion: Literal["dbsf", "rrf"] = Field(
        "dbsf", description="How hybrid search fuses dense and BM25: dbsf (score-based) or rrf (rank-based)."
    )
    rrf_k: int = Field(60, ge=1, le=1000, description="Reciprocal-rank-fusion constant, used when FUSION=rrf.")
    prefetch_limit: int = Field(100, ge=1, le=1000, description="Candidates each of dense and BM25 contributes.")
    search_limit: int = Field(6, ge=1, le=50, description="Passages retrieved to answer a question.")
    coverage_gate: bool = Field(
        True,
        description="Refuse, without calling the model, a question the book does not cover"
        " (bookchat.retrieval.coverage_gate; answered: false).",
    )
    sample_book: Path | None = Field(
        None, description="Folder ingested at start-up while the collection is empty (`serve` sets it)."
    )
    max_upload_bytes: int = Field(20 * 1_048_576, ge=1024, le=1 << 31, description="Largest document upload accepted.")

    # Answers
    llm_provider: LLMProvider | None = Field(
        None, description="gemini | openai | none. Default: gemini when an API key is set, else none."
    )
    llm_base_url: str | None = Field(None, max_length=2000, description="OpenAI-compatible endpoint.")
    llm_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("BOOKCHAT_LLM_API_KEY", "GEMINI_API_KEY"),
        description="Key for the LLM endpoint; GEMINI_API_KEY is honoured too.",
    )
    llm_model: str | None = Field(None, max_length=200, description=f"Model name. Default {DEFAULT_GEMINI_MODEL}.")
    llm_timeout: float = Field(60.0, gt=0, le=600, description="Seconds before an LLM call is abandoned.")
    llm_max_retries: int = Field(2, ge=0, le=10, description="Retries on connection errors.")
    llm_tracing: bool = Field(False, description="Agents SDK tracing (needs an OpenAI key).")
    query_rewrite: bool = Field(
        True,
        description="With a model: rewrite a dependent follow-up, or a question in another script, into one"
        " standalone search query in the book's language (merged with the model-free search, never used alone).",
    )
    query_rewrite_timeout: float = Field(
        2.5, gt=0, le=30, description="Seconds the rewrite may take before the search goes on without it."
    )
    query_rewrite_max_tokens: int = Field(256, ge=16, le=4096, description="Token budget of one rewrite.")
    book_language: str = Field(
        "English", min_length=2, max_length=40, description="The book's language, as the rewrite prompt names it."
    )
    pending_answer_timeout: float = Field(
        600.0,
        ge=60,
        le=7 * 86_400,
        description="An answer still pending this many seconds after its question (its process died mid-turn) "
        "is marked error `interrupted`; never less than 5 × LLM_TIMEOUT.",
    )
    pending_sweep_interval: float = Field(
        300.0, gt=0, le=86_400, description="Seconds between sweeps for interrupted answers (one runs at start-up)."
    )

    # Security
    jwt_secret: SecretStr | None = Field(None, description="HS256 signing secret, 32 bytes or more.")
    admin_token: SecretStr | None = Field(None, description="Static bearer for the documents API (CI pipelines).")
    api_keys: StringList = Field(default_factory=list, description="Keys for /v1 clients (JSON array or a,b,c).")
    cors_origins: StringList = Field(
        default_factory=list, description="Origins allowed to call the API (JSON array or a,b,c)."
    )
    redis_url: SecretStr | None = Field(None, description="Redis for shared rate limits. Unset: in memory.")
    allow_anonymous: bool = Field(True, description="Readers may chat with a guest token.")
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1 << 30, description="Largest request body accepted.")
    # Accounts, tokens, rate limits and the edge (owned by auth; see docs/security.md)
    allow_registration: bool = Field(True, description="POST /api/auth/register is open to anyone.")
    jwt_algorithm: Literal["HS256", "RS256"] = Field("HS256", description="JWT signing algorithm, pinned.")
    jwt_private_key_path: Path | None = Field(None, description="RS256 private key (PEM file).")
    jwt_public_key_path: Path | None = Field(None, description="RS256 public key (PEM file); derived when unset.")
    jwt_private_key: SecretStr | None = Field(None, description="RS256 private key as PEM text (instead of a file).")
    jwt_issuer: str = Field("bookchat", min_length=1, max_length=200, description="JWT `iss` issued and required.")
    jwt_audience: str = Field("bookchat-api", min_length=1, max_length=200, description="JWT `aud` required.")
    access_token_ttl: int = Field(900, ge=30, le=86_400, description="Access-token lifetime in seconds.")
    refresh_token_ttl: int = Field(30 * 86_400, ge=300, le=365 * 86_400, description="Refresh-token lifetime (s).")
    guest_token_ttl: int = Field(3600, ge=30, le=30 * 86_400, description="Guest-token lifetime in seconds.")
    guest_renewal_grace: int = Field(
        7 * 86_400,
        ge=0,
        le=365 * 86_400,
        description="How long after its expiry a guest token still renews the same guest (s); later, a new guest.",
    )
    refresh_token_retention: int = Field(
        7 * 86_400,
        ge=0,
        le=365 * 86_400,
        description="Expired refresh tokens are deleted this long after expiry (s); until then a replay is recognised.",
    )
    rate_limit_enabled: bool = Field(True, description="Enforce the rate limits below.")
    rate_limit_auth: str = Field(
        "10/minute;100/hour",
        max_length=200,
        description="Per client IP on login, register, token, refresh, guest.",
    )
    rate_limit_login_pair: str = Field(
        "5/minute;20/hour",
        max_length=200,
        description="Login attempts per account and client address; spent before the password check, "
        "cleared by a successful login.",
    )
    rate_limit_login_account: str = Field(
        "30/hour",
        max_length=200,
        description="Failed logins per account from all addresses; once spent, only addresses that already "
        "failed for it are refused.",
    )
    rate_limit_chat: str = Field("20/minute;300/hour", max_length=200, description="Chat turns per principal.")
    rate_limit_search: str = Field("60/minute", max_length=200, description="Searches per principal.")
    rate_limit_ip: str = Field("120/minute", max_length=200, description="Chat + search per client IP.")
    rate_limit_ipv6_prefix: int = Field(
        64, ge=32, le=128, description="IPv6 clients are rate-limited per network of this size (IPv4: per address)."
    )
    rate_limit_prefix: str = Field(
        "bookchat", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:-]+$", description="Redis key prefix."
    )
    max_concurrent_streams: int = Field(3, ge=1, le=100, description="Open chat streams per principal.")
    cors_allow_credentials: bool = Field(False, description="CORS allows cookies (never with a `*` origin).")
    trusted_proxies: StringList = Field(
        default_factory=list, description="Proxy IPs/CIDRs whose X-Forwarded-For is believed (a,b,c)."
    )

    # Book
    public_base_url: str | None = Field(
        None, max_length=2000, description="The book's site, e.g. https://book.example.org/docs, for links."
    )

    # Reader pages: personalised and translated chapters (POST /api/pages/personalize and /translate)
    pages_default_language: str = Field(
        "ur",
        min_length=2,
        max_length=35,
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
        description="BCP-47 tag a translation uses when neither the request nor the reader's profile names one.",
    )
    pages_glossary: StringList = Field(
        default_factory=list,
        description="Terms translations keep in English, e.g. ROS 2,URDF,Gazebo (JSON array or a,b,c).",
    )
    pages_section_chars: int = Field(
        6000, ge=500, le=100_000, description="Longest section (characters) sent to the model in one call."
    )
    pages_concurrency: int = Field(4, ge=1, le=32, description="Sections of one chapter rewritten at once.")
    pages_allow_guests: bool = Field(
        False, description="Guests may personalise and translate, giving their background in the request."
    )
    rate_limit_pages: str = Field(
        "20/hour",
        max_length=200,
        description="Chapters rewritten by the model (cache misses) per reader; cached chapters are free.",
    )

    @field_validator("pages_glossary", mode="before")
    @classmethod
    def _glossary(cls, value: Any) -> Any:
        return _split_list(value)

    # Service
    host: str = Field("127.0.0.1", max_length=255, description="Interface `bookchat serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `bookchat serve` listens on.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_json: bool = Field(True, description="One JSON object per log line.")
    docs_enabled: bool = Field(True, description="Serve /docs and /openapi.json.")
    demo_enabled: bool = Field(
        True, description="Serve the demo site (/, /guide/...); the widget's /widget.js and /widget.css stay served."
    )

    # Insights and retention (the author's dashboard, docs/insights.md; privacy, docs/security.md)
    retention_days: int | None = Field(
        None,
        ge=1,
        le=36_500,
        description="Delete conversations (messages, feedback, insights) older than this many days. Unset: kept.",
    )
    retention_sweep_interval: float = Field(
        86_400.0, ge=60, le=30 * 86_400, description="Seconds between retention sweeps (one runs at start-up)."
    )
    insights_gap_threshold: float = Field(
        0.725,
        ge=0.3,
        le=0.99,
        description="Cosine similarity to a gap's centroid above which an unanswered question joins it "
        "(chosen with bench/gap_threshold.py).",
    )
    insights_assign_batch: int = Field(
        64, ge=1, le=100_000, description="Unanswered questions embedded and grouped per insights request."
    )

    @field_validator("api_keys", "cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("database_url", "test_database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgres://", "postgresql://")):
            raise ValueError("expected a postgresql://user:password@host:port/database URL")
        return value

    @field_validator("qdrant_url", "llm_base_url", "public_base_url", "embedding_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("expected at least 32 bytes (try: openssl rand -hex 32)")
        return value

    @model_validator(mode="after")
    def _pool_sizes(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("BOOKCHAT_DB_POOL_MIN_SIZE must not exceed BOOKCHAT_DB_POOL_MAX_SIZE")
        return self

    @cached_property
    def resolved_llm_provider(self) -> LLMProvider:
        """The provider in force: explicit, else Gemini when a key is set, else none."""
        if self.llm_provider is not None:
            return self.llm_provider
        return "gemini" if self.llm_api_key is not None else "none"

    @property
    def resolved_vector_store(self) -> Literal["server", "edge", "local-legacy"]:
        """The engine in force: a Qdrant server when QDRANT_URL is set, else the embedded one chosen."""
        return "server" if self.qdrant_url else self.vector_store

    @property
    def resolved_qdrant_path(self) -> Path:
        return self.qdrant_path if self.qdrant_path is not None else self.data_dir / "qdrant"

    def secret_values(self) -> list[str]:
        """Every configured secret, for log redaction."""
        values = [*self.api_keys]
        for _name, value in self:
            if isinstance(value, SecretStr):
                values.append(value.get_secret_value())
        return values

    @property
    def postgres_data_dir(self) -> Path:
        return self.data_dir / "postgres"


def _describe(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ()) if part != "__root__"]
    name = (ENV_PREFIX + location[0].upper()) if location else "configuration"
    if location and location[0] == "llm_api_key":
        name = "BOOKCHAT_LLM_API_KEY (or GEMINI_API_KEY)"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{name}: {message}" if location else message


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings` from the environment; raise `SettingsError` with one line per bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(dict(error)) for error in exc.errors())) from None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"a list setting is neither a JSON array nor comma-separated text: {exc}") from None


def settings_reference() -> str:
    """The configuration table of the README and the user guide, generated from `Settings`."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if name == "llm_api_key":
            variable = "`BOOKCHAT_LLM_API_KEY` / `GEMINI_API_KEY`"
        else:
            variable = f"`{ENV_PREFIX}{name.upper()}`"
        default = field.get_default(call_default_factory=True)
        shown = "—" if default is None or default == [] else f"`{default}`"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| {variable} | {shown} | {description} |")
    return "\n".join(rows)


SETTINGS_TABLE_FILES = ("README.md", "docs/configuration.md")


def _write_settings_reference(readme: Path) -> None:
    """Replace the table between the settings-table markers of `readme`."""
    start, end = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{settings_reference()}\n{end}{tail}", encoding="utf-8")


if __name__ == "__main__":  # `python -m bookchat.config` regenerates the tables of the README and the guide
    for name in SETTINGS_TABLE_FILES:
        _write_settings_reference(Path(name))
