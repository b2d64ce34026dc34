"""Company documents generated on the spot (nothing downloaded, nothing binary committed).

Each function returns a file's bytes; `write_office_corpus` writes one of each format, in Japanese
and English, with the facts in `FACTS` (file name → sentences that search must find). The Japanese
PDF embeds IPAex Gothic (shipped by japanize-matplotlib) as a CID font, as office software does.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import japanize_matplotlib
from docx import Document as DocxDocument
from fpdf import FPDF
from openpyxl import Workbook
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter

JAPANESE_FONT = Path(japanize_matplotlib.__file__).parent / "fonts" / "ipaexg.ttf"

JA_PDF_PAGES = (
    "保証について\nクモエアKA-100の保証期間は購入日から二年間です。",
    "返品について\n未開封の商品は三十日以内なら返品できます。",
    "修理の受付\n修理受付の電話番号は0120-555-123です。受付時間は平日の九時から十八時までです。",
)
EN_PDF_PAGES = (
    "Kumo Cloud Router R7 Quick Guide\nThe R7 router supports Wi-Fi 7 and covers up to 150 square metres.",
    "Resetting the R7\nHold the reset pin for twelve seconds until the lamp blinks amber.",
)
HTML_FACTS = ("The Premium plan includes unlimited international calls.", "Premium", "4,980 yen")
DOCX_FACTS = ("Employees may work remotely up to three days a week.", "Osaka office", "Floor 12")
CSV_ROWS: tuple[dict[str, str], ...] = (
    {"id": "q1", "question": "ポイントの有効期限は？", "answer": "ポイントの有効期限は最終利用日から一年です。"},
    {"id": "q2", "question": "How do I change my billing address?", "answer": "Open Account, then Billing, then Edit."},
    {"id": "q3", "question": "領収書は発行できますか？", "answer": "マイページから領収書をダウンロードできます。"},
)
XLSX_SHEETS: dict[str, list[list[object]]] = {
    "Prices": [["Model", "Price (yen)", "Colour"], ["KA-100", 12800, "Midnight blue"], ["R7", 24800, "Pearl white"]],
    "店舗": [["店舗名", "住所", "営業時間"], ["梅田店", "大阪市北区梅田一丁目", "十時から二十一時"]],
}


def pdf(pages: Sequence[str], *, font: Path | None = None, title: str = "") -> bytes:
    """A text PDF, one string a page; `font`: a TTF embedded as a CID (Type0) font subset."""
    document = FPDF()
    if title:
        document.set_title(title)
    if font is not None:
        document.add_font("embedded", fname=str(font))
        document.set_font("embedded", size=12)
    else:
        document.set_font("helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 8, text)
    return bytes(document.output())


VERTICAL_COLUMNS = ("縦書きの案内です。", "保証期間は二年間です。")  # read right to left


def vertical_japanese_pdf() -> bytes:
    """Tategaki: each column's characters placed top to bottom, columns from right to left (fpdf2
    has no vertical writing mode, so the glyphs are placed one by one, as a layout program would)."""
    document = FPDF()
    document.add_font("embedded", fname=str(JAPANESE_FONT))
    document.set_font("embedded", size=14)
    document.add_page()
    for column, text in enumerate(VERTICAL_COLUMNS):
        for row, char in enumerate(text):
            document.text(150 - 10 * column, 30 + 6 * row, char)
    return bytes(document.output())


def japanese_pdf() -> bytes:
    return pdf(JA_PDF_PAGES, font=JAPANESE_FONT, title="製品サポートガイド")


def english_pdf(pages: Sequence[str] = EN_PDF_PAGES) -> bytes:
    return pdf(pages, title="R7 Quick Guide")


def scanned_pdf() -> bytes:
    """A page that is only a picture of text, as a scanner makes it: nothing to extract."""
    picture = Image.new("RGB", (800, 300), "white")
    ImageDraw.Draw(picture).text((40, 120), "Scanned invoice 2026-001", fill="black")
    document = FPDF()
    document.add_page()
    document.image(picture, x=10, y=10, w=180)
    return bytes(document.output())


def encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(english_pdf())))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def html_page() -> str:
    """A company page: navigation, header, a script, a form, an aside, a footer and a price table."""
    return f"""<!doctype html>
<html lang="en"><head><title>Mobile plans | Kumo Mobile</title>
<style>body {{ font-family: sans-serif }}</style>
<script>var trackingCode = "TRACKING-SCRIPT-42";</script></head>
<body>
<header><a href="/">Kumo Mobile</a> HEADER-BANNER-TEXT</header>
<nav><ul><li><a href="/">Home</a></li><li>NAV-MENU-ITEM</li></ul></nav>
<main>
<h1>Mobile plans</h1>
<p>{HTML_FACTS[0]}</p>
<table>
  <thead><tr><th>Plan</th><th>Monthly price</th><th>Data</th></tr></thead>
  <tbody>
    <tr><td>Basic</td><td>980 yen</td><td>3 GB</td></tr>
    <tr><td>{HTML_FACTS[1]}</td><td>{HTML_FACTS[2]}</td><td>Unlimited</td></tr>
  </tbody>
</table>
<form><label>Newsletter FORM-LABEL</label><input name="email"></form>
</main>
<aside>ASIDE-ADVERT-TEXT</aside>
<footer>FOOTER-COPYRIGHT-TEXT</footer>
<script>console.log("SECOND-SCRIPT")</script>
</body></html>"""


def japanese_html_page() -> str:
    """No <main>: the body without its navigation and footer is the content."""
    return """<html><head><title>配送について</title></head><body>
<nav>ホーム ナビゲーション項目</nav>
<div><h1>配送について</h1><p>沖縄への配送には通常四日かかります。</p>
<table><tr><th>地域</th><th>送料</th></tr><tr><td>本州</td><td>五百円</td></tr><tr><td>沖縄</td><td>千二百円</td></tr></table>
</div><footer>フッターの著作権表示</footer></body></html>"""


def docx_file(paragraphs: Sequence[str] = ()) -> bytes:
    """A policy with a table; `paragraphs` are added after the first (a benchmark's bulk text)."""
    document = DocxDocument()
    document.add_heading("Work policy", level=1)
    document.add_paragraph(DOCX_FACTS[0])
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    table = document.add_table(rows=3, cols=2)
    for row, values in zip(
        table.rows, (("Office", "Location"), (DOCX_FACTS[1], DOCX_FACTS[2]), ("Tokyo office", "")), strict=True
    ):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_paragraph("在宅勤務の申請は前日までに上長へ提出してください。")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def corrupt_docx() -> bytes:
    """The first bytes of a DOCX (a ZIP) and then nothing: a download cut short."""
    return docx_file()[:300]


def csv_file(rows: Sequence[dict[str, str]] = CSV_ROWS) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def xlsx_file(sheets: dict[str, list[list[object]]] = XLSX_SHEETS) -> bytes:
    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def empty_sheet_xlsx() -> bytes:
    return xlsx_file({"Prices": XLSX_SHEETS["Prices"], "Empty": []})


def write_office_corpus(folder: Path) -> dict[str, bytes]:
    """One file of each format under `folder` (CSV and XLSX with their ingest configs); returns
    relative path → bytes written."""
    files = {
        "manuals/support_guide_ja.pdf": japanese_pdf(),
        "manuals/r7_guide.pdf": english_pdf(),
        "web/plans.html": html_page().encode(),
        "web/shipping_ja.htm": japanese_html_page().encode(),
        "policies/work_policy.docx": docx_file(),
        "faq/faq.csv": csv_file(),
        "faq/faq.csv.ingest.yaml": b"unit: row\nid_column: id\ntitle_column: question\ncategory: support\n",
        "catalog/catalog.xlsx": xlsx_file(),
        "catalog/ingest.yaml": b"unit: sheet\ncategory: product\n",
    }
    for relative, data in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files
