"""The knowledge base: Chroma (the source of truth) + a derived keyword index + score fusion.

`KnowledgeBaseManager` (`manager.py`) is the one entry point; each of its parts has a module:

- where chunks are stored, read and written, the version stamp: `chroma_store.py`;
- where the BM25 index is rebuilt, saved and loaded: `keyword_upkeep.py`;
- what an ingest writes (diff against what is stored): `ingest.py`;
- the one write path (order of writes, new version, lock): `writer.py`;
- where dense and BM25 candidates are fused into `SearchHit`s: `hybrid_search.py`;
- recent results per version: `result_cache.py`.
"""

from retrievers.knowledge_base.chroma_store import make_chroma_client
from retrievers.knowledge_base.hits import SearchHit
from retrievers.knowledge_base.hybrid_search import Candidates
from retrievers.knowledge_base.ingest import IngestReport, ProgressCallback
from retrievers.knowledge_base.manager import KnowledgeBaseManager

__all__ = [
    "Candidates",
    "IngestReport",
    "KnowledgeBaseManager",
    "ProgressCallback",
    "SearchHit",
    "make_chroma_client",
]
