"""build_services(settings): turn settings into the one `Services` object the graph runs on."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from langchain_core.language_models import BaseChatModel

from graph.persona import load_persona
from graph.services import GraphOptions, Services
from graph.speakable import Budget
from graph.usage import price_metadata
from retrievers.embeddings import Embeddings, OpenAIBatching, VectorCache, default_dense_weight, load_model
from retrievers.errors import UserInputError
from retrievers.http.cache import make_response_cache
from retrievers.http.client import ResilientHttp
from retrievers.knowledge_base import KnowledgeBaseManager, default_writer_lock, make_chroma_client
from retrievers.secret_url import reveal
from retrievers.sources.base import Source
from retrievers.sources.config import LoadedSources, SourcesFile, build_declared_sources, load_sources_file
from retrievers.sources.database import DatabaseSource, sqlite_url
from retrievers.sources.registry import SourceRegistry
from retrievers.sources.weather import WeatherSource
from retrievers.turn.admission import TurnAdmission
from retrievers.turn.reuse import LookupReuse
from voicerag.settings import Settings


def writable_data_dir(settings: Settings) -> Path:
    """The data dir, created if needed; one line naming VOICERAG_DATA_DIR when it cannot be used."""
    folder = settings.voicerag_data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserInputError(f"VOICERAG_DATA_DIR: {folder} cannot be written ({exc.strerror or exc})") from None
    return folder


def build_embeddings(settings: Settings) -> Embeddings:
    data_dir = writable_data_dir(settings)  # before the model loads: a wrong folder fails at once
    model = load_model(
        settings.embeddings,
        threads=settings.embeddings_threads,
        openai_model=settings.openai_embedding_model,
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
        base_url=str(settings.openai_base_url) if settings.openai_base_url else None,
        batching=OpenAIBatching(
            batch_size=settings.openai_embedding_batch,
            concurrency=settings.openai_embedding_concurrency,
            max_tokens=settings.openai_embedding_max_tokens,
        ),
    )
    return Embeddings(model, VectorCache(data_dir / "embedding-cache.sqlite"))


def build_knowledge_base(
    settings: Settings, embeddings: Embeddings, collection: str | None = None
) -> KnowledgeBaseManager:
    """The knowledge base; its writers take turns through a file lock (embedded Chroma, or a server
    without REDIS_URL: this machine's writers only) or a Redis lock (a server, with REDIS_URL)."""
    chroma_url = reveal(settings.chroma_url)
    client = make_chroma_client(settings.voicerag_data_dir, chroma_url, timeout_s=settings.chroma_timeout_s)
    name = collection or settings.collection
    return KnowledgeBaseManager(
        client,
        name,
        embeddings,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        dense_weight=(
            settings.fusion_dense_weight
            if settings.fusion_dense_weight is not None
            else default_dense_weight(embeddings.name)
        ),
        index_dir=settings.voicerag_data_dir / "keyword-index",
        writer_lock=default_writer_lock(
            client, name, redis_url=reveal(settings.redis_url), lock_dir=settings.voicerag_data_dir / "locks"
        ),
        lock_timeout_s=settings.ingest_lock_timeout_s,
    )


def build_chat_model(settings: Settings) -> BaseChatModel | None:
    """An OpenAI-compatible chat model, or None (extractive answers) when none is configured."""
    if not settings.chat_model_configured:
        return None
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=settings.llm_model,
        api_key=settings.openai_api_key or "not-needed",
        base_url=str(settings.openai_base_url) if settings.openai_base_url else None,
        streaming=True,
        timeout=settings.llm_timeout_s,
        max_retries=0,  # a voice turn cannot wait for retries: the graph falls back instead
        temperature=0.2,
        stream_usage=True,  # token usage per call (the turn record's tokens and cost)
        metadata=price_metadata(settings.llm_model, settings.llm_prices),
    )


def graph_options(settings: Settings) -> GraphOptions:
    return GraphOptions(
        top_k=settings.top_k,
        router=settings.router,
        grader=settings.grader,
        min_relevance=settings.grade_min_relevance,
        deadline_ms=settings.turn_deadline_ms,
        llm_timeout_s=settings.llm_timeout_s,
        llm_first_token_timeout_s=settings.llm_first_token_timeout_s,
        router_timeout_s=settings.llm_router_timeout_s,
        mask_for_llm=settings.mask_for_llm,
        context_tokens=settings.llm_context_tokens,
        budget=Budget(settings.answer_max_chars_ja, settings.answer_max_words_en),
    )


def build_http(settings: Settings, extra_hosts: Iterable[str] = ()) -> ResilientHttp:
    """The one HTTP client of the process, allowed to call the configured sources' hosts only."""
    hosts = {
        urlparse(str(settings.geocoding_api_url)).hostname or "",
        urlparse(str(settings.weather_api_url)).hostname or "",
        *extra_hosts,
    }
    return ResilientHttp(
        allowed_hosts=sorted(h for h in hosts if h),
        cache=make_response_cache(reveal(settings.redis_url)),
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown_s=settings.breaker_cooldown_s,
        rate_limit=settings.http_rate_limit,
        insecure_hosts=settings.http_insecure_hosts,  # plain http and private addresses: these hosts only
    )


def build_sources(settings: Settings, http: ResilientHttp, loaded: LoadedSources) -> SourceRegistry:
    """Every external source the graph may call: weather, the database, what configuration declares
    (and the declarations switched off for a missing secret, so that they can be said to be off)."""
    weather = WeatherSource(
        http=http,
        geocoding_url=str(settings.geocoding_api_url),
        forecast_url=str(settings.weather_api_url),
        default_place=settings.weather_default_place,
    )
    sources: list[Source[Any]] = [weather]
    if settings.database_queries_file is not None:  # empty DATABASE_QUERIES_FILE: no database source
        sources.append(
            DatabaseSource(
                reveal(settings.database_url) or sqlite_url(settings.voicerag_data_dir / "company.sqlite"),
                settings.database_queries_file,
                seed_file=settings.database_seed_file if settings.database_url is None else None,
                statement_timeout_ms=settings.database_statement_timeout_ms,
                cache=http.cache,  # the same cache as HTTP responses: one `voicerag cache clear`
            )
        )
    declared = build_declared_sources(loaded.declarations, http)
    return SourceRegistry([*sources, *declared, *loaded.unavailable_sources()])


def build_http_and_sources(settings: Settings) -> tuple[ResilientHttp, SourceRegistry]:
    """The HTTP client, allowed to call exactly the configured sources' hosts, and the sources."""
    loaded = (  # a plain http/ws URL to a host not in HTTP_INSECURE_HOSTS stops start-up
        load_sources_file(settings.sources_file, insecure_hosts=settings.http_insecure_hosts)
        if settings.sources_file
        else LoadedSources(SourcesFile())
    )
    http = build_http(settings, loaded.declarations.hosts())
    return http, build_sources(settings, http, loaded)


async def close_http(http: ResilientHttp) -> None:
    """The client, then the cache it was given (a Redis connection pool)."""
    await http.aclose()
    close_cache = getattr(http.cache, "aclose", None)
    if close_cache is not None:
        await close_cache()


def build_services(settings: Settings) -> Services:
    # Configuration files first: a mistake in one fails at once, before the model loads (seconds).
    persona = load_persona(settings.persona_file)
    http, sources = build_http_and_sources(settings)
    embeddings = build_embeddings(settings)
    return Services(
        knowledge_base=build_knowledge_base(settings, embeddings),
        embeddings=embeddings,
        options=graph_options(settings),
        persona=persona,
        chat_model=build_chat_model(settings),
        sources=sources,
        closers=[lambda: close_http(http)],
        admission=TurnAdmission(
            max_question_chars=settings.max_question_chars,
            per_user=settings.rate_limit_per_user,
            per_tenant=settings.rate_limit_per_tenant,
            redis_url=reveal(settings.redis_url),  # with Redis every worker shares the limits
        ),
        lookups=LookupReuse(settings.lookup_reuse_s) if settings.lookup_reuse_s else None,
    )
