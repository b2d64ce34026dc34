"""Access control inside the knowledge base's search: exact, and through every front door.

Exactness: 240 documents of the shared eval sets (JSQuAD and SQuAD paragraphs), half of them
restricted (by role, by tenant, by both), are searched as four callers; each caller's results equal
those of a second knowledge base holding only the documents that caller may see: the same ids in the
same order with the same fused, dense, keyword and coverage figures. Both ways the dense signal is
masked are forced in turn (an over-fetch of the nearest chunks, masked; the exact query among the
visible chunks' ids), on embedded Chroma and on a `chroma run` server.

Front doors: the sample knowledge base, with its staff-only dealer price sheet and the contract of one
tenant, searched through `KnowledgeBaseManager`, the LangChain retriever, the compiled graph's
`retrieve` node and `voicerag search`: the restricted facts reach only the entitled caller.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from helpers import REPO, jsonl, offline_services, write
from ingest_driver import ChromaServer, cli_env
from langchain_core.messages import HumanMessage

from graph.builder import VoiceGraph, build_graph, warm_up
from graph.context import Context
from graph.services import Services
from retrievers.access import ANONYMOUS, Viewer
from retrievers.documents import Document, load_documents
from retrievers.embeddings import Embeddings, UseModel, VectorCache
from retrievers.evaluation import load_queries
from retrievers.knowledge_base import KnowledgeBaseManager, SearchHit, hybrid_search, make_chroma_client

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

VOICERAG = str(Path(sys.executable).parent / "voicerag")
PER_LANGUAGE = 120  # documents of each eval set
QUESTIONS_PER_LANGUAGE = 30
TOP_K = 10

# Who may see the eval documents: every other document is public, the rest cycle through these.
RULES: list[dict[str, Any]] = [
    {"roles": ("member",)},
    {"tenant": "t1"},
    {"roles": ("staff",), "tenant": "t2"},
    {"roles": ("member", "staff")},
]
CALLERS = {
    "anonymous": ANONYMOUS,
    "member": Viewer.of(["member"]),
    "staff of t2": Viewer.of(["staff"], "t2"),
    "t1, no roles": Viewer.of([], "t1"),
}
# What each caller sees, by rule (None: public), written out rather than derived from `can_see`.
EXPECTED_RULES_SEEN = {
    "anonymous": {None},
    "member": {None, 0, 3},
    "staff of t2": {None, 2, 3},
    "t1, no roles": {None, 1},
}


def rule_of(number: int) -> int | None:
    return None if number % 2 == 0 else (number // 2) % len(RULES)


def eval_set() -> tuple[list[Document], list[str]]:
    """The first documents of each set, half restricted, and questions whose answer is among them."""
    docs: list[Document] = []
    questions: list[str] = []
    for folder in (REPO / "eval/ja/jsquad_dev", REPO / "eval/en/squad_dev"):
        chosen = load_documents([folder / "corpus.jsonl"]).documents[:PER_LANGUAGE]
        ids = {doc.id for doc in chosen}
        asked = [q.text for q in load_queries(folder / "queries.jsonl") if q.relevant & ids]
        questions.extend(asked[:QUESTIONS_PER_LANGUAGE])
        docs.extend(chosen)
    for number, doc in enumerate(docs):
        rule = rule_of(number)
        if rule is not None:
            docs[number] = doc.model_copy(update=RULES[rule])
    return docs, questions


DOCS, QUESTIONS = eval_set()


def visible_to(caller: str) -> list[Document]:
    return [doc for doc in DOCS if CALLERS[caller].can_see(doc.roles, doc.tenant)]


async def test_the_eval_set_is_half_restricted_and_callers_see_what_the_rules_say() -> None:
    assert len(QUESTIONS) == 2 * QUESTIONS_PER_LANGUAGE
    assert sum(1 for doc in DOCS if doc.roles or doc.tenant) == len(DOCS) // 2
    for caller, rules in EXPECTED_RULES_SEEN.items():
        seen = {doc.id for doc in visible_to(caller)}
        assert seen == {doc.id for n, doc in enumerate(DOCS) if rule_of(n) in rules}, caller


@dataclass
class Bases:
    full: KnowledgeBaseManager  # every document, half restricted
    alone: dict[str, KnowledgeBaseManager]  # per caller: only the documents that caller may see


def manager(client: Any, name: str, embeddings: Embeddings) -> KnowledgeBaseManager:
    """A knowledge base whose vector index is searched exhaustively (`ef_search` above its size), so
    nearest neighbours are exact on both sides and a difference could only come from filtering; and
    no result cache, so every search is run."""
    client.create_collection(name, embedding_function=None, configuration={"hnsw": EXHAUSTIVE})
    return KnowledgeBaseManager(client, name, embeddings, result_cache_size=0)


EXHAUSTIVE = {"space": "cosine", "ef_search": 2000}


@pytest.fixture(scope="module")
def chroma_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    if request.param == "embedded":
        yield None
        return
    with ChromaServer(tmp_path_factory.mktemp("chroma-server")) as server:
        yield server.url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bases(
    chroma_url: str | None, use_model: UseModel, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Bases]:
    folder = tmp_path_factory.mktemp("access")
    embeddings = Embeddings(use_model, VectorCache(tmp_path_factory.getbasetemp() / "access-vectors.sqlite"))
    client = make_chroma_client(folder / "chroma", chroma_url)
    full = manager(client, "all-documents", embeddings)
    await full.index_documents(DOCS)
    alone = {}
    for number, caller in enumerate(CALLERS):
        alone[caller] = manager(client, f"only-caller-{number}", embeddings)
        await alone[caller].index_documents(visible_to(caller))
    yield Bases(full, alone)
    for kb in [full, *alone.values()]:
        await kb.close()
    embeddings.close()


def figures(hits: list[SearchHit]) -> list[tuple[Any, ...]]:
    return [(h["doc_id"], h["score"], h["dense"], h["keyword"], h["coverage"], h["text"]) for h in hits]


def assert_same(found: list[SearchHit], expected: list[SearchHit], where: str) -> None:
    """Same documents in the same order, same passages, every figure within 1e-4 (they are rounded
    to 4 decimals: two values a hair apart may round 1e-4 apart)."""
    assert [h["doc_id"] for h in found] == [h["doc_id"] for h in expected], where
    for got, want in zip(figures(found), figures(expected), strict=True):
        assert got[5] == want[5], where
        for a, b in zip(got[1:5], want[1:5], strict=True):
            assert (a is None) == (b is None), where
            assert a is None or abs(a - b) <= 1.01e-4, f"{where}: {got[:5]} != {want[:5]}"


DENSE_PATHS = {
    "over-fetch": {},  # 240 documents: the over-fetch reaches the whole collection
    # a partial over-fetch, and the exact query when it falls short
    "small pool": {"CANDIDATE_POOL": 10, "OVERFETCH_SLACK": 1.0},
    "exact query": {"MAX_OVERFETCH": 0},  # every masked search asks among the visible ids
}


@pytest.mark.parametrize("chroma_url", ["embedded", "chroma-server"], indirect=True, scope="module")
@pytest.mark.parametrize("path", DENSE_PATHS)
async def test_each_caller_gets_exactly_the_results_of_a_knowledge_base_of_what_they_may_see(
    bases: Bases, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in DENSE_PATHS[path].items():
        monkeypatch.setattr(hybrid_search, name, value)
    exact_queries = 0
    nearest = bases.full.store.nearest

    def counting(vector: Any, limit: int, among: Any = None) -> list[tuple[str, float]]:
        nonlocal exact_queries
        exact_queries += among is not None
        return nearest(vector, limit, among)

    monkeypatch.setattr(bases.full.store, "nearest", counting)
    restricted_results = 0
    for caller, viewer in CALLERS.items():
        for question in QUESTIONS:
            found = await bases.full.search(question, top_k=TOP_K, viewer=viewer)
            expected = await bases.alone[caller].search(question, top_k=TOP_K, viewer=viewer)  # sees all there
            assert_same(found, expected, f"{caller}: {question}")
            hidden = {doc.id for doc in DOCS} - {doc.id for doc in visible_to(caller)}
            assert not {h["doc_id"] for h in found} & hidden
            restricted_results += sum(
                1 for h in found if DOCS_BY_ID[h["doc_id"]].roles or DOCS_BY_ID[h["doc_id"]].tenant
            )
    assert restricted_results > 0  # control: entitled callers do get restricted documents
    searches = len(QUESTIONS) * len(CALLERS)
    if path == "over-fetch":
        assert exact_queries == 0
    elif path == "exact query":
        assert exact_queries == searches  # no caller sees everything: every search was masked
    else:
        assert 0 < exact_queries < searches


DOCS_BY_ID = {doc.id: doc for doc in DOCS}


@pytest.mark.parametrize("chroma_url", ["embedded"], indirect=True, scope="module")
async def test_keyword_only_searches_are_exact_too(bases: Bases) -> None:
    for caller, viewer in CALLERS.items():
        for question in QUESTIONS[::5]:
            found = await bases.full.search(question, top_k=TOP_K, viewer=viewer, dense=False)
            expected = await bases.alone[caller].search(question, top_k=TOP_K, dense=False, viewer=viewer)
            assert_same(found, expected, f"{caller}, keywords alone: {question}")


# ---------------------------------------------------------------------------- the sample knowledge base

STAFF_FACT = "27,860"  # the KH-300's dealer price, in the staff-only sheet (en and ja)
TENANT_FACT = "TSB-2026-0419"  # a contract number, in Tsubame Hotels' contract
STAFF = Viewer.of(["staff"])
TSUBAME = Viewer.of([], "tsubame-hotels")
ASKED = [
    ("What is the dealer price of the Kumo Halo KH-300?", "internal-dealer-prices-en", STAFF),
    ("KH-300の卸価格はいくらですか？", "internal-dealer-prices-ja", STAFF),
    ("What discount does Tsubame Hotels get under its contract?", "internal-contract-tsubame-en", TSUBAME),
]
NOT_ENTITLED = [
    ANONYMOUS,
    Viewer.of(["member"]),
    Viewer.of([], "other-hotels"),
    Viewer.of(["customer"], "tsubame"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sample(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Services, VoiceGraph, Path]]:
    data_dir = tmp_path_factory.mktemp("sample")
    services = offline_services(data_dir, "use")
    await services.knowledge_base.index_documents(load_documents([REPO / "data/knowledge_base"]).documents)
    await warm_up(services)
    yield services, build_graph(services), data_dir
    await services.aclose()


async def test_knowledge_base_search_gives_restricted_facts_only_to_entitled_callers(
    sample: tuple[Services, VoiceGraph, Path],
) -> None:
    kb = sample[0].knowledge_base
    for question, doc_id, allowed in ASKED:
        hits = await kb.search(question, top_k=5, viewer=allowed)
        assert hits[0]["doc_id"] == doc_id  # control: the entitled caller gets it first
        for viewer in NOT_ENTITLED:
            for searched in (await kb.search(question, top_k=10, viewer=viewer), await kb.search(question, top_k=10)):
                assert not [h["doc_id"] for h in searched if h["doc_id"].startswith("internal-")]
                assert not any(STAFF_FACT in h["text"] or TENANT_FACT in h["text"] for h in searched)
            found = await kb.candidates(question, viewer=viewer)
            assert found is not None and not [d for d in {*found.dense, *found.keyword} if d.startswith("internal-")]


async def test_results_are_cached_per_caller_never_shared(sample: tuple[Services, VoiceGraph, Path]) -> None:
    kb = sample[0].knowledge_base
    question, doc_id, allowed = ASKED[0]
    assert kb.result_cache_size > 0
    for _ in range(2):  # the second round is served from the cache
        assert (await kb.search(question, viewer=allowed))[0]["doc_id"] == doc_id
        assert doc_id not in {h["doc_id"] for h in await kb.search(question)}
        assert doc_id not in {h["doc_id"] for h in await kb.search(question, viewer=Viewer.of(["staff,member"]))}


async def test_the_langchain_retriever_searches_as_its_caller(sample: tuple[Services, VoiceGraph, Path]) -> None:
    kb = sample[0].knowledge_base
    for question, doc_id, allowed in ASKED:
        assert next(d.id for d in await kb.as_retriever(top_k=3, viewer=allowed).ainvoke(question)) == doc_id
        for retriever in (kb.as_retriever(top_k=10), kb.as_retriever(top_k=10, viewer=Viewer.of(["member"]))):
            found = await retriever.ainvoke(question)
            assert found and not [d.id for d in found if str(d.id).startswith("internal-")]


def caller_context(viewer: Viewer) -> Context:
    return Context(user_id="caller", roles=sorted(viewer.roles), tenant=viewer.tenant)


async def test_the_graph_retrieves_as_the_turns_caller(sample: tuple[Services, VoiceGraph, Path]) -> None:
    graph = sample[1]
    for question, doc_id, allowed in ASKED:
        state = await graph.ainvoke({"messages": [HumanMessage(question)]}, context=caller_context(allowed))
        assert doc_id in [d["doc_id"] for d in state["documents"]]  # control
        for viewer in NOT_ENTITLED[:2]:
            state = await graph.ainvoke({"messages": [HumanMessage(question)]}, context=caller_context(viewer))
            kept = [d["doc_id"] for d in [*state["documents"], *state["graded"]]]
            assert not [d for d in kept if d.startswith("internal-")], kept
            assert STAFF_FACT not in state["answer"] and TENANT_FACT not in state["answer"]
    staff_answer = await graph.ainvoke({"messages": [HumanMessage(ASKED[0][0])]}, context=caller_context(STAFF))
    assert STAFF_FACT in staff_answer["answer"]  # control: the extractive answer reads the fact out


async def search_cli(data_dir: Path, question: str, *flags: str) -> list[str]:
    done = await asyncio.to_thread(
        subprocess.run,
        [VOICERAG, "search", question, "--json", "--top-k", "10", *flags],
        env=cli_env(data_dir, EMBEDDINGS="use"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return [hit["doc_id"] for hit in json.loads(done.stdout)["results"]]


async def test_voicerag_search_searches_as_the_caller_its_flags_describe(
    sample: tuple[Services, VoiceGraph, Path],
) -> None:
    data_dir = sample[2]
    question = ASKED[0][0]
    restricted = [(), ("--roles", "member"), ("--tenant", "other-hotels"), ("--user", "staff")]
    staff, tenant, *others = await asyncio.gather(  # separate processes: at once, to keep the suite short
        search_cli(data_dir, question, "--user", "u1", "--roles", "member, staff"),
        search_cli(data_dir, ASKED[2][0], "--tenant", "tsubame-hotels"),
        *(search_cli(data_dir, f"{question} Tsubame Hotels contract", *flags) for flags in restricted),
    )
    assert staff[0] == ASKED[0][1] and tenant[0] == ASKED[2][1]
    for flags, found in zip(restricted, others, strict=True):
        assert found and not [d for d in found if d.startswith("internal-")], flags


# ---------------------------------------------------------------------------- writes


async def test_changing_who_may_see_a_document_reingests_it(kb: KnowledgeBaseManager) -> None:
    public = Document(id="memo", title="Memo", text="The summer party is on the roof terrace.", lang="en")
    await kb.index_documents([public])
    assert [h["doc_id"] for h in await kb.search("summer party roof")] == ["memo"]
    report = await kb.index_documents([public.model_copy(update={"roles": ("staff",)})])
    assert report.updated == 1
    assert await kb.search("summer party roof") == []
    assert [h["doc_id"] for h in await kb.search("summer party roof", viewer=STAFF)] == ["memo"]
    assert await kb.update_index("memo", "The summer party moved to the lobby.")  # keeps its roles
    assert await kb.search("summer party lobby") == []
    assert (await kb.search("summer party lobby", viewer=STAFF))[0]["text"].endswith("lobby.")
    made_public = await kb.index_documents([public])  # an upsert keeps metadata keys it is not given
    assert made_public.updated == 1 and [h["doc_id"] for h in await kb.search("summer party roof")] == ["memo"]


async def test_a_document_with_a_bad_role_is_refused_naming_the_file_line_and_field(tmp_path: Path) -> None:
    write(tmp_path, "kb/ok.md", "---\nroles: staff\n---\nFine.\n")
    write(
        tmp_path,
        "kb/memos.jsonl",
        jsonl({"id": "a", "text": "x"}, {"id": "b", "text": "y", "roles": ["staff", "all staff"]}),
    )
    done = await asyncio.to_thread(
        subprocess.run, [VOICERAG, "ingest", "kb"], cwd=tmp_path, env=cli_env(tmp_path / "data", EMBEDDINGS="use"),
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "memos.jsonl:2: field 'roles' holds 'all staff'" in lines[0], lines
