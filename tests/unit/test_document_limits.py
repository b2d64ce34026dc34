"""What ingest no longer trusts (issue 13, item 5): links and files that change under it, and JSON
values that decoding lets through. Each refusal is one line naming the file and the line or field,
and never echoes a huge or hostile value.

Real files in tmp dirs: symlinks, hard links, FIFOs; the race between finding a file and reading it
is made deterministic by swapping the file just before `load_documents` reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import jsonl, write

from retrievers import documents
from retrievers.document_values import (
    MAX_JSON_DEPTH,
    MAX_METADATA_BYTES,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_BYTES,
    MAX_TITLE_CHARS,
)
from retrievers.documents import Document, load_documents
from retrievers.errors import UserInputError

SECRET = "root:x:0:0:the secret of the system\n"


def refusal(*paths: Path) -> str:
    with pytest.raises(UserInputError) as caught:
        load_documents(paths)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, "a refusal is one line"
    assert len(message) < 400, "a refusal never echoes a huge value"
    return message


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the ingested folder, standing for /etc/passwd."""
    return write(tmp_path / "system", "passwd.txt", SECRET)


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    write(root, "a.md", "# A\nThe first document.\n")
    write(root, "sub/b.md", "# B\nThe second document.\n")
    return root


def texts(*paths: Path) -> list[str]:
    return [doc.text for doc in load_documents(paths).documents]


# --------------------------------------------------------------------------------------------
# Links


def test_a_link_to_a_file_outside_the_folder_is_refused_naming_it(kb: Path, outside: Path) -> None:
    link = kb / "sub" / "passwd.txt"
    link.symlink_to(outside)
    assert refusal(kb) == (
        f"{link}: a link to {outside}, outside {kb}: refused; copy the file into the folder, or name it directly"
    )


def test_control_without_the_link_the_folder_loads(kb: Path, outside: Path) -> None:
    assert sorted(texts(kb)) == ["# A\nThe first document.\n", "# B\nThe second document.\n"]


def test_a_relative_link_that_climbs_out_of_the_folder_is_refused(kb: Path, outside: Path) -> None:
    (kb / "notes.md").symlink_to(Path("..") / "system" / "passwd.txt")
    assert refusal(kb).startswith(f"{kb / 'notes.md'}: a link to {outside}, outside {kb}: refused")


def test_a_link_to_a_folder_outside_is_refused(kb: Path, outside: Path) -> None:
    (kb / "etc").symlink_to(outside.parent, target_is_directory=True)
    assert refusal(kb).startswith(f"{kb / 'etc'}: a link to {outside.parent}, outside {kb}: refused")


def test_a_link_inside_the_folder_is_read_under_its_own_name(kb: Path) -> None:
    (kb / "alias.md").symlink_to(Path("sub") / "b.md")
    docs = {doc.id: doc for doc in load_documents([kb]).documents}
    assert sorted(docs) == ["a", "alias", "sub/b"]
    assert docs["alias"].text == docs["sub/b"].text
    assert docs["alias"].source == (kb / "sub" / "b.md").resolve().as_posix()


def test_a_link_to_a_folder_inside_is_not_followed_twice(kb: Path) -> None:
    (kb / "again").symlink_to(kb / "sub", target_is_directory=True)
    assert sorted(doc.id for doc in load_documents([kb]).documents) == ["a", "sub/b"]


def test_a_broken_link_is_refused(kb: Path) -> None:
    (kb / "gone.md").symlink_to(kb / "missing.md")
    assert refusal(kb) == f"{kb / 'gone.md'}: a link to {kb / 'missing.md'}, which is not a file"


def test_a_file_named_on_the_command_line_is_read_even_through_a_link(tmp_path: Path, outside: Path) -> None:
    link = tmp_path / "chosen.txt"
    link.symlink_to(outside)
    assert texts(link) == [SECRET]  # the operator named it: their choice, not a folder's surprise


def test_a_hard_linked_file_inside_a_folder_is_refused(kb: Path, outside: Path) -> None:
    os.link(outside, kb / "passwd.txt")
    assert refusal(kb) == (
        f"{kb / 'passwd.txt'}: has 2 names (hard links), so it may be a file from outside the folder; "
        "copy it into the folder instead"
    )


def test_fifos_and_other_special_files_in_a_folder_are_passed_over(kb: Path) -> None:
    os.mkfifo(kb / "pipe.md")  # opening it to read would wait for a writer forever
    assert sorted(doc.id for doc in load_documents([kb]).documents) == ["a", "sub/b"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_refused_naming_it(kb: Path) -> None:
    (kb / "a.md").chmod(0)
    assert refusal(kb) == f"{kb / 'a.md'}: cannot be read (Permission denied)"


# The race: the file is swapped between the walk that found it and the read.


def swap_before_reading(monkeypatch: pytest.MonkeyPatch, swap: Callable[[], None]) -> None:
    read = documents.read_found

    def swapped(*args: object, **kwargs: object) -> bytes:
        swap()
        monkeypatch.setattr(documents, "read_found", read)
        return read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(documents, "read_found", swapped)


def test_a_file_replaced_by_a_link_after_it_was_found_is_refused(
    kb: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def swap() -> None:
        (kb / "a.md").unlink()
        (kb / "a.md").symlink_to(outside)

    swap_before_reading(monkeypatch, swap)
    assert refusal(kb) == f"{kb / 'a.md'}: changed while being read (replaced by a link, moved or removed); run again"


def test_a_folder_replaced_by_a_link_after_its_files_were_found_is_refused(
    kb: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(outside.parent, "b.md", SECRET)

    def swap() -> None:
        (kb / "sub").rename(kb.parent / "moved-away")
        (kb / "sub").symlink_to(outside.parent, target_is_directory=True)

    swap_before_reading(monkeypatch, swap)
    assert refusal(kb).startswith(f"{kb / 'sub' / 'b.md'}: changed while being read")


def test_a_file_replaced_by_a_fifo_after_it_was_found_is_refused_without_waiting(
    kb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def swap() -> None:
        (kb / "a.md").unlink()
        os.mkfifo(kb / "a.md")

    swap_before_reading(monkeypatch, swap)
    assert refusal(kb) == f"{kb / 'a.md'}: not a regular file"


def test_control_a_swap_to_another_regular_file_inside_is_simply_read(
    kb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    swap_before_reading(monkeypatch, lambda: (kb / "a.md").write_text("# A\nRewritten.\n"))
    assert "# A\nRewritten.\n" in texts(kb)


def test_a_file_that_grew_past_the_limit_before_it_was_opened_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents, "MAX_FILE_BYTES", 1024)
    file = write(tmp_path, "grows.txt", "small\n")
    swap_before_reading(monkeypatch, lambda: file.write_text("x" * 4096))
    assert refusal(file) == f"{file}: 4,096 bytes, over the 1 KiB limit"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_the_size_limit_holds_for_what_is_read_not_what_the_size_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents, "MAX_FILE_BYTES", 64)
    link = tmp_path / "status.txt"
    link.symlink_to("/proc/self/status")  # a regular file whose size says 0 bytes
    assert Path("/proc/self/status").stat().st_size == 0
    assert refusal(link) == f"{link}: over the 64 B limit"


def test_a_file_name_with_a_newline_or_bidi_override_is_escaped_in_the_message(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    write(folder, "evil\n\u202egnp.md", "# x\ntext\n")
    message = refusal(folder)
    assert message.startswith(f"{folder}/evil\\u000a\\u202egnp.md: field 'id' ")


# --------------------------------------------------------------------------------------------
# JSON values


def test_deeply_nested_json_line_is_refused_naming_the_line(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "ok"}) + "[" * 100_000 + "\n")
    assert refusal(file) == f"{file}:2: invalid JSON (nested more than {MAX_JSON_DEPTH} levels deep)"


def test_deeply_nested_json_file_is_refused_naming_the_line(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.json", '[\n{"id": "a", "text": "ok", "deep": ' + "[" * 100_000 + "\n")
    assert refusal(file) == f"{file}:2: invalid JSON (nested more than {MAX_JSON_DEPTH} levels deep)"


def test_metadata_nested_past_the_limit_is_refused_naming_the_field(tmp_path: Path) -> None:
    deep: object = "bottom"
    for _ in range(MAX_JSON_DEPTH):
        deep = [deep]
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "metadata": {"deep": deep}}))
    message = refusal(file)
    assert message.startswith(f"{file}:1: field 'metadata.deep[0][0]")
    assert message.endswith(f"' is nested more than {MAX_JSON_DEPTH} levels deep")


def test_control_metadata_nested_up_to_the_limit_is_kept_as_json_text(tmp_path: Path) -> None:
    deep: object = "bottom"
    for _ in range(MAX_JSON_DEPTH - 2):  # the record and `metadata` are two levels
        deep = [deep]
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "metadata": {"deep": deep}}))
    assert load_documents([file]).documents[0].metadata == {"deep": json.dumps(deep)}


@pytest.mark.parametrize(
    ("literal", "said"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e400", "Infinity")],
)
@pytest.mark.parametrize(
    ("record", "field"),
    [
        ('{"id": "a", "text": "t", "score": VALUE}', "score"),
        ('{"id": "a", "text": "t", "metadata": {"score": VALUE}}', "metadata.score"),
        ('{"id": "a", "text": "t", "metadata": {"scores": [1, VALUE]}}', "metadata.scores[1]"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(
    tmp_path: Path, literal: str, said: str, record: str, field: str
) -> None:
    file = write(tmp_path, "kb.jsonl", record.replace("VALUE", literal) + "\n")
    assert refusal(file) == f"{file}:1: field '{field}' is {said}: only finite numbers are allowed"


def test_control_finite_floats_and_64_bit_integers_are_kept(tmp_path: Path) -> None:
    line = '{"id": "a", "text": "t", "score": 1.5e300, "big": 9223372036854775807, "small": -9223372036854775808}'
    file = write(tmp_path, "kb.jsonl", line + "\n")
    assert load_documents([file]).documents[0].metadata == {
        "score": 1.5e300,
        "big": 2**63 - 1,
        "small": -(2**63),
    }


@pytest.mark.parametrize("digits", ["9223372036854775808", "1" * 5000])
def test_integers_beyond_64_bits_are_refused(tmp_path: Path, digits: str) -> None:
    file = write(tmp_path, "kb.jsonl", '{"id": "a", "text": "t", "count": ' + digits + "}\n")
    message = refusal(file)
    assert message.startswith(f"{file}:1: ")
    assert "64-bit" in message or "too long" in message


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ('{"id": "a", "text": "before\\u0000after"}', "text"),
        ('{"id": "a", "text": "t", "title": "T\\u0000"}', "title"),
        ('{"id": "a\\u0000b", "text": "t"}', "id"),
        ('{"id": "a", "text": "t", "note": "\\u0000"}', "note"),
        ('{"id": "a", "text": "t", "metadata": {"tags": ["x", "y\\u0000"]}}', "metadata.tags[1]"),
    ],
)
def test_nul_escapes_are_refused_naming_the_field(tmp_path: Path, record: str, field: str) -> None:
    file = write(tmp_path, "kb.jsonl", record + "\n")
    assert refusal(file).startswith(f"{file}:1: field '{field}' holds a NUL character (\\u0000) at position ")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "kb.jsonl",
            '{"id": "a", "text": "t", "metadata": {"k\\u0000ey": 1}}',
            ":1: field 'metadata' has a key 'k\\u0000ey' that holds a NUL character (\\u0000) at position 2",
        ),
        (
            "kb.json",
            '[{"id": "a", "text": "ok"}, {"id": "b", "text": "\\u0000"}]',
            ": documents[1]: field 'text' holds a NUL character (\\u0000) at position 1",
        ),
        (
            "kb.jsonl",
            '{"id": "a", "text": "half \\ud83d of an emoji"}',
            ":1: field 'text' holds a lone surrogate (\\ud83d) at position 6, which is not valid Unicode",
        ),
    ],
    ids=["key", "json-file", "lone-surrogate"],
)
def test_unstorable_escapes_are_refused_naming_where(tmp_path: Path, name: str, content: str, expected: str) -> None:
    file = write(tmp_path, name, content + "\n")
    assert refusal(file) == f"{file}{expected}"


def test_control_an_escaped_surrogate_pair_is_an_emoji(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", '{"id": "a", "text": "\\ud83d\\ude00"}\n')
    assert load_documents([file]).documents[0].text == "\U0001f600"


# --------------------------------------------------------------------------------------------
# Size limits: what is copied into every chunk stays small


def test_a_metadata_value_over_the_limit_is_refused_without_echoing_it(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "notes": "x" * 5_000_000}))
    assert refusal(file) == (
        f"{file}:1: field 'metadata' value of key 'notes' is 5,000,000 bytes; "
        f"a value may hold at most {MAX_METADATA_VALUE_BYTES:,} (long content belongs in 'text')"
    )


def test_control_a_metadata_value_at_the_limit_is_kept(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "notes": "x" * MAX_METADATA_VALUE_BYTES}))
    assert len(load_documents([file]).documents[0].metadata["notes"]) == MAX_METADATA_VALUE_BYTES


def test_metadata_sizes_are_counted_in_utf8_bytes(tmp_path: Path) -> None:
    japanese = "返" * (MAX_METADATA_VALUE_BYTES // 3 + 1)  # 3 bytes a character
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "notes": japanese}))
    assert "value of key 'notes' is 4,098 bytes" in refusal(file)


def test_nested_metadata_is_measured_as_the_json_text_that_is_stored(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "tags": ["x" * 1000] * 5}))
    assert "value of key 'tags' is 5,020 bytes" in refusal(file)


def test_metadata_over_its_total_size_is_refused(tmp_path: Path) -> None:
    many = {f"k{i}": "x" * 4000 for i in range(MAX_METADATA_BYTES // 4000 + 1)}
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "metadata": many}))
    assert refusal(file).startswith(f"{file}:1: field 'metadata' holds ")
    assert f"at most {MAX_METADATA_BYTES:,} bytes in all" in refusal(file)


def test_too_many_metadata_keys_are_refused(tmp_path: Path) -> None:
    many = {f"k{i}": i for i in range(MAX_METADATA_KEYS + 1)}
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "metadata": many}))
    assert refusal(file) == (
        f"{file}:1: field 'metadata' has {MAX_METADATA_KEYS + 1} keys; at most {MAX_METADATA_KEYS} are allowed"
    )


def test_a_long_metadata_key_is_refused_and_shown_shortened(tmp_path: Path) -> None:
    key = "k" * (MAX_METADATA_KEY_CHARS + 1)
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", key: 1}))
    message = refusal(file)
    assert message.startswith(f"{file}:1: field 'metadata' key '{'k' * 40}…' is {MAX_METADATA_KEY_CHARS + 1} ")
    assert message.endswith(f"at most {MAX_METADATA_KEY_CHARS} are allowed")


def test_front_matter_metadata_has_the_same_limits(tmp_path: Path) -> None:
    file = write(tmp_path, "doc.md", f"---\nnotes: {'x' * 5000}\n---\nBody.\n")
    assert refusal(file).startswith(f"{file}: field 'metadata' value of key 'notes' is 5,000 bytes")


def test_a_title_over_the_limit_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "a", "text": "t", "title": "T" * 5_000_000}))
    assert refusal(file) == f"{file}:1: field 'title' string should have at most {MAX_TITLE_CHARS} characters"


# --------------------------------------------------------------------------------------------
# Ids: letters, digits, punctuation, symbols and spaces; nothing invisible, no Rich markup


ID_RULE = "an id may hold letters, digits, punctuation, symbols and spaces, but no [ ], control or invisible characters"


@pytest.mark.parametrize(
    ("doc_id", "expected"),
    [
        ("line\nbreak", "'line\\u000abreak' has U+000A at position 5"),
        ("tab\there", "'tab\\u0009here' has U+0009 at position 4"),
        ("abc\u202edcba", "'abc\\u202edcba' has U+202E (RIGHT-TO-LEFT OVERRIDE) at position 4"),
        ("x\u2066y\u2069", "'x\\u2066y\\u2069' has U+2066 (LEFT-TO-RIGHT ISOLATE) at position 2"),
        ("zero\u200bwidth", "'zero\\u200bwidth' has U+200B (ZERO WIDTH SPACE) at position 5"),
        ("no\u00a0break", "'no\\u00a0break' has U+00A0 (NO-BREAK SPACE) at position 3"),
        ("[bold red]alarm[/]", "'[bold red]alarm[/]' has U+005B (LEFT SQUARE BRACKET) at position 1"),
        ("para\u2029end", "'para\\u2029end' has U+2029 (PARAGRAPH SEPARATOR) at position 5"),
        ("private\ue000", "'private\\ue000' has U+E000 at position 8"),
    ],
)
def test_ids_with_invisible_control_or_markup_characters_are_refused(
    tmp_path: Path, doc_id: str, expected: str
) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": doc_id, "text": "t"}))
    assert refusal(file) == f"{file}:1: field 'id' {expected}; {ID_RULE}"


def test_the_refusal_never_prints_the_bidi_override_itself(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "abc\u202edcba", "text": "t"}))
    assert "\u202e" not in refusal(file)


@pytest.mark.parametrize("doc_id", [" lead", "trail "])
def test_ids_may_not_start_or_end_with_a_space(tmp_path: Path, doc_id: str) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": doc_id, "text": "t"}))
    assert refusal(file) == f"{file}:1: field 'id' '{doc_id}' starts or ends with a space"


def test_a_very_long_id_is_refused_without_echoing_it(tmp_path: Path) -> None:
    file = write(tmp_path, "kb.jsonl", jsonl({"id": "i" * 5_000_000, "text": "t"}))
    assert refusal(file) == f"{file}:1: field 'id' string should have at most 512 characters"


def test_control_ordinary_ids_in_any_script_are_accepted(tmp_path: Path) -> None:
    ids = ["faq/返品-1", "KH-300 (2024 model)", "a:b@c#d+e=f~g", "ñandú_ü", "été.v2", "売上🙂", "١٢٣"]
    file = write(tmp_path, "kb.jsonl", jsonl(*({"id": doc_id, "text": "t"} for doc_id in ids)))
    assert [doc.id for doc in load_documents([file]).documents] == ids


def test_an_id_taken_from_a_file_name_says_how_to_fix_it(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    file = write(folder, "notes[draft].md", "# Notes\nDraft.\n")
    message = refusal(folder)
    assert message.startswith(f"{file}: field 'id' 'notes[draft]' has U+005B (LEFT SQUARE BRACKET) at position 6")
    assert message.endswith("(the id comes from the file name: rename the file or set `id:` in its front matter)")


def test_the_model_refuses_bad_ids_made_in_code_too() -> None:
    with pytest.raises(ValueError, match="RIGHT-TO-LEFT OVERRIDE"):
        Document(id="a\u202eb", text="t", lang="en")
