"""LangChain interop: a knowledge base built by the real `voicerag ingest` (a subprocess), opened by a
plain LangChain user as a `langchain_chroma.Chroma` store with the product's embeddings, on the
embedded folder and on a real `chroma run` server; and the product's hybrid search as a retriever."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from helpers import jsonl, offline_services, write
from ingest_driver import ChromaServer, cli_env
from langchain_chroma import Chroma

from retrievers.embeddings import E5Model, Embeddings, UseModel
from retrievers.errors import UserInputError
from retrievers.knowledge_base import PUBLIC_ONLY, KnowledgeBaseEmbeddings, open_vector_store, vector_store_of

pytestmark = pytest.mark.integration  # the CLI in subprocesses, Chroma, a model

VOICERAG = str(Path(sys.executable).parent / "voicerag")
DOCUMENTS: list[dict[str, Any]] = [
    {"id": "returns", "title": "Returns", "lang": "en",
     "text": "Returns are accepted within 30 days of purchase, with the receipt, at any of our stores."},
    {"id": "hours", "title": "Opening hours", "lang": "en",
     "text": "Our stores are open from 10 am to 8 pm, Monday to Saturday, and closed on Sundays."},
    {"id": "shipping", "title": "送料", "lang": "ja",
     "text": "送料は全国一律500円です。5,000円以上のご注文で送料は無料になります。"},
    {"id": "warranty", "title": "保証", "lang": "ja", "metadata": {"page": 12, "section": "保証"},
     "text": "製品の保証期間はお買い上げの日から2年間です。保証書を大切に保管してください。"},
    {"id": "staff-discount", "title": "Staff discount", "lang": "en", "roles": ["staff"],
     "text": "Staff receive a discount of 20 percent on all products, shipping included."},
]  # fmt: skip


@dataclass
class Built:
    data_dir: Path
    chroma_url: str | None


def ingest(tmp: Path, **env: str) -> Built:
    data_dir = tmp / "data"
    corpus = write(tmp, "corpus/kb.jsonl", jsonl(*DOCUMENTS))
    done = subprocess.run(
        [VOICERAG, "ingest", str(corpus)],
        cwd=tmp,
        env=cli_env(data_dir, EMBEDDINGS="use", **env),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return Built(data_dir, env.get("CHROMA_URL"))


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return ingest(tmp_path_factory.mktemp("langchain-embedded"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    with ChromaServer(tmp_path_factory.mktemp("langchain-chroma-server")) as server:
        yield ingest(tmp_path_factory.mktemp("langchain-served"), CHROMA_URL=server.url)


@pytest.fixture(scope="module")
def lc_embeddings(use_model: UseModel) -> KnowledgeBaseEmbeddings:
    return KnowledgeBaseEmbeddings(Embeddings(use_model))


QUESTIONS = [
    ("How many days do I have to return a product?", "returns"),
    ("When are the stores open?", "hours"),
    ("送料はいくらですか?", "shipping"),
    ("保証期間は何年ですか?", "warranty"),
]


def assert_answers(store: Chroma) -> None:
    for question, doc_id in QUESTIONS:
        found = store.similarity_search(question, k=3, filter=PUBLIC_ONLY)
        assert found[0].metadata["doc_id"] == doc_id, (question, [d.metadata["doc_id"] for d in found])
        stored = next(d for d in DOCUMENTS if d["id"] == doc_id)
        assert found[0].page_content == stored["text"]
        assert found[0].id == f"{doc_id}::0"
        assert found[0].metadata["title"] == stored["title"] and found[0].metadata["lang"] == stored["lang"]
        assert found[0].metadata["source"].endswith("kb.jsonl")


def test_a_plain_langchain_user_opens_the_embedded_store(
    embedded: Built, lc_embeddings: KnowledgeBaseEmbeddings
) -> None:
    store = Chroma(
        collection_name="voicerag",
        persist_directory=str(embedded.data_dir / "chroma"),
        embedding_function=lc_embeddings,
    )
    assert_answers(store)
    warranty = store.similarity_search("保証期間は何年ですか?", k=1)[0]
    assert warranty.metadata["page"] == 12 and warranty.metadata["section"] == "保証"  # the document's fields
    scored = store.similarity_search_with_relevance_scores("When are the stores open?", k=2)
    assert scored[0][0].metadata["doc_id"] == "hours" and 0 < scored[1][1] < scored[0][1] <= 1
    # Without the filter the store sees every chunk, restricted ones too; with it, only public ones.
    discount = "What discount do staff get?"
    assert store.similarity_search(discount, k=1)[0].metadata["doc_id"] == "staff-discount"
    assert all(d.metadata["doc_id"] != "staff-discount" for d in store.similarity_search(discount, filter=PUBLIC_ONLY))


async def test_async_search_and_retriever_of_the_store(embedded: Built, lc_embeddings: KnowledgeBaseEmbeddings) -> None:
    store = Chroma(
        collection_name="voicerag",
        persist_directory=str(embedded.data_dir / "chroma"),
        embedding_function=lc_embeddings,
    )
    found = await store.asimilarity_search("送料はいくらですか?", k=1)
    assert found[0].metadata["doc_id"] == "shipping"
    retriever = store.as_retriever(search_kwargs={"k": 2, "filter": PUBLIC_ONLY})
    assert (await retriever.ainvoke("return within how many days"))[0].metadata["doc_id"] == "returns"


def test_a_plain_langchain_user_opens_the_served_store(served: Built, lc_embeddings: KnowledgeBaseEmbeddings) -> None:
    assert served.chroma_url is not None
    port = int(served.chroma_url.rsplit(":", 1)[1])
    store = Chroma(collection_name="voicerag", host="127.0.0.1", port=port, embedding_function=lc_embeddings)
    assert_answers(store)


async def test_the_product_opens_its_store_and_the_hybrid_retriever_agrees(embedded: Built) -> None:
    services = offline_services(embedded.data_dir)
    try:
        store = vector_store_of(services.knowledge_base)
        assert_answers(store)
        retriever = services.knowledge_base.as_retriever(top_k=3)
        for question, doc_id in QUESTIONS:
            hits = await retriever.ainvoke(question)
            assert hits[0].metadata["doc_id"] == doc_id, question
            assert hits[0].page_content == store.similarity_search(question, k=1, filter=PUBLIC_ONLY)[0].page_content
        assert retriever.invoke("送料はいくらですか?")[0].metadata["doc_id"] == "shipping"  # sync too
        restricted = await retriever.ainvoke("What discount do staff get?")
        assert all(d.metadata["doc_id"] != "staff-discount" for d in restricted)  # access control: anonymous
    finally:
        await services.aclose()


def test_the_product_opens_the_served_store_on_its_own_client(
    served: Built, lc_embeddings: KnowledgeBaseEmbeddings
) -> None:
    assert served.chroma_url is not None
    port = int(served.chroma_url.rsplit(":", 1)[1])
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    assert_answers(open_vector_store(client, "voicerag", lc_embeddings.embeddings))


def test_a_store_built_with_another_model_is_refused(embedded: Built, lc_embeddings: KnowledgeBaseEmbeddings) -> None:
    client = chromadb.PersistentClient(path=str(embedded.data_dir / "chroma"))

    class Other:
        name = "e5-small-q4"

        def passages(self, texts: list[str]) -> None: ...

        queries = passages

    with pytest.raises(UserInputError, match="built with use-m3"):
        open_vector_store(client, "voicerag", Embeddings(Other()))  # type: ignore[arg-type]


async def test_the_embeddings_adapter_embeds_passages_and_queries(lc_embeddings: KnowledgeBaseEmbeddings) -> None:
    texts = ["送料は全国一律500円です。", "Returns within 30 days."]
    documents = lc_embeddings.embed_documents(texts)
    assert len(documents) == 2 and all(isinstance(x, float) for x in documents[0])
    assert await lc_embeddings.aembed_documents(texts) == documents
    assert await lc_embeddings.aembed_query("送料は?") == lc_embeddings.embed_query("送料は?")
    assert lc_embeddings.embed_documents([]) == []


def test_documents_are_embedded_as_passages_and_queries_as_queries() -> None:
    """e5 is asymmetric ("passage: " / "query: " inside the model): the adapter must pick the right side."""
    e5 = E5Model()
    adapter = KnowledgeBaseEmbeddings(Embeddings(e5))
    text = "送料は全国一律500円です。"
    passage, query = e5.passages([text])[0], e5.queries([text])[0]
    assert float(np.dot(passage, query)) < 0.999  # the two sides differ: the test can tell them apart
    np.testing.assert_allclose(adapter.embed_documents([text])[0], passage, atol=1e-6)
    np.testing.assert_allclose(adapter.embed_query(text), query, atol=1e-6)
