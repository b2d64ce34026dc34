"""`voicerag ingest` of a folder of office files (PDF, HTML, DOCX, CSV, XLSX; Japanese and English):
the real console script in a subprocess, an embedded Chroma, the fast offline model (`EMBEDDINGS=use`).

One ingest for the module; `voicerag search` then finds every fact, a broken file is refused by name
with nothing written, and re-ingesting the unchanged folder writes nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes import office_files as office
from fakes.openai_server import Behaviour, FakeOpenAIServer
from helpers import services_with_chat_model
from ingest_driver import cli_env
from langchain_core.messages import HumanMessage
from test_ingest_cli import one_error_line, read_collection, snapshot, tree_digest

from graph.builder import build_graph
from graph.context import Context
from retrievers.documents import Document

pytestmark = pytest.mark.integration

VOICERAG = str(Path(sys.executable).parent / "voicerag")

# Question → the document that answers it (each fact from a different file, page, sheet or row).
FACTS = {
    "KA-100の保証期間は何年ですか": "manuals/support_guide_ja",
    "修理受付の電話番号": "manuals/support_guide_ja",
    "How long do I hold the reset pin on the R7 router?": "manuals/r7_guide",
    "Which plan includes unlimited international calls?": "web/plans",
    "Premium plan monthly price": "web/plans",
    "沖縄への配送は何日かかりますか": "web/shipping_ja",
    "How many days a week may employees work remotely?": "policies/work_policy",
    "ポイントの有効期限は": "faq/faq/q1",
    "change my billing address": "faq/faq/q2",
    "領収書の発行": "faq/faq/q3",
    "Price of the R7 in yen": "catalog/catalog/Prices",
    "梅田店の営業時間": "catalog/catalog/店舗",
}
DOC_IDS = sorted(set(FACTS.values()))


def voicerag(cwd: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(data_dir, EMBEDDINGS="use")
    return subprocess.run([VOICERAG, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@dataclass
class Ingested:
    cwd: Path
    data_dir: Path
    first: subprocess.CompletedProcess[str]
    snapshot: dict[str, Any]


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    cwd = tmp_path_factory.mktemp("formats")
    office.write_office_corpus(cwd / "kb")
    data_dir = cwd / "data"
    first = voicerag(cwd, data_dir, "ingest", "kb")
    assert first.returncode == 0, first.stderr
    state = snapshot(data_dir)
    assert state is not None
    return Ingested(cwd, data_dir, first, state)


def test_one_command_ingests_every_format_and_reads_the_configs(kb: Ingested) -> None:
    assert kb.first.stdout.startswith(f"{len(DOC_IDS)} added, 0 updated, 0 unchanged, 0 removed; ")
    assert kb.first.stderr == "", "the ingest.yaml files are configs, not skipped documents"
    docs = kb.snapshot["docs"]
    assert sorted(docs) == DOC_IDS
    assert {docs[i]["category"] for i in ("faq/faq/q1", "faq/faq/q2")} == {"support"}  # the sidecar config
    assert docs["catalog/catalog/Prices"]["category"] == "product"  # the folder config
    assert (docs["manuals/support_guide_ja"]["lang"], docs["manuals/r7_guide"]["lang"]) == ("ja", "en")


def test_pdf_chunks_are_stored_with_their_pages(kb: Ingested) -> None:
    stored = read_collection(kb.data_dir, documents=True)
    assert stored is not None
    pages = {
        text: (meta["page"], meta["pages"])
        for text, meta in zip(stored["documents"], stored["metadatas"], strict=True)
        if meta["doc_id"] == "manuals/support_guide_ja"
    }
    (text, span), *more = pages.items()  # three short pages: one chunk of 1,000 characters
    assert not more and "0120-555-123" in text
    assert span == (1, "1-3")
    assert not any("page" in meta for meta in stored["metadatas"] if meta["doc_id"].startswith("faq/"))


def test_search_finds_every_fact(kb: Ingested) -> None:
    queries = kb.cwd / "queries.txt"
    queries.write_text("\n".join(FACTS) + "\n", encoding="utf-8")
    done = voicerag(kb.cwd, kb.data_dir, "search", "--queries", str(queries), "--top-k", "3")
    assert done.returncode == 0, done.stderr
    found = {
        row["query"]: [hit["doc_id"] for hit in row["results"]] for row in map(json.loads, done.stdout.splitlines())
    }
    missed = {query: hits for query, hits in found.items() if FACTS[query] not in hits}
    assert not missed, missed


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("locked.pdf", office.encrypted_pdf, "encrypted (needs a password)"),
        ("scan.pdf", office.scanned_pdf, "no extractable text on any of its 1 page(s)"),
        ("cut.pdf", lambda: office.english_pdf()[:-400], "not a readable PDF ("),  # pypdf's warnings kept off stderr
        ("cut.docx", office.corrupt_docx, "not a readable DOCX file ("),
        ("book.xlsx", office.empty_sheet_xlsx, "sheet 'Empty': is empty"),
        ("gaps.csv", lambda: b"q,a\nx,y\n,\nz,w\n", "row 3: no values"),
    ],
)
def test_a_broken_file_refuses_the_whole_folder_and_writes_nothing(
    kb: Ingested, tmp_path: Path, name: str, content: Any, message: str
) -> None:
    folder = tmp_path / "kb"
    shutil.copytree(kb.cwd / "kb", folder)
    (folder / "faq/faq.csv").write_bytes(
        office.csv_file([*office.CSV_ROWS, {"id": "q4", "question": "New?", "answer": "Yes."}])
    )
    (folder / "broken" / name).parent.mkdir()
    (folder / "broken" / name).write_bytes(content())
    before = tree_digest(kb.data_dir)
    done = voicerag(kb.cwd, kb.data_dir, "ingest", str(folder))
    assert done.returncode == 2
    assert one_error_line(done).startswith(f"{folder}/broken/{name}: {message}")
    assert tree_digest(kb.data_dir) == before


def test_reingesting_the_unchanged_folder_writes_nothing(kb: Ingested) -> None:
    again = voicerag(kb.cwd, kb.data_dir, "ingest", "kb")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(
        f"0 added, 0 updated, {len(DOC_IDS)} unchanged, 0 removed; 0 chunks written, 0 deleted"
    )
    assert snapshot(kb.data_dir) == kb.snapshot


def test_files_read_by_several_processes_make_the_same_knowledge_base(kb: Ingested, tmp_path: Path) -> None:
    """`--workers 2`: the folder's files are parsed in two processes; what is stored is identical,
    heads' metadata (content hashes, pages, configs applied) included."""
    data_dir = tmp_path / "data"
    done = voicerag(kb.cwd, data_dir, "ingest", "kb", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(";")[0] == kb.first.stdout.split(";")[0]  # "N added, 0 updated, ..."
    assert snapshot(data_dir) == kb.snapshot


def test_a_bad_workers_count_is_a_usage_error(kb: Ingested, tmp_path: Path) -> None:
    done = voicerag(kb.cwd, tmp_path / "data", "ingest", "kb", "--workers", "0")
    assert done.returncode == 2 and "--workers" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


def test_a_search_says_which_pages_of_a_pdf_the_passage_is_on(tmp_path: Path) -> None:
    """A PDF longer than a chunk: the hit for a fact on page 3 says so (`pages`), in `search --json`
    and in the table, and the answer prompt's context names the page (graph/nodes/generate.py)."""
    filler = [" ".join(f"Section {p}.{n} covers the R7's lamp colours and cable routing." for n in range(25))
              for p in (1, 2)]  # fmt: skip
    fact = "Resetting the R7: hold the reset pin for twelve seconds until the lamp blinks amber."
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "r7_manual.pdf").write_bytes(office.pdf([*filler, fact], title="R7 Manual"))
    data_dir = tmp_path / "data"
    assert voicerag(tmp_path, data_dir, "ingest", "kb").returncode == 0
    done = voicerag(tmp_path, data_dir, "search", "reset pin twelve seconds", "--json")
    assert done.returncode == 0, done.stderr
    (best, *_) = json.loads(done.stdout)["results"]
    assert best["doc_id"] == "r7_manual" and best["pages"] in ("3", "2-3")  # the passage may begin on page 2
    table = voicerag(tmp_path, data_dir, "search", "lamp colours cable routing section 1.3")
    assert table.returncode == 0 and "pages" in table.stdout, table.stdout  # the column, when a hit is paged


async def test_the_answer_prompt_names_the_page_of_a_pdf_passage(tmp_path: Path) -> None:
    filler = " ".join(f"Section {n} covers the R7's lamp colours and cable routing." for n in range(25))
    fact = "Resetting the R7: hold the reset pin for twelve seconds until the lamp blinks amber."
    manual = Document(id="r7", title="R7 Manual", text=f"{filler}\n{filler}\n{fact}", lang="en",
                      page_starts=(0, len(filler) + 1, 2 * len(filler) + 2))  # fmt: skip
    with FakeOpenAIServer(Behaviour(reply="Hold the reset pin for twelve seconds, as page 3 says.")) as server:
        async with services_with_chat_model(tmp_path, server.base_url, [manual]) as services:
            state = await build_graph(services).ainvoke(
                {"messages": [HumanMessage("How long do I hold the R7's reset pin?")]}, context=Context()
            )
    pages = state["graded"][0]["metadata"]["pages"]
    assert pages in ("3", "2-3")  # the passage: the fact's chunk and its neighbours
    (answer_request,) = [r for r in server.chat_requests if not r.tool_names]
    assert f"[1] R7 Manual (p. {pages})" in json.dumps(answer_request.messages, ensure_ascii=False)
