"""The knowledge base: Chroma (the source of truth) + a derived keyword index + score fusion.

`KnowledgeBaseManager` (`manager.py`) is the one entry point; each of its parts has a module:

- Chroma clients, call timeouts, what failures mean (`ChromaTimeout`): `chroma_client.py`;
- where chunks are stored, read and written, the version stamp: `chroma_store.py`;
- which stored documents are whole (one version, every chunk): `consistency.py`;
- where the BM25 index is rebuilt, saved and loaded: `keyword_upkeep.py`;
- what an ingest writes (diff against what is stored): `ingest.py`;
- the one write path (order of writes, repair of a write cut short, new version): `writer.py`;
- one writer at a time across processes (file lock, or Redis): `writer_lock.py`;
- where dense and BM25 candidates are fused into `SearchHit`s: `hybrid_search.py`;
- recent results per version: `result_cache.py`;
- LangChain: the hybrid search as a retriever (`langchain_retriever.py`), the collection as a
  `langchain_chroma.Chroma` store with the product's embeddings (`langchain_store.py`).
"""

from retrievers.knowledge_base.chroma_client import DEFAULT_TIMEOUT_S, ChromaTimeout, make_chroma_client
from retrievers.knowledge_base.hits import SearchHit
from retrievers.knowledge_base.hybrid_search import Candidates
from retrievers.knowledge_base.ingest import IngestReport, ProgressCallback
from retrievers.knowledge_base.langchain_retriever import KnowledgeBaseRetriever
from retrievers.knowledge_base.langchain_store import (
    PUBLIC_ONLY,
    KnowledgeBaseEmbeddings,
    open_vector_store,
    vector_store_of,
)
from retrievers.knowledge_base.manager import KnowledgeBaseManager
from retrievers.knowledge_base.writer_lock import DEFAULT_LOCK_TIMEOUT_S, WriterLock, default_writer_lock

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "PUBLIC_ONLY",
    "Candidates",
    "ChromaTimeout",
    "IngestReport",
    "KnowledgeBaseEmbeddings",
    "KnowledgeBaseManager",
    "KnowledgeBaseRetriever",
    "ProgressCallback",
    "SearchHit",
    "WriterLock",
    "default_writer_lock",
    "make_chroma_client",
    "open_vector_store",
    "vector_store_of",
]
