"""Office formats through `load_documents`: PDF, HTML, DOCX, CSV, XLSX and their `ingest.yaml`.

Files are generated (`fakes/office_files.py`), written to a temporary folder and read by the real
loader. Fast: no embedding model, no Chroma. Every refusal is one line naming the file (and page,
sheet, row or config field).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import office_files as office
from helpers import by_id, refusal, write
from pypdf import PdfReader, PdfWriter

from retrievers.documents import chunk_document, load_documents
from retrievers.formats import common
from retrievers.formats.html import html_documents
from retrievers.knowledge_base.chroma_store import chunk_metadata


@pytest.fixture(scope="module")
def japanese_pdf() -> bytes:
    return office.japanese_pdf()  # embedding the font subset takes a moment: once per module


# --------------------------------------------------------------------------------------------
# PDF


def test_japanese_pdf_with_an_embedded_cid_font_is_one_document_with_its_pages(
    tmp_path: Path, japanese_pdf: bytes
) -> None:
    file = write(tmp_path, "guides/support_ja.pdf", japanese_pdf)
    (doc,) = load_documents([tmp_path / "guides"]).documents
    assert (doc.id, doc.title, doc.lang) == ("support_ja", "製品サポートガイド", "ja")
    assert doc.source == file.resolve().as_posix()
    assert len(doc.page_starts) == 3
    for number, page in enumerate(office.JA_PDF_PAGES, start=1):
        start = doc.page_starts[number - 1]
        for line in page.split("\n"):
            assert doc.text.index(line) >= start, f"page {number}: {line}"


def test_vertical_japanese_text_reads_as_lines_right_column_first(tmp_path: Path) -> None:
    """pdfminer's detect_vertical groups the glyphs into vertical lines (pypdf reads one glyph a line)."""
    (doc,) = load_documents([write(tmp_path, "tategaki.pdf", office.vertical_japanese_pdf())]).documents
    assert doc.text.split("\n\n") == list(office.VERTICAL_COLUMNS)


def test_pdf_chunks_say_which_page_they_come_from(tmp_path: Path, japanese_pdf: bytes) -> None:
    (doc,) = load_documents([write(tmp_path, "ja.pdf", japanese_pdf)]).documents
    chunks = chunk_document(doc, size=30, overlap=0)
    pages = {chunk.text: chunk.pages for chunk in chunks}
    assert pages["クモエアKA-100の保証期間は購入日から二年間です。"] == (1, 1)
    assert pages["返品について"] == (2, 2)
    assert pages["未開封の商品は三十日以内なら返品できます。\n\n修理の受付"] == (2, 3)
    assert next(p for text, p in pages.items() if "0120-555-123" in text) == (3, 3)
    meta = chunk_metadata(doc, next(c for c in chunks if c.pages == (2, 3)), len(chunks))
    assert (meta["page"], meta["pages"]) == (2, "2-3")


def test_a_chunk_across_a_page_break_names_both_pages(tmp_path: Path) -> None:
    (doc,) = load_documents([write(tmp_path, "r7.pdf", office.english_pdf())]).documents
    (chunk,) = chunk_document(doc, size=1000, overlap=0)
    assert chunk.pages == (1, 2)
    assert chunk_metadata(doc, chunk, 1)["pages"] == "1-2"
    assert "twelve seconds" in chunk.text and doc.title == "R7 Quick Guide"


def test_chunks_of_text_files_have_no_pages(tmp_path: Path) -> None:
    (doc,) = load_documents([write(tmp_path, "a.md", "# A\n\nSome text.\n")]).documents
    (chunk,) = chunk_document(doc, size=1000, overlap=0)
    assert chunk.pages is None and "page" not in chunk_metadata(doc, chunk, 1)


def test_pdf_with_only_an_owner_password_is_read(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(office.english_pdf())))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")  # "no copying" PDFs
    out = io.BytesIO()
    writer.write(out)
    (doc,) = load_documents([write(tmp_path, "locked.pdf", out.getvalue())]).documents
    assert "Wi-Fi 7" in doc.text


def test_files_made_again_with_the_same_content_hash_the_same(tmp_path: Path) -> None:
    """New bytes (a PDF's creation date, a ZIP's timestamps), same text: a re-ingest writes nothing."""
    written = office.write_office_corpus(tmp_path)
    first = {doc.id: doc.content_hash for doc in load_documents([tmp_path]).documents}
    time.sleep(1.1)  # the dates inside the files are to the second
    again = office.write_office_corpus(tmp_path)
    assert again["manuals/r7_guide.pdf"] != written["manuals/r7_guide.pdf"]
    assert {doc.id: doc.content_hash for doc in load_documents([tmp_path]).documents} == first


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (office.encrypted_pdf, "bad.pdf: encrypted (needs a password); save an unprotected copy and ingest that"),
        (
            office.scanned_pdf,
            "bad.pdf: no extractable text on any of its 1 page(s) (a scanned image? run OCR on it first)",
        ),
        (lambda: b"%PDF-1.4\n\x00\x01 not really", "bad.pdf: not a readable PDF ("),
        (lambda: office.english_pdf()[:-400], "bad.pdf: not a readable PDF ("),
    ],
    ids=["encrypted", "scanned", "garbage", "truncated"],
)
def test_unusable_pdf_is_refused_naming_it(tmp_path: Path, content: object, expected: str) -> None:
    good = write(tmp_path, "good.md", "# Good\n\nFine.\n")
    bad = write(tmp_path, "bad.pdf", content())  # type: ignore[operator]
    message = refusal(good, bad)
    assert message.startswith(f"{tmp_path}/{expected}"), message


# --------------------------------------------------------------------------------------------
# HTML


def test_html_keeps_the_main_content_and_drops_navigation_scripts_forms_and_footer(tmp_path: Path) -> None:
    (doc,) = load_documents([write(tmp_path, "plans.html", office.html_page())]).documents
    assert (doc.id, doc.title, doc.lang) == ("plans", "Mobile plans | Kumo Mobile", "en")
    assert office.HTML_FACTS[0] in doc.text
    for dropped in ("NAV-MENU", "HEADER-BANNER", "TRACKING-SCRIPT", "SECOND-SCRIPT", "FORM-LABEL", "ASIDE", "FOOTER"):
        assert dropped not in doc.text
    assert "font-family" not in doc.text


def test_html_table_rows_keep_their_column_names(tmp_path: Path) -> None:
    (doc,) = load_documents([write(tmp_path, "plans.html", office.html_page())]).documents
    lines = doc.text.splitlines()
    assert "Plan: Basic; Monthly price: 980 yen; Data: 3 GB" in lines
    assert "Plan: Premium; Monthly price: 4,980 yen; Data: Unlimited" in lines
    assert not any(line in ("Plan", "Monthly price") for line in lines), "the header is not a row of its own"


def test_html_without_main_uses_the_body_and_its_declared_encoding(tmp_path: Path) -> None:
    page = office.japanese_html_page().replace("<head>", '<head><meta charset="shift_jis">')
    (doc,) = load_documents([write(tmp_path, "shipping.htm", page.encode("shift_jis"))]).documents
    assert (doc.title, doc.lang) == ("配送について", "ja")
    assert "沖縄への配送には通常四日かかります。" in doc.text
    assert "地域: 沖縄; 送料: 千二百円" in doc.text.splitlines()
    assert "ナビゲーション" not in doc.text and "フッター" not in doc.text


def test_inline_tags_do_not_break_a_sentence_but_blocks_and_br_do() -> None:
    html = "<body><p>Call <a href='#'>support</a> <b>now</b>.</p><p>Second<br>line</p></body>"
    (fields,) = html_documents(html, source="https://example.com/help", doc_id="web/help")
    assert fields["text"].splitlines() == ["Call support now.", "Second", "line"]
    assert (fields["source"], fields["id"]) == ("https://example.com/help", "web/help")


def test_an_articles_own_header_is_content_the_pages_is_not() -> None:
    html = (
        "<body><header>Site banner</header><article><header><h1>Returns</h1></header><p>30 days.</p></article></body>"
    )
    (fields,) = html_documents(html, source="https://example.com/returns", doc_id="web/returns")
    assert (fields["text"], fields["title"]) == ("Returns\n30 days.", "Returns")


def test_html_with_no_content_is_refused(tmp_path: Path) -> None:
    bad = write(tmp_path, "menu.html", "<html><body><nav>Home</nav><script>x()</script></body></html>")
    assert refusal(bad) == f"{bad}: no text in the page's main content"


# --------------------------------------------------------------------------------------------
# DOCX


def test_docx_text_and_table_rows(tmp_path: Path) -> None:
    (doc,) = load_documents([write(tmp_path, "policies/work.docx", office.docx_file())]).documents
    assert (doc.id, doc.title) == ("work", "Work policy")
    lines = doc.text.splitlines()
    assert office.DOCX_FACTS[0] in lines
    assert "Office: Osaka office; Location: Floor 12" in lines
    assert "Office: Tokyo office" in lines  # the empty cell left out
    assert "在宅勤務の申請は前日までに上長へ提出してください。" in lines


@pytest.mark.parametrize(("name", "content"), [("big.docx", office.docx_file), ("big.xlsx", office.xlsx_file)])
def test_office_file_that_would_unzip_too_large_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, content: Any
) -> None:
    monkeypatch.setattr(common, "MAX_UNZIPPED_BYTES", 2048)  # a zip bomb, scaled down
    bad = write(tmp_path, name, content())
    assert refusal(bad) == f"{bad}: unzips to more than 0 MiB"


def test_corrupt_docx_is_refused(tmp_path: Path) -> None:
    bad = write(tmp_path, "cut.docx", office.corrupt_docx())
    assert refusal(bad).startswith(f"{bad}: not a readable DOCX file (")


# --------------------------------------------------------------------------------------------
# CSV and XLSX


def test_csv_rows_become_documents_with_column_names(tmp_path: Path) -> None:
    docs = by_id(write(tmp_path, "faq.csv", office.csv_file()))
    assert list(docs) == ["faq/2", "faq/3", "faq/4"]  # row numbers as a spreadsheet shows them
    first = docs["faq/2"]
    assert first.title == "q1"  # the first column by default
    assert (
        first.text == "id: q1\nquestion: ポイントの有効期限は？\nanswer: ポイントの有効期限は最終利用日から一年です。"
    )
    assert (first.lang, docs["faq/3"].lang, first.metadata) == ("ja", "en", {"row": 2})


def test_config_chooses_id_and_title_columns_category_roles_and_tenant(tmp_path: Path) -> None:
    file = write(tmp_path, "faq.csv", office.csv_file())
    write(tmp_path, "faq.csv.ingest.yaml", "id_column: id\ntitle_column: question\ncategory: support\nroles: [staff]\n")
    write(tmp_path, "ingest.yaml", "tenant: acme\ncategory: product\n")  # the sidecar wins for category
    docs = by_id(file)
    assert list(docs) == ["faq/q1", "faq/q2", "faq/q3"]
    assert docs["faq/q2"].title == "How do I change my billing address?"
    assert {(d.category, d.roles, d.tenant) for d in docs.values()} == {("support", ("staff",), "acme")}


def test_folder_config_applies_to_pdf_and_config_files_are_not_reported_skipped(tmp_path: Path) -> None:
    write(tmp_path, "kb/r7.pdf", office.english_pdf())
    write(tmp_path, "kb/ingest.yaml", "category: product\nlang: en\nroles: staff, support\n")
    report = load_documents([tmp_path / "kb"])
    (doc,) = report.documents
    assert (doc.category, doc.roles) == ("product", ("staff", "support"))
    assert report.skipped == []


@pytest.mark.parametrize("unit", ["sheet", "file"])
def test_csv_as_one_document_a_row_a_line(tmp_path: Path, unit: str) -> None:
    rows = [{"Model": r[0], "Price (yen)": str(r[1]), "Colour": r[2]} for r in office.XLSX_SHEETS["Prices"][1:]]
    file = write(tmp_path, "prices.csv", office.csv_file(rows))  # type: ignore[arg-type]
    write(tmp_path, "ingest.yaml", f"unit: {unit}\n")
    (doc,) = load_documents([file]).documents
    assert (doc.id, doc.title) == ("prices", "prices")
    assert doc.text.splitlines() == [
        "Model: KA-100; Price (yen): 12800; Colour: Midnight blue",
        "Model: R7; Price (yen): 24800; Colour: Pearl white",
    ]


def test_xlsx_rows_per_sheet_with_stable_ids_and_plain_numbers(tmp_path: Path) -> None:
    docs = by_id(write(tmp_path, "catalog.xlsx", office.xlsx_file()))
    assert list(docs) == ["catalog/Prices/2", "catalog/Prices/3", "catalog/店舗/2"]
    assert docs["catalog/Prices/2"].text == "Model: KA-100\nPrice (yen): 12800\nColour: Midnight blue"
    assert docs["catalog/店舗/2"].title == "梅田店"
    assert docs["catalog/店舗/2"].metadata == {"row": 2, "sheet": "店舗"}


def test_xlsx_per_sheet_and_per_file(tmp_path: Path) -> None:
    file = write(tmp_path, "catalog.xlsx", office.xlsx_file())
    config = write(tmp_path, "catalog.xlsx.ingest.yaml", "unit: sheet\n")
    sheets = by_id(file)
    assert list(sheets) == ["catalog/Prices", "catalog/店舗"]
    assert sheets["catalog/店舗"].text == "店舗名: 梅田店; 住所: 大阪市北区梅田一丁目; 営業時間: 十時から二十一時"
    config.write_text("unit: file\n")
    (whole,) = load_documents([file]).documents
    assert whole.id == "catalog" and whole.text.startswith("Prices\nModel: KA-100;") and "\n\n店舗\n" in whole.text


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        ("q,a\nx,y\n,\nz,w\n", "bad.csv: row 3: no values (delete the empty row)"),
        ("q,a\nx,y,extra\n", "bad.csv: row 2: 3 values but the header names 2 columns"),
        ("\n\n", "bad.csv: is empty (no header row, no rows)"),
        ("q,a\n", "bad.csv: has a header row but no rows below it"),
        ('q,a\n"x,y\n', "bad.csv:2: not valid CSV (unexpected end of data)"),
    ],
    ids=["row-without-values", "too-many-values", "empty", "header-only", "unclosed-quote"],
)
def test_bad_csv_is_refused_naming_the_row(tmp_path: Path, csv_text: str, expected: str) -> None:
    bad = write(tmp_path, "bad.csv", csv_text)
    assert refusal(bad).startswith(f"{tmp_path}/{expected}")


def test_csv_in_shift_jis_is_refused_as_not_utf8(tmp_path: Path) -> None:
    bad = write(tmp_path, "sjis.csv", "質問,答え\n送料は？,五百円\n".encode("shift_jis"))
    assert refusal(bad) == f"{bad}:1: not valid UTF-8 (byte 0); save it as CSV UTF-8 (Excel: Save As, CSV UTF-8)"


def test_row_without_an_id_and_duplicate_ids_are_refused(tmp_path: Path) -> None:
    bad = write(tmp_path, "faq.csv", "id,q\nq1,one\n,two\n")
    write(tmp_path, "ingest.yaml", "id_column: id\n")
    assert refusal(bad) == f"{bad}: row 3: no value in the id column 'id'"
    bad.write_text("id,q\nq1,one\nq1,two\n")
    assert refusal(bad) == f"{bad} row 3: duplicate id 'faq/q1' (first seen at {bad} row 2)"


def test_empty_sheet_and_corrupt_workbook_are_refused(tmp_path: Path) -> None:
    empty = write(tmp_path, "book.xlsx", office.empty_sheet_xlsx())
    assert refusal(empty) == f"{empty}: sheet 'Empty': is empty (no header row, no rows)"
    corrupt = write(tmp_path, "cut.xlsx", office.xlsx_file()[:200])
    assert refusal(corrupt).startswith(f"{corrupt}: not a readable XLSX file (")


# --------------------------------------------------------------------------------------------
# ingest.yaml validation


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("unit: row\ncolour: blue\n", "ingest.yaml: colour: Extra inputs are not permitted"),
        ("unit: page\n", "ingest.yaml: unit: Input should be 'row', 'sheet' or 'file'"),
        ("lang: fr\n", "ingest.yaml: lang: Input should be 'ja' or 'en'"),
        ("roles: [staff, 'bad role']\n", "ingest.yaml: roles: Value error, 'bad role' is not a plain identifier"),
        ("title_column: Colour\n", "ingest.yaml: title_column: 'Colour' is not a column of"),
        ("unit: [row\n", "ingest.yaml:2: invalid YAML ("),
        ("- row\n", "ingest.yaml: expected `key: value` lines"),
    ],
    ids=["unknown-key", "bad-unit", "bad-lang", "bad-role", "unknown-column", "bad-yaml", "not-a-mapping"],
)
def test_bad_config_is_refused_naming_the_config_file_and_field(tmp_path: Path, config: str, expected: str) -> None:
    write(tmp_path, "faq.csv", office.csv_file())
    write(tmp_path, "ingest.yaml", config)
    assert refusal(tmp_path).startswith(f"{tmp_path}/{expected}")
