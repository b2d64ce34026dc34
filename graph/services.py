"""What the graph needs from the outside world, gathered in one object.

`voicerag.services.build_services(settings)` builds it from settings — the one place defaults
live (`voicerag/settings.py`); tests build it from there too, swapping in fake chat models. Every
front door compiles the graph from one `Services`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from langchain_core.language_models import BaseChatModel

from graph.persona import Persona
from graph.speakable import Budget
from retrievers.embeddings import Embeddings, default_min_relevance
from retrievers.knowledge_base import KnowledgeBaseManager
from retrievers.language import Language
from retrievers.sources.registry import SourceRegistry
from retrievers.turn.admission import TurnAdmission
from retrievers.turn.reuse import LookupReuse


@dataclass(frozen=True)
class GraphOptions:
    """Options for every turn (from settings); `Context` may override the per-turn ones."""

    top_k: int
    router: Literal["rules", "llm"]
    grader: Literal["score", "llm"]
    min_relevance: float | None  # None: the embedding model's calibrated default
    deadline_ms: int
    llm_timeout_s: float
    llm_first_token_timeout_s: float
    router_timeout_s: float
    mask_for_llm: bool  # mask the question and history (retrievers.masking) before any chat model
    context_tokens: int = 16_000  # the answer prompt's budget (graph/context_budget.py), estimated offline
    budget: Budget = field(default_factory=Budget)  # how long a spoken answer may be (graph/speakable.py)


@dataclass
class Services:
    knowledge_base: KnowledgeBaseManager
    embeddings: Embeddings
    options: GraphOptions
    persona: Persona  # the company's name and every fixed sentence (data/persona.yaml)
    chat_model: BaseChatModel | None = None  # answers; None means extractive answers
    router_model: BaseChatModel | None = None  # the optional LLM router (defaults to chat_model)
    grader_model: BaseChatModel | None = None  # the optional LLM grader (defaults to chat_model)
    sources: SourceRegistry = field(default_factory=SourceRegistry)  # external systems
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # e.g. the HTTP client
    admission: TurnAdmission | None = None  # question length and rate limits; None: every turn admitted
    lookups: LookupReuse | None = None  # lookups shared by a speculative run and the next (graph/lookup_reuse.py)

    @property
    def min_relevance(self) -> float:
        if self.options.min_relevance is not None:
            return self.options.min_relevance
        return default_min_relevance(self.embeddings.name)

    def source_label(self, name: str, language: Language) -> str:
        """How a source is named in a spoken sentence."""
        if name == "knowledge_base":
            return self.persona.phrases.knowledge_base_label[language]
        source = self.sources.get(name)
        return source.labels[language] if source else name

    async def aclose(self) -> None:
        await self.sources.aclose()
        if self.admission is not None:
            await self.admission.aclose()
        for close in self.closers:
            await close()
        await self.knowledge_base.close()
        self.embeddings.close()
