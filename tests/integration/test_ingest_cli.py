"""`voicerag ingest`: the real console script in a subprocess, writing to an embedded Chroma.

Runs use `EMBEDDINGS=use` (the fast offline model) except the 10 MB document, which injects a
hashing model: the real models embed ~15 chunks of 1,000 characters a second on 2 cores, so a
10 MB document takes many minutes with them whatever the chunk size.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ingest_driver
import pytest
from helpers import jsonl, write

pytestmark = pytest.mark.integration  # the CLI in subprocesses: embedded Chroma and a model

VOICERAG = str(Path(sys.executable).parent / "voicerag")

# Reads a collection straight from Chroma in a fresh process (no model, no cached client).
READ_COLLECTION = """
import json, sys
import chromadb
from chromadb.config import Settings
client = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(anonymized_telemetry=False))
try:
    collection = client.get_collection(sys.argv[2])
except Exception:
    print("null")
    raise SystemExit(0)
include = ["metadatas", "documents"] if sys.argv[3] == "1" else ["metadatas"]
got = collection.get(include=include)
print(json.dumps({
    "count": collection.count(),
    "ids": got["ids"],
    "metadatas": got["metadatas"],
    "documents": got.get("documents"),
}))
"""

# `voicerag` with a deterministic hashing model in place of the real one.
RUN_WITH_HASH_MODEL = """
import sys, zlib
import numpy as np
import voicerag.services

class HashModel:
    name = "test-hash-64"

    def passages(self, texts):
        rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(64) for t in texts]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), 64)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    queries = passages

voicerag.services.load_model = lambda *args, **kwargs: HashModel()
from voicerag.cli.main import run
sys.argv = ["voicerag", *sys.argv[1:]]
run()
"""


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any voicerag setting, plus the test's own (the fast offline model)."""
    return ingest_driver.cli_env(data_dir, **{"EMBEDDINGS": "use", **extra})


def voicerag(cwd: Path, data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOICERAG, *args], cwd=cwd, env=cli_env(data_dir, **env), capture_output=True, text=True, timeout=240
    )


def read_collection(data_dir: Path, name: str = "voicerag", documents: bool = False) -> dict[str, Any] | None:
    done = subprocess.run(
        [sys.executable, "-c", READ_COLLECTION, str(data_dir / "chroma"), name, "1" if documents else "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def snapshot(data_dir: Path, name: str = "voicerag") -> dict[str, Any] | None:
    """What a reader sees: every chunk id and each document's head-chunk metadata."""
    got = read_collection(data_dir, name)
    if got is None:
        return None
    heads = {m["doc_id"]: m for m in got["metadatas"] if m["chunk_index"] == 0}
    return {"count": got["count"], "ids": sorted(got["ids"]), "docs": heads}


def tree_digest(folder: Path) -> str:
    """Hash of every file under `folder`: equal digests mean nothing was written."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


# --------------------------------------------------------------------------------------------
# One knowledge base ingested once for the module; tests that read it must leave it unchanged.


@dataclass
class IngestedKb:
    cwd: Path
    data_dir: Path
    corpus: Path
    first: subprocess.CompletedProcess[str]
    snapshot: dict[str, Any]


def write_corpus(root: Path) -> None:
    write(
        root,
        "faq.jsonl",
        jsonl(
            {
                "id": "faq-returns",
                "title": "Returns",
                "text": "You can return a product within 30 days.",
                "category": "support",
                "lang": "en",
                "audience": "retail",
            },
            {"id": "faq-shipping", "text": "送料は全国一律500円です。"},
        ),
    )
    write(
        root,
        "catalog.json",
        json.dumps(
            [
                {
                    "id": "kh-300",
                    "title": "KH-300",
                    "content": "Over-ear headphones, two years of warranty.",
                    "category": "product",
                }
            ]
        ),
    )
    write(root, "more/wrapped.json", json.dumps({"documents": [{"id": "store-hours", "text": "Open 10:00-20:00."}]}))
    write(root, "product/ka100.md", "# Kumo Air KA-100\n\nWireless earbuds with 8 hours of battery.\n")
    write(root, "support/reset_steps.txt", "Hold the power button for ten seconds to reset.\n")
    write(root, "manual[draft].pptx", b"PK\x03\x04\n\x00\x01")  # [brackets]: not rich markup


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> IngestedKb:
    cwd = tmp_path_factory.mktemp("ingest")
    write_corpus(cwd / "kb")
    data_dir = cwd / "data"
    first = voicerag(cwd, data_dir, "ingest", "kb")
    assert first.returncode == 0, first.stderr
    state = snapshot(data_dir)
    assert state is not None
    return IngestedKb(cwd, data_dir, cwd / "kb", first, state)


def test_ingesting_a_folder_reads_every_format_recursively(kb: IngestedKb) -> None:
    assert kb.first.stdout.startswith("6 added, 0 updated, 0 unchanged, 0 removed; 6 chunks written, 0 deleted; ")
    assert "6 chunks in 'voicerag'" in kb.first.stdout
    docs = kb.snapshot["docs"]
    fields = {
        doc_id: (meta["title"], meta["category"], meta["lang"], meta["chunk_count"]) for doc_id, meta in docs.items()
    }
    assert fields == {
        "faq-returns": ("Returns", "support", "en", 1),
        "faq-shipping": ("", "general", "ja", 1),
        "kh-300": ("KH-300", "product", "en", 1),
        "store-hours": ("", "general", "en", 1),
        "product/ka100": ("Kumo Air KA-100", "product", "en", 1),
        "support/reset_steps": ("reset steps", "support", "en", 1),
    }
    assert docs["faq-returns"]["audience"] == "retail"
    assert docs["kh-300"]["source"] == (kb.corpus / "catalog.json").resolve().as_posix()
    assert kb.snapshot["count"] == 6


def test_unsupported_file_inside_a_folder_is_skipped_with_a_note(kb: IngestedKb) -> None:
    assert kb.first.returncode == 0
    assert "skipped 1 file(s) of unsupported type, e.g. kb/manual[draft].pptx" in kb.first.stderr
    assert "Traceback" not in kb.first.stderr


def test_successful_ingest_prints_nothing_on_stderr_but_the_skip_note(kb: IngestedKb) -> None:
    assert kb.first.stderr.splitlines() == ["skipped 1 file(s) of unsupported type, e.g. kb/manual[draft].pptx"]


def test_reingesting_unchanged_files_writes_nothing(kb: IngestedKb) -> None:
    again = voicerag(kb.cwd, kb.data_dir, "ingest", "kb")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("0 added, 0 updated, 6 unchanged, 0 removed; 0 chunks written, 0 deleted; ")
    assert snapshot(kb.data_dir) == kb.snapshot


# --------------------------------------------------------------------------------------------
# Refusals: exit 2, one line naming the file and line or field, nothing written


def _case_files(case: Path, name: str) -> tuple[list[str], str]:
    """Write the bad input of case `name` under `case`; return the CLI arguments (a good,
    new document first) and the start of the expected error message."""
    write(case, "fresh.jsonl", jsonl({"id": "fresh-doc", "text": "A brand new document."}))
    args = ["ingest", f"{case.name}/fresh.jsonl"]
    rel = case.name
    if name == "broken-jsonl-line":
        write(case, "bad.jsonl", jsonl({"id": "b1", "text": "fine"}) + '{"id": "b2", "text": \n')
        return [*args, f"{rel}/bad.jsonl"], f"{rel}/bad.jsonl:2: invalid JSON"
    if name == "broken-json":
        write(case, "bad.json", '[\n  {"id": "b1", "text": "fine"},\n  {"id": "b2" "text": "x"}\n]\n')
        return [*args, f"{rel}/bad.json"], f"{rel}/bad.json:3: invalid JSON"
    if name == "json-neither-list-nor-documents":
        write(case, "bad.json", json.dumps({"items": [{"id": "b1", "text": "t"}]}))
        return [*args, f"{rel}/bad.json"], f"{rel}/bad.json: expected a list of documents or"
    if name == "missing-text":
        write(case, "bad.jsonl", jsonl({"id": "b1", "title": "no body"}))
        return [*args, f"{rel}/bad.jsonl"], f"{rel}/bad.jsonl:1: field 'text' (or 'content') is missing"
    if name == "bad-category":
        write(case, "bad.jsonl", jsonl({"id": "b1", "text": "t", "category": "sales"}))
        return [*args, f"{rel}/bad.jsonl"], f"{rel}/bad.jsonl:1: field 'category'"
    if name == "binary-txt":
        write(case, "photo.txt", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
        return [*args, f"{rel}/photo.txt"], f"{rel}/photo.txt: binary file"
    if name == "latin1-md-in-folder":
        write(case, "docs/ok.md", "# OK\nFine.\n")
        write(case, "docs/menu.md", "# Menu\nCaf\u00e9\n".encode("latin-1"))
        return [*args, f"{rel}/docs"], f"{rel}/docs/menu.md:2: not valid UTF-8"
    if name == "duplicate-ids-across-files":
        write(case, "dup.md", "---\nid: fresh-doc\n---\nSame id as the .jsonl line.\n")
        return [*args, f"{rel}/dup.md"], f"{rel}/dup.md: duplicate id 'fresh-doc' (first seen at {rel}/fresh.jsonl:1)"
    if name == "reserved-metadata-key":
        write(case, "bad.jsonl", jsonl({"id": "b1", "text": "t", "doc_id": "other"}))
        return [*args, f"{rel}/bad.jsonl"], f"{rel}/bad.jsonl:1: field 'metadata' uses reserved key(s) doc_id"
    if name == "nonexistent-path":
        return [*args, f"{rel}/nope.jsonl"], f"{rel}/nope.jsonl: no such file or folder"
    if name == "unsupported-extension":
        write(case, "manual.pptx", b"PK\x03\x04")
        return [*args, f"{rel}/manual.pptx"], f"{rel}/manual.pptx: unsupported file type '.pptx'"
    if name == "empty-folder":
        (case / "empty").mkdir()
        kinds = ".jsonl, .json, .md, .txt, .pdf, .html, .docx, .csv or .xlsx"
        return [*args, f"{rel}/empty"], f"{rel}/empty: no {kinds} files in this folder"
    if name == "link-leaving-the-folder":
        secret = write(case, "system/passwd.txt", "root:x:0:0:secret\n")
        (case / "kb").mkdir()
        (case / "kb" / "passwd.txt").symlink_to(secret)
        return [*args, f"{rel}/kb"], f"{rel}/kb/passwd.txt: a link to {secret}, outside {rel}/kb: refused"
    if name == "deeply-nested-json":
        write(case, "bad.jsonl", jsonl({"id": "b1", "text": "fine"}) + '{"id": "b2", "text": ' + "[" * 100_000 + "\n")
        return [*args, f"{rel}/bad.jsonl"], f"{rel}/bad.jsonl:2: invalid JSON (nested more than"
    if name == "nan-metadata":
        write(case, "bad.jsonl", '{"id": "b1", "text": "t", "metadata": {"score": NaN}}\n')
        return [*args, f"{rel}/bad.jsonl"], f"{rel}/bad.jsonl:1: field 'metadata.score' is NaN"
    if name == "huge-metadata-value":
        write(case, "bad.jsonl", jsonl({"id": "b1", "text": "t", "notes": "x" * 5_000_000}))
        return [*args, f"{rel}/bad.jsonl"], f"{rel}/bad.jsonl:1: field 'metadata' value of key 'notes' is 5,000,000"
    if name == "nul-escape-in-text":
        write(case, "bad.jsonl", '{"id": "b1", "text": "a\\u0000b"}\n')
        return [*args, f"{rel}/bad.jsonl"], f"{rel}/bad.jsonl:1: field 'text' holds a NUL character"
    if name == "markup-in-id":
        write(case, "bad.jsonl", jsonl({"id": "[blink]b1[/]", "text": "t"}))
        return [*args, f"{rel}/bad.jsonl"], f"{rel}/bad.jsonl:1: field 'id' '[blink]b1[/]' has U+005B"
    if name == "bidi-override-in-id":
        write(case, "bad.jsonl", jsonl({"id": "b1\u202etxt.exe", "text": "t"}))
        return [*args, f"{rel}/bad.jsonl"], f"{rel}/bad.jsonl:1: field 'id' 'b1\\u202etxt.exe' has U+202E"
    if name == "dry-run-still-validates":
        write(case, "bad.jsonl", jsonl({"id": "b1", "text": ""}))
        return [*args, f"{rel}/bad.jsonl", "--dry-run"], f"{rel}/bad.jsonl:1: field 'text'"
    raise AssertionError(name)


REFUSED = [
    "broken-jsonl-line",
    "broken-json",
    "json-neither-list-nor-documents",
    "missing-text",
    "bad-category",
    "binary-txt",
    "latin1-md-in-folder",
    "duplicate-ids-across-files",
    "reserved-metadata-key",
    "nonexistent-path",
    "unsupported-extension",
    "empty-folder",
    "dry-run-still-validates",
    # issue 13, item 5
    "link-leaving-the-folder",
    "deeply-nested-json",
    "nan-metadata",
    "huge-metadata-value",
    "nul-escape-in-text",
    "markup-in-id",
    "bidi-override-in-id",
]


@pytest.mark.parametrize("case_name", REFUSED)
def test_bad_input_refuses_the_whole_batch_with_exit_2_and_one_line(kb: IngestedKb, case_name: str) -> None:
    args, expected = _case_files(kb.cwd / case_name, case_name)
    before = tree_digest(kb.data_dir)
    done = voicerag(kb.cwd, kb.data_dir, *args)
    assert done.returncode == 2, done.stderr
    assert one_error_line(done).startswith(expected)
    assert done.stdout == ""
    assert tree_digest(kb.data_dir) == before, "a refused ingest wrote to the data folder"


def test_refused_batch_leaves_documents_and_chunk_count_as_they_were(kb: IngestedKb) -> None:
    case = kb.cwd / "refused-update"
    # Would add one document and update another...
    write(
        case, "changes.jsonl", jsonl({"id": "refused-new", "text": "New."}, {"id": "faq-returns", "text": "Changed."})
    )
    # ...but a later file is bad.
    write(case, "z-bad.jsonl", jsonl({"id": "z1", "text": "fine"}, {"id": "z2", "text": 42}))
    before = snapshot(kb.data_dir)
    done = voicerag(kb.cwd, kb.data_dir, "ingest", "refused-update")
    assert done.returncode == 2
    assert one_error_line(done) == "refused-update/z-bad.jsonl:2: field 'text' must be a string"
    after = snapshot(kb.data_dir)
    assert after == before
    assert after is not None and "refused-new" not in after["docs"]


# --------------------------------------------------------------------------------------------
# Options and updates, each on a data folder of its own


def test_dry_run_validates_everything_and_writes_nothing(kb: IngestedKb, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = voicerag(tmp_path, data_dir, "ingest", "--dry-run", str(kb.corpus))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6 documents in 5 file(s) are valid; nothing written (--dry-run)"
    assert "skipped 1 file(s)" in done.stderr
    assert not (data_dir / "chroma").exists()


def test_editing_a_jsonl_reports_updated_unchanged_and_removed_documents(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    long_text = " ".join(f"Paragraph sentence {i} about the warranty of the KH-300." for i in range(60))
    records = [
        {"id": "a", "text": "Alpha stays the same."},
        {"id": "b", "text": "Bravo will be deleted."},
        {"id": "c", "text": long_text},
    ]
    file = write(tmp_path, "docs.jsonl", jsonl(*records))
    first = voicerag(tmp_path, data_dir, "ingest", "docs.jsonl")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("3 added, 0 updated, 0 unchanged, 0 removed; ")
    before = snapshot(data_dir)
    assert before is not None and before["docs"]["c"]["chunk_count"] >= 3

    file.write_text(jsonl(records[0], {"id": "c", "text": "Charlie is short now."}), encoding="utf-8")
    second = voicerag(tmp_path, data_dir, "ingest", "docs.jsonl")
    assert second.returncode == 0, second.stderr
    stale = (before["docs"]["c"]["chunk_count"] - 1) + 1  # c's chunks past the first, and b's one
    assert second.stdout.startswith(
        f"0 added, 1 updated, 1 unchanged, 1 removed; 1 chunks written, {stale} deleted; 2 chunks in 'voicerag'"
    )
    after = snapshot(data_dir)
    assert after is not None
    assert after["ids"] == ["a::0", "c::0"]
    assert after["docs"]["a"] == before["docs"]["a"]
    assert after["docs"]["c"]["content_hash"] != before["docs"]["c"]["content_hash"]


def test_collection_option_writes_to_the_named_collection(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write(tmp_path, "docs.jsonl", jsonl({"id": "a", "text": "Alpha."}))
    done = voicerag(tmp_path, data_dir, "ingest", "docs.jsonl", "--collection", "team-docs")
    assert done.returncode == 0, done.stderr
    assert "1 chunks in 'team-docs'" in done.stdout
    assert snapshot(data_dir, "voicerag") is None
    team = snapshot(data_dir, "team-docs")
    assert team is not None and list(team["docs"]) == ["a"]


def test_bad_collection_name_is_a_usage_error(tmp_path: Path) -> None:
    write(tmp_path, "docs.jsonl", jsonl({"id": "a", "text": "Alpha."}))
    done = voicerag(tmp_path, tmp_path / "data", "ingest", "docs.jsonl", "--collection", "no spaces")
    assert done.returncode == 2
    assert one_error_line(done).startswith("COLLECTION: ")
    assert not (tmp_path / "data" / "chroma").exists()


def test_missing_paths_is_a_usage_error_with_exit_2(tmp_path: Path) -> None:
    done = voicerag(tmp_path, tmp_path / "data", "ingest")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------------------------
# A 10 MB document


def ten_megabyte_text() -> str:
    rng = random.Random(7)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(3000)]
    paragraphs: list[str] = []
    size = 0
    while size < 10 * 2**20:
        sentences = (" ".join(rng.choices(words, k=rng.randint(6, 18))).capitalize() + "." for _ in range(6))
        paragraphs.append(" ".join(sentences))
        size += len(paragraphs[-1]) + 2
    return "# Big manual\n\n" + "\n\n".join(paragraphs) + "\n\nThe very last sentence.\n"


@pytest.mark.integration
@pytest.mark.timeout(280)
def test_ten_megabyte_document_is_ingested_in_chunks_over_several_chroma_batches(tmp_path: Path) -> None:
    text = ten_megabyte_text()
    write(tmp_path, "big.md", text)
    assert (tmp_path / "big.md").stat().st_size >= 10 * 2**20
    data_dir = tmp_path / "data"
    # CHUNK_SIZE=4000: ~2,700 chunks, three write batches, while the test's own embedding cost stays small.
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITH_HASH_MODEL, "ingest", "big.md"],
        cwd=tmp_path,
        env=cli_env(data_dir, CHUNK_SIZE="4000"),
        capture_output=True,
        text=True,
        timeout=270,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    got = read_collection(data_dir, documents=True)
    assert got is not None
    count = got["count"]
    assert count > 2 * 1000  # more chunks than two Chroma write batches
    assert done.stdout.startswith(f"1 added, 0 updated, 0 unchanged, 0 removed; {count} chunks written, 0 deleted")
    chunks = dict(zip(got["ids"], got["documents"], strict=True))
    assert sorted(chunks) == sorted(f"big::{i}" for i in range(count))
    head = next(m for m in got["metadatas"] if m["chunk_index"] == 0)
    assert (head["doc_id"], head["title"], head["chunk_count"]) == ("big", "Big manual", count)
    assert all(len(chunk) <= 4000 for chunk in chunks.values())
    assert chunks["big::0"].startswith("# Big manual")
    assert chunks[f"big::{count - 1}"].endswith("The very last sentence.")
