"""Every setting of voicerag, read from the environment and `.env`, validated at start-up.

`.env.example` lists each variable with one line of explanation; keep the two in step.
A wrong value stops start-up with one line naming the variable (see `load_settings`).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, SecretStr, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graph.usage import DEFAULT_PRICES
from retrievers.errors import UserInputError
from retrievers.http.address_guard import InsecureHosts, NetworkPolicy
from retrievers.secret_url import SecretUrl, hide_password

# The sample company's files, found from the code's own location so that the installed command works
# from any folder; a relative path given in a variable is relative to the working directory.
SAMPLE_DATA = Path(__file__).resolve().parent.parent / "data"
PROJECT_DATA_DIR = SAMPLE_DATA.parent / ".voicerag"  # what `make demo` ingests into, wherever a command runs
ENV_FILE_VARIABLE = "VOICERAG_ENV_FILE"  # which .env file is read (default `.env` here; empty: none)


_RATE = r"^\s*\d+\s*/\s*\d*\s*(second|minute|hour|day)s?\s*$"  # what `limits` parses, e.g. "20/minute"


class Settings(BaseSettings):
    """Configuration of one voicerag process. Field names are the environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    # --- knowledge base -------------------------------------------------------------------
    voicerag_data_dir: Path = Field(PROJECT_DATA_DIR, description="embedded Chroma, caches, indexes")
    chroma_url: SecretUrl | None = Field(None, description="Chroma server, e.g. http://127.0.0.1:8000")
    chroma_timeout_s: float = Field(10.0, gt=0, le=300, description="each call to a Chroma server gives up after this")
    ingest_lock_timeout_s: float = Field(600.0, ge=0, le=86400, description="how long an ingest waits for another")
    ingest_nice: int = Field(10, ge=0, le=19, description="CPU niceness `voicerag ingest` adds to itself")
    ingest_workers: int = Field(1, ge=1, le=64, description="processes `voicerag ingest` reads files with")
    collection: str = Field("voicerag", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")  # Chroma's rule
    embeddings: Literal["e5", "use", "openai"] = "e5"
    embeddings_threads: int = Field(2, ge=1, le=64)
    openai_embedding_model: str = "text-embedding-3-small"
    openai_embedding_batch: int = Field(256, ge=1, le=2048, description="texts per embeddings request")
    openai_embedding_concurrency: int = Field(4, ge=1, le=32, description="embeddings requests in flight at once")
    openai_embedding_max_tokens: int = Field(100_000, ge=1000, le=300_000, description="estimated tokens per request")
    chunk_size: int = Field(1000, ge=100, le=20000)
    chunk_overlap: int = Field(100, ge=0, le=5000)

    # --- retrieval and grading ------------------------------------------------------------
    top_k: int = Field(5, ge=1, le=50)
    fusion_dense_weight: float | None = Field(None, ge=0.0, le=1.0, description="None: the model's default")
    grade_min_relevance: float | None = Field(None, ge=-1.0, le=1.0, description="relevance a document needs")
    router: Literal["rules", "llm"] = "rules"
    grader: Literal["score", "llm"] = "score"

    # --- chat model (any OpenAI-compatible server) -----------------------------------------
    openai_api_key: SecretStr | None = None
    openai_base_url: AnyHttpUrl | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = Field(8.0, gt=0, le=120)
    llm_first_token_timeout_s: float = Field(3.0, gt=0, le=60)
    llm_prices: dict[str, dict[str, float]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description='JSON: model -> {"input": USD, "output": USD} per 1M tokens; a model not listed costs null',
    )
    llm_context_tokens: int = Field(
        16_000, ge=500, le=2_000_000, description="the answer prompt's budget: system + history + documents + live data"
    )
    llm_router_timeout_s: float = Field(1.5, gt=0, le=60, description="LLM router budget (grader: twice)")

    # --- the turn -------------------------------------------------------------------------
    turn_deadline_ms: int = Field(1500, ge=100, le=60000)
    answer_max_chars_ja: int = Field(120, ge=20, le=2000, description="spoken answer budget, Japanese characters")
    answer_max_words_en: int = Field(45, ge=5, le=500, description="spoken answer budget, English words")

    # --- external sources -----------------------------------------------------------------
    redis_url: SecretUrl | None = Field(None, description="shared response cache, redis:// or rediss://")
    database_url: SecretUrl | None = Field(None, description="SQLAlchemy URL; default: seeded SQLite in the data dir")
    database_queries_file: Path | None = Field(SAMPLE_DATA / "database.yaml", description="empty: no database")
    database_seed_file: Path = Field(SAMPLE_DATA / "seed.sql", description="seeds the default SQLite database")
    database_statement_timeout_ms: int = Field(1000, ge=50, le=60000)
    sources_file: Path | None = Field(SAMPLE_DATA / "sources.yaml", description="REST, GraphQL, real-time; empty: none")
    geocoding_api_url: AnyHttpUrl = AnyHttpUrl("https://geocoding-api.open-meteo.com")
    weather_api_url: AnyHttpUrl = AnyHttpUrl("https://api.open-meteo.com")
    weather_default_place: str | None = Field(None, max_length=80, description="for questions naming no place")
    http_rate_limit: str = Field("20/second", pattern=r"^\d+\s*/\s*\d*\s*(second|minute|hour)s?$")
    breaker_threshold: int = Field(5, ge=1, le=100)
    breaker_cooldown_s: float = Field(30.0, gt=0, le=3600)

    # --- voice (LiveKit) -------------------------------------------------------------------
    stt_model: str = "gpt-4o-mini-transcribe"
    stt_language: Literal["ja", "en", "auto"] = "auto"  # auto: the model detects Japanese or English
    tts_model: str = "gpt-4o-mini-tts"
    tts_voice: str = "ash"
    turn_detection: Literal["default", "vad", "stt", "manual"] = "default"  # default: LiveKit's local model
    preemptive_generation: bool = True
    preemptive_tts: bool = Field(
        True, description="synthesise the first sentence during the end-of-turn wait (a discarded run costs its TTS)"
    )
    lookup_reuse_s: float = Field(
        10.0, ge=0, le=300, description="a run repeating a question within this reuses its lookups; 0: never"
    )
    filler_threshold_ms: int = Field(700, ge=0, le=10000, description="say 'one moment' after this long")
    livekit_url: str | None = None  # LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET: for `agent dev|start`
    livekit_api_key: SecretStr | None = None
    livekit_api_secret: SecretStr | None = None

    # --- the company ------------------------------------------------------------------------
    persona_file: Path = Field(SAMPLE_DATA / "persona.yaml", description="the company's name and fixed sentences")

    # --- operations -----------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    log_format: Literal["console", "json"] = Field("console", description="json: one JSON object per log line")
    voicerag_debug: bool = False

    # --- trust: limits, masking, transport --------------------------------------------------
    rate_limit_per_user: str | None = Field(
        None, pattern=_RATE, description="turns one caller may take, e.g. 20/minute; empty: no limit"
    )
    rate_limit_per_tenant: str | None = Field(
        None, pattern=_RATE, description="turns one tenant's callers may take together, e.g. 200/minute"
    )
    max_question_chars: int = Field(1000, ge=10, le=100_000, description="a longer question is refused at once")
    mask_for_llm: bool = Field(False, description="mask phone numbers, e-mails, cards... before the chat model")
    http_insecure_hosts: str = Field(
        "localhost,127.0.0.1,::1",
        description="hosts that may be called over plain http and may resolve to private addresses",
    )

    # --- audit log --------------------------------------------------------------------------
    audit_database_url: SecretUrl | None = Field(
        None, description="SQLAlchemy URL (SQLite or PostgreSQL); default: audit.sqlite in the data dir"
    )
    audit_queue_size: int = Field(
        10_000, ge=1, le=1_000_000, description="records waiting for the database; beyond it new ones are dropped"
    )

    # --- metrics ----------------------------------------------------------------------------
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="the voice worker serves Prometheus /metrics on this port; empty: off"
    )

    # --- tracing (voicerag/tracing/) ---------------------------------------------------------
    langsmith_tracing: bool = Field(False, description="one LangSmith trace per turn, masked")
    langsmith_api_key: SecretStr | None = Field(None, description="LangSmith's key (LANGSMITH_API_KEY)")
    langsmith_endpoint: AnyHttpUrl | None = Field(None, description="LangSmith's API; default: LangSmith's cloud")
    langsmith_project: str | None = Field(None, description="the LangSmith project traces go to; default: 'default'")
    trace_user_ids: Literal["pseudonym", "plain"] = Field(
        "pseudonym", description="callers in traces: a keyed hash of the user id, or the id itself"
    )
    trace_user_id_key: SecretStr | None = Field(
        None, description="the key of the user-id pseudonym (HMAC); keep it stable to follow a caller across turns"
    )
    otel_exporter_otlp_endpoint: AnyHttpUrl | None = Field(
        None, description="OpenTelemetry OTLP/HTTP endpoint (e.g. http://127.0.0.1:4318); empty: no spans"
    )
    otel_service_name: str = Field("voicerag", description="service.name of the spans")

    @field_validator("llm_prices")
    @classmethod
    def _prices(cls, table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for model, price in table.items():
            if set(price) != {"input", "output"} or min(price.values()) < 0:
                raise ValueError(f'{model}: needs {{"input": USD, "output": USD}} per 1M tokens, neither negative')
        return table

    @field_validator(
        "database_queries_file",
        "sources_file",
        "rate_limit_per_user",
        "rate_limit_per_tenant",
        "metrics_port",
        "langsmith_api_key",
        "langsmith_endpoint",
        "langsmith_project",
        "trace_user_id_key",
        "otel_exporter_otlp_endpoint",
        mode="before",
    )
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        """An empty variable switches the file (and what it declares) off; a named file must exist."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("chroma_url", mode="before")
    @classmethod
    def _http_url(cls, value: object) -> object:
        if isinstance(value, str) and value:
            try:
                TypeAdapter(AnyHttpUrl).validate_python(value)
            except ValidationError as exc:
                raise ValueError(exc.errors()[0]["msg"]) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretUrl | None) -> SecretUrl | None:
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://")):
            raise ValueError("must start with redis:// or rediss://")
        return value

    @field_validator("http_insecure_hosts")
    @classmethod
    def _insecure_hosts(cls, value: str) -> str:
        InsecureHosts(value)  # names, IP addresses or networks, comma-separated
        return value

    @model_validator(mode="after")
    def _https_except_development_hosts(self) -> Settings:
        """Plain http/ws only to HTTP_INSECURE_HOSTS: anything else stops start-up, naming the variable
        (a UserInputError passes through pydantic as it is)."""
        network = NetworkPolicy(self.http_insecure_hosts)
        urls = {
            "CHROMA_URL": self.chroma_url.get_secret_value() if self.chroma_url else None,
            "OPENAI_BASE_URL": str(self.openai_base_url) if self.openai_base_url else None,
            "GEOCODING_API_URL": str(self.geocoding_api_url),
            "WEATHER_API_URL": str(self.weather_api_url),
            "LIVEKIT_URL": self.livekit_url,
        }
        for variable, url in urls.items():
            parts = urlsplit(url or "")
            reason = network.plain_refused(parts.scheme, parts.hostname or "") if url else None
            if reason is not None:
                raise UserInputError(f"{variable}: {reason}")
        return self

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, value: int, info: object) -> int:
        size = getattr(info, "data", {}).get("chunk_size", 1000)
        if value >= size:
            raise ValueError(f"must be smaller than CHUNK_SIZE ({size})")
        return value

    @cached_property
    def chat_model_configured(self) -> bool:
        """A chat model is used when a key or an OpenAI-compatible base URL is set."""
        return self.openai_api_key is not None or self.openai_base_url is not None


def load_settings(**overrides: object) -> Settings:
    """Read settings (the environment, then the `.env` file named by `VOICERAG_ENV_FILE`, default
    `.env` in the working directory); turn a validation error into one line naming the variable."""
    if "_env_file" not in overrides:
        overrides["_env_file"] = os.environ.get(ENV_FILE_VARIABLE, ".env") or None
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        variable = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise UserInputError(f"{variable}: {first['msg']}{_shown(variable, first.get('input'))}") from None


def _shown(variable: str, value: object) -> str:
    """The rejected value, for the error line: never a secret, never a URL's password, never long."""
    field = Settings.model_fields.get(variable.lower())
    if field is not None and "SecretStr" in str(field.annotation):
        return ""
    text = hide_password(str(value))
    return f" (got {text[:80] + '…' if len(text) > 80 else text!r})"
