"""What the graph needs from the outside world, gathered in one object.

`voicerag.services.build_services(settings)` builds it from settings; tests build it by hand
(with fake chat models). Every front door compiles the graph from one `Services`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from langchain_core.language_models import BaseChatModel

from graph.prompts import label
from retrievers.embeddings import Embeddings, default_min_relevance
from retrievers.knowledge_base import KnowledgeBaseManager
from retrievers.language import Language
from retrievers.sources.registry import SourceRegistry


@dataclass(frozen=True)
class GraphOptions:
    """Defaults for every turn; `Context` may override the per-turn ones."""

    top_k: int = 5
    router: Literal["rules", "llm"] = "rules"
    grader: Literal["score", "llm"] = "score"
    min_relevance: float | None = None  # None: the embedding model's calibrated default
    deadline_ms: int = 1500
    llm_timeout_s: float = 8.0
    llm_first_token_timeout_s: float = 3.0
    router_timeout_s: float = 1.5
    company: dict[str, str] = field(default_factory=lambda: {"en": "Kumo Audio", "ja": "クモオーディオ"})


@dataclass
class Services:
    knowledge_base: KnowledgeBaseManager
    embeddings: Embeddings
    options: GraphOptions = field(default_factory=GraphOptions)
    chat_model: BaseChatModel | None = None  # answers; None means extractive answers
    router_model: BaseChatModel | None = None  # the optional LLM router (defaults to chat_model)
    grader_model: BaseChatModel | None = None  # the optional LLM grader (defaults to chat_model)
    sources: SourceRegistry = field(default_factory=SourceRegistry)  # external systems
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # e.g. the HTTP client

    @property
    def min_relevance(self) -> float:
        if self.options.min_relevance is not None:
            return self.options.min_relevance
        return default_min_relevance(self.embeddings.name)

    def source_label(self, name: str, language: Language) -> str:
        """How a source is named in a spoken sentence."""
        source = self.sources.get(name)
        return source.labels[language] if source else label(name, language)

    async def aclose(self) -> None:
        await self.sources.aclose()
        for close in self.closers:
            await close()
        await self.knowledge_base.close()
        self.embeddings.close()
