"""Document loading, validation and chunking: `load_documents`, `chunk_document`, `Document`.

Fast: no embedding model, no Chroma. Every refusal must name the file and the line or field.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from helpers import by_id, jsonl, refusal, write
from pydantic import ValidationError

from retrievers import documents
from retrievers.documents import Document, chunk_document, load_documents

# --------------------------------------------------------------------------------------------
# Formats


def test_jsonl_record_keeps_every_field_and_free_keys_become_metadata(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "kb.jsonl",
        jsonl(
            {
                "id": "kh-300",
                "title": "KH-300",
                "text": "Over-ear headphones with a two-year warranty.",
                "category": "product",
                "lang": "en",
                "sku": "KH-300-BK",
                "price": 19800,
                "metadata": {"brand": "Kumo", "in_stock": True},
            }
        ),
    )
    doc = load_documents([file]).documents[0]
    assert doc.id == "kh-300"
    assert doc.title == "KH-300"
    assert doc.text == "Over-ear headphones with a two-year warranty."
    assert doc.category == "product"
    assert doc.lang == "en"
    assert doc.metadata == {"sku": "KH-300-BK", "price": 19800, "brand": "Kumo", "in_stock": True}
    assert doc.source == file.resolve().as_posix()


def test_jsonl_skips_blank_lines_and_accepts_content_as_text_and_integer_ids(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", '\n{"id": 7, "content": "from content"}\n   \n{"id": "b", "text": "two"}\n\n')
    docs = by_id(file)
    assert sorted(docs) == ["7", "b"]
    assert docs["7"].text == "from content"


def test_jsonl_record_without_id_gets_one_from_path_and_line_number(tmp_path: Path) -> None:
    write(tmp_path / "kb", "faq/items.jsonl", jsonl({"text": "first"}) + "\n" + jsonl({"text": "third line"}))
    assert sorted(by_id(tmp_path / "kb")) == ["faq/items-1", "faq/items-3"]
    assert sorted(by_id(tmp_path / "kb" / "faq" / "items.jsonl")) == ["items-1", "items-3"]


def test_jsonl_text_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    # json.dumps(ensure_ascii=False) writes U+2028, U+2029 and U+0085 unescaped inside strings.
    text = "line one\u2028line two\u2029next paragraph\x85end"
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": text}, {"id": "b", "text": "second"}))
    docs = by_id(file)
    assert docs["a"].text == text
    assert sorted(docs) == ["a", "b"]


def test_jsonl_with_crlf_line_endings_loads(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", '{"id": "a", "text": "one"}\r\n{"id": "b", "text": "two"}\r\n')
    assert {doc.id: doc.text for doc in load_documents([file]).documents} == {"a": "one", "b": "two"}


def test_utf8_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", b'\xef\xbb\xbf{"id": "a", "text": "with a BOM"}\n')
    assert by_id(file)["a"].text == "with a BOM"


def test_json_file_may_be_a_list_or_an_object_with_documents(tmp_path: Path) -> None:
    listed = write(tmp_path, "listed.json", json.dumps([{"id": "l1", "text": "one"}, {"text": "two"}]))
    wrapped = write(tmp_path, "wrapped.json", json.dumps({"documents": [{"id": "w1", "text": "three"}]}))
    assert sorted(by_id(listed, wrapped)) == ["l1", "listed-1", "w1"]


def test_category_defaults_to_general_and_lang_is_detected(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "kb.jsonl",
        jsonl({"id": "en", "text": "Returns within 30 days."}, {"id": "ja", "text": "返品は30日以内です。"}),
    )
    docs = by_id(file)
    assert {d.category for d in docs.values()} == {"general"}
    assert (docs["en"].lang, docs["ja"].lang) == ("en", "ja")


def test_nested_metadata_is_kept_as_json_text_and_nulls_are_dropped(tmp_path: Path) -> None:
    file = write(
        tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "tags": ["x", "y"], "extra": {"b": 1}, "gone": None})
    )
    assert by_id(file)["a"].metadata == {"tags": '["x", "y"]', "extra": '{"b": 1}'}


def test_markdown_title_comes_from_first_heading_and_id_from_path(tmp_path: Path) -> None:
    write(tmp_path / "kb", "guides/setup.md", "Intro line.\n\n## Setting up the KH-300 ##\n\nPair it.\n\n# Later\n")
    doc = load_documents([tmp_path / "kb"]).documents[0]
    assert doc.id == "guides/setup"
    assert doc.title == "Setting up the KH-300"
    assert doc.text.startswith("Intro line.")
    assert doc.category == "general"


def test_text_file_without_heading_is_titled_after_its_file_name(tmp_path: Path) -> None:
    file = write(tmp_path, "return_policy-2024.txt", "Returns are accepted within 30 days.\n")
    doc = load_documents([file]).documents[0]
    assert (doc.id, doc.title) == ("return_policy-2024", "return policy 2024")


def test_front_matter_sets_id_title_category_lang_and_metadata_and_is_not_in_the_text(tmp_path: Path) -> None:
    file = write(
        tmp_path / "general",
        "kh300.md",
        '---\nid: kh-300-manual\ntitle: "KH-300 manual"\ncategory: product\nlang: ja\nversion: 2\n'
        "# a comment: ignored\n---\n# Heading not used\n本文です。\n",
    )
    doc = load_documents([file]).documents[0]
    assert doc.id == "kh-300-manual"
    assert doc.title == "KH-300 manual"
    assert doc.category == "product"  # front matter wins over the parent folder
    assert doc.lang == "ja"
    assert doc.metadata == {"version": "2"}
    assert "---" not in doc.text
    assert doc.text.startswith("# Heading not used")


def test_parent_folder_named_after_a_category_sets_it_for_markdown_and_text_only(tmp_path: Path) -> None:
    write(tmp_path / "kb", "support/reset.md", "# Reset\nHold the button.\n")
    write(tmp_path / "kb", "product/deep/specs.txt", "Specs.\n")  # the parent is "deep": no category
    write(tmp_path / "kb", "product/ka100.txt", "KA-100 earbuds.\n")
    write(tmp_path / "kb", "support/faq.jsonl", jsonl({"id": "faq-1", "text": "A question."}))
    docs = by_id(tmp_path / "kb")
    assert docs["support/reset"].category == "support"
    assert docs["product/ka100"].category == "product"
    assert docs["product/deep/specs"].category == "general"
    assert docs["faq-1"].category == "general"


def test_folder_is_read_recursively_skipping_hidden_and_unsupported_files(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    write(root, "a.md", "# A\ntext a\n")
    write(root, "x/y/b.markdown", "# B\ntext b\n")
    write(root, "x/c.json", json.dumps([{"id": "c", "text": "text c"}]))
    write(root, ".git/d.md", "# hidden\n")
    write(root, "x/.e.md", "# hidden too\n")
    manual = write(root, "x/manual.pptx", b"PK\x03\x04")
    report = load_documents([root])
    assert sorted(doc.id for doc in report.documents) == ["a", "c", "x/y/b"]
    assert report.skipped == [manual]
    assert len(report.files) == 3


# --------------------------------------------------------------------------------------------
# Refusals: each names the file and the line or field


def test_broken_json_line_in_jsonl_names_file_and_line(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "ok"}) + "\n" + '{"id": "b", "text": "no end"\n')
    message = refusal(file)
    assert message.startswith(f"{file}:3: invalid JSON")


def test_jsonl_line_that_is_not_an_object_names_file_and_line(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "ok"}, ["not", "an", "object"]))
    assert refusal(file) == f"{file}:2: expected a JSON object, got list"


@pytest.mark.parametrize("name", ["kb.json", "notes:2024.json"])
def test_broken_json_file_names_file_and_line(tmp_path: Path, name: str) -> None:
    file = write(tmp_path, name, '[\n  {"id": "a", "text": "ok"},\n  {"id": "b" "text": "x"}\n]\n')
    assert refusal(file).startswith(f"{file}:3: invalid JSON")


@pytest.mark.parametrize("content", ['{"docs": []}', '{"documents": {"id": "a"}}', '"just text"', "42"])
def test_json_that_is_neither_a_list_nor_documents_object_is_refused(tmp_path: Path, content: str) -> None:
    file = write(tmp_path, "kb.json", content)
    assert refusal(file) == f'{file}: expected a list of documents or {{"documents": [...]}}'


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"id": "x", "title": "no text"}, "field 'text' (or 'content') is missing"),
        ({"id": "x", "text": ""}, "field 'text'"),
        ({"id": "x", "text": "  \n "}, "field 'text' is empty"),
        ({"id": "x", "text": 12}, "field 'text' must be a string"),
        ({"id": "x", "text": ["a", "b"]}, "field 'text' must be a string"),
        ({"id": "x", "text": "t", "category": "sales"}, "field 'category'"),
        ({"id": "x", "text": "t", "lang": "fr"}, "field 'lang'"),
        ({"id": "x", "text": "t", "title": 5}, "field 'title'"),
        ({"id": "", "text": "t"}, "field 'id'"),
        ({"id": ["x"], "text": "t"}, "field 'id' must be a string or an integer"),
        ({"id": True, "text": "t"}, "field 'id' must be a string or an integer"),
        ({"id": "x", "text": "t", "metadata": ["a"]}, "field 'metadata' must be an object"),
        ({"id": "x", "text": "t", "doc_id": "other"}, "field 'metadata' uses reserved key(s) doc_id"),
        ({"id": "x", "text": "t", "metadata": {"chunk_index": 3}}, "field 'metadata' uses reserved key(s) chunk_index"),
        ({"id": "x", "text": "t", "$where": 1}, "field 'metadata' key(s) '$where' not allowed"),
        ({"id": "x", "text": "t", "#tag": 1}, "field 'metadata' key(s) '#tag' not allowed"),
        ({"id": "x", "text": "t", "": 1}, "field 'metadata' key(s) '' not allowed"),
        ({"id": "x", "text": "t", "chroma:document": "d"}, "field 'metadata' key(s) 'chroma:document' not allowed"),
    ],
)
def test_bad_record_is_refused_naming_file_line_and_field(tmp_path: Path, record: dict, expected: str) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "ok", "text": "fine"}, record))
    message = refusal(file)
    assert message.startswith(f"{file}:2: {expected}"), message


def test_bad_record_in_json_file_names_its_index(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.json", json.dumps({"documents": [{"id": "a", "text": "ok"}, {"id": "b"}]}))
    assert refusal(file) == f"{file}: documents[1]: field 'text' (or 'content') is missing"


def test_bad_category_message_lists_the_allowed_values(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "category": "Sales"}))
    message = refusal(file)
    assert all(category in message for category in ("product", "support", "general"))


def test_markdown_with_only_front_matter_is_refused_for_empty_text(tmp_path: Path) -> None:
    file = write(tmp_path, "empty.md", "---\nid: e\n---\n\n")
    assert refusal(file).startswith(f"{file}: field 'text'")


def test_markdown_with_bad_front_matter_category_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path, "doc.md", "---\ncategory: faq\n---\nBody.\n")
    assert refusal(file).startswith(f"{file}: field 'category'")


@pytest.mark.parametrize("name", ["image.txt", "image.md", "data.jsonl"])
def test_binary_file_is_refused_naming_the_file(tmp_path: Path, name: str) -> None:
    file = write(tmp_path, name, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert refusal(file) == f"{file}: binary file (contains NUL bytes), expected UTF-8 text"


def test_latin1_file_is_refused_naming_the_line(tmp_path: Path) -> None:
    file = write(tmp_path, "menu.md", "# Menu\nCoffee\nCaf\u00e9 au lait\n".encode("latin-1"))
    assert refusal(file).startswith(f"{file}:3: not valid UTF-8")


def test_latin1_after_a_byte_order_mark_names_the_right_line(tmp_path: Path) -> None:
    file = write(tmp_path, "menu.txt", b"\xef\xbb\xbfab\n\xe9t\xe9\n")
    assert refusal(file) == f"{file}:2: not valid UTF-8 (byte 6)"


def test_latin1_line_in_jsonl_names_the_line(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    assert refusal(file).startswith(f"{file}:2: not valid UTF-8")


def test_duplicate_id_within_a_file_names_both_lines(tmp_path: Path) -> None:
    file = write(
        tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "one"}, {"id": "b", "text": "two"}, {"id": "a", "text": "3"})
    )
    assert refusal(file) == f"{file}:3: duplicate id 'a' (first seen at {file}:1)"


def test_duplicate_id_across_files_names_both_places(tmp_path: Path) -> None:
    first = write(tmp_path, "faq.jsonl", jsonl({"id": "returns", "text": "one"}))
    second = write(tmp_path, "returns.md", "# Returns\nWithin 30 days.\n")  # id from the file name
    assert refusal(first, second) == f"{second}: duplicate id 'returns' (first seen at {first}:1)"


def test_integer_and_string_ids_that_read_the_same_are_duplicates(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": 1, "text": "one"}, {"id": "1", "text": "two"}))
    assert "duplicate id '1'" in refusal(file)


def test_nonexistent_path_is_refused(tmp_path: Path) -> None:
    good = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "ok"}))
    missing = tmp_path / "nope.jsonl"
    assert refusal(good, missing) == f"{missing}: no such file or folder"


@pytest.mark.parametrize(("name", "suffix"), [("slides.pptx", "'.pptx'"), ("README", "'(none)'")])
def test_unsupported_file_named_directly_is_refused(tmp_path: Path, name: str, suffix: str) -> None:
    file = write(tmp_path, name, "text")
    assert refusal(file).startswith(f"{file}: unsupported file type {suffix}; expected one of .jsonl")


def test_empty_folder_is_refused_naming_it(tmp_path: Path) -> None:
    good = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "ok"}))
    empty = tmp_path / "empty"
    empty.mkdir()
    kinds = ".jsonl, .json, .md, .txt, .pdf, .html, .docx, .csv or .xlsx"
    assert refusal(good, empty) == f"{empty}: no {kinds} files in this folder"


def test_folder_with_only_unsupported_or_hidden_files_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    write(folder, "scan.pptx", b"PK")
    write(folder, ".hidden.md", "# hidden\n")
    assert refusal(folder).startswith(f"{folder}: no .jsonl")


def test_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "MAX_FILE_BYTES", 1024)
    file = write(tmp_path, "big.txt", "x" * 2048)
    assert refusal(file).startswith(f"{file}: ") and "limit" in refusal(file)


def test_first_bad_file_is_named_even_after_good_ones(tmp_path: Path) -> None:
    good = write(tmp_path, "a.jsonl", jsonl({"id": "a", "text": "ok"}))
    bad = write(tmp_path, "b.md", b"\x00\x01")
    assert refusal(good, bad).startswith(f"{bad}: binary file")


# --------------------------------------------------------------------------------------------
# The model and chunking


def test_document_rejects_blank_text_and_empty_id() -> None:
    with pytest.raises(ValidationError):
        Document(id="a", text="   ", lang="en")
    with pytest.raises(ValidationError):
        Document(id="", text="text", lang="en")


def test_document_is_immutable() -> None:
    doc = Document(id="a", text="text", lang="en")
    with pytest.raises(ValidationError):
        doc.text = "other"  # type: ignore[misc]


def test_content_hash_changes_with_stored_content_only() -> None:
    base = Document(id="a", title="T", text="text", lang="en", metadata={"x": 1, "y": "z"})
    assert (
        base.content_hash
        == Document(id="a", title="T", text="text", lang="en", metadata={"y": "z", "x": 1}).content_hash
    )
    changed = [
        base.model_copy(update={"text": "text!"}),
        base.model_copy(update={"title": "T2"}),
        base.model_copy(update={"category": "support"}),
        base.model_copy(update={"lang": "ja"}),
        base.model_copy(update={"metadata": {"x": 2, "y": "z"}}),
    ]
    assert len({base.content_hash, *(doc.content_hash for doc in changed)}) == 1 + len(changed)


def test_short_document_is_one_chunk_with_a_doc_scoped_id() -> None:
    chunks = chunk_document(Document(id="faq/a", text="  Short text.  ", lang="en"), size=1000, overlap=100)
    assert [(c.id, c.doc_id, c.index, c.text) for c in chunks] == [("faq/a::0", "faq/a", 0, "Short text.")]


def test_long_document_is_split_into_bounded_overlapping_chunks_that_cover_it() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(200)]
    chunks = chunk_document(Document(id="d", text=" ".join(sentences), lang="en"), size=200, overlap=50)
    assert len(chunks) > 10
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.id for c in chunks] == [f"d::{i}" for i in range(len(chunks))]
    assert all(len(c.text) <= 200 for c in chunks)
    assert all(any(s in c.text for c in chunks) for s in sentences)
    # Overlap: each chunk starts with a sentence the previous chunk ended with.
    for previous, current in itertools.pairwise(chunks):
        assert current.text.split(".")[0] + "." in previous.text


def test_japanese_text_without_spaces_is_split_at_sentence_ends() -> None:
    text = "".join(f"これは{i}番目の文です。" for i in range(100))
    chunks = chunk_document(Document(id="j", text=text, lang="ja"), size=100, overlap=0)
    assert len(chunks) > 5
    assert all(len(c.text) <= 100 and c.text.endswith("。") for c in chunks)
    assert "".join(c.text for c in chunks) == text
