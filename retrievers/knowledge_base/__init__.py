"""The knowledge base: Chroma (the source of truth) + a derived keyword index + score fusion.

`KnowledgeBaseManager` is the one entry point; see `docs/ARCHITECTURE.md` for its parts.
"""

from retrievers.knowledge_base.hits import SearchHit
from retrievers.knowledge_base.manager import (
    Candidates,
    IngestReport,
    KnowledgeBaseManager,
    ProgressCallback,
    make_chroma_client,
)

__all__ = [
    "Candidates",
    "IngestReport",
    "KnowledgeBaseManager",
    "ProgressCallback",
    "SearchHit",
    "make_chroma_client",
]
