"""extraction: how fast `load_documents` reads each office format, and what embedding the text then costs.

Inputs are generated (`tests/fakes/office_files.py`) under `benchmarks/.data/extraction`: a PDF of 50
pages in English and one in Japanese (embedded CID font), HTML pages with navigation and a table,
DOCX files with a table and 2,400 characters of text, a CSV and an XLSX of 5,000 rows (`--quick`:
10 pages, 20 files, 500 rows).
Extraction is timed through the real loader (reading, parsing, validation), best of 3. The
embedding step is then timed on the chunks of that same text (the settings' chunk size) with the
default model, e5, through the product's `Embeddings` with no cache: chunks/s, and the seconds it
costs per page, file or row next to the seconds extraction costs for it. Last, a folder of PDFs (4
copies of each, English and Japanese) read by one process and by `--workers 2`: pages/s.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import DATA_DIR, Result, bench_settings, log, now, print_table
from retrievers.documents import Document, chunk_document, embedding_text, load_documents
from retrievers.embeddings import E5Model, Embeddings
from tests.fakes import office_files as office

NAME = "extraction"
FOLDER = DATA_DIR / "extraction"
ROUNDS = 3
EN_WORDS = (
    "router warranty battery firmware customer invoice delivery store refund plan contract support network "
    "device account password signal coverage upgrade repair appointment branch office manual setting"
).split()
JA_PHRASES = (
    "保証期間は購入日から一年間です。", "修理のご依頼は店舗でも受け付けています。", "返品は未開封に限ります。",
    "料金プランは毎月変更できます。", "通信速度は地域によって異なります。", "ポイントは翌月に付与されます。",
    "お問い合わせは平日の九時から十八時までです。", "本体を再起動してから設定をやり直してください。",
)  # fmt: skip


def _english(rng: random.Random, chars: int) -> str:
    sentences: list[str] = []
    while sum(len(sentence) for sentence in sentences) < chars:
        words = rng.choices(EN_WORDS, k=rng.randint(8, 16))
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def _japanese(rng: random.Random, chars: int) -> str:
    text = ""
    while len(text) < chars:
        text += rng.choice(JA_PHRASES)
    return text


def _html(rng: random.Random, index: int) -> str:
    page = office.html_page().replace(office.HTML_FACTS[0], f"Page {index}. " + _english(rng, 2500))
    return page


def generate(quick: bool) -> dict[str, tuple[Path, int, str]]:
    """Format → (file or folder to load, units in it, unit name)."""
    rng = random.Random(12)
    pages, files, rows = (10, 20, 500) if quick else (50, 200, 5000)
    shutil.rmtree(FOLDER, ignore_errors=True)
    inputs: dict[str, tuple[Path, int, str]] = {}

    def put(relative: str, data: bytes) -> Path:
        path = FOLDER / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    en_pages = [_english(rng, 1800) for _ in range(pages)]
    inputs["pdf (en)"] = (put("pdf_en/guide.pdf", office.pdf(en_pages, title="Guide")), pages, "page")
    ja_pages = [_japanese(rng, 800) for _ in range(pages)]
    ja_pdf = office.pdf(ja_pages, font=office.JAPANESE_FONT, title="ガイド")
    inputs["pdf (ja, CID font)"] = (put("pdf_ja/guide.pdf", ja_pdf), pages, "page")
    for index in range(files):
        put(f"html/page{index:04}.html", _html(rng, index).encode())
    inputs["html"] = (FOLDER / "html", files, "file")
    for index in range(files):
        put(f"docx/doc{index:04}.docx", office.docx_file([_english(rng, 600) for _ in range(4)]))
    inputs["docx"] = (FOLDER / "docx", files, "file")
    table = [{"id": f"r{i}", "question": _japanese(rng, 30), "answer": _english(rng, 200)} for i in range(rows)]
    inputs["csv (row unit)"] = (put("csv/faq.csv", office.csv_file(table)), rows, "row")
    sheet: list[list[object]] = [["id", "question", "answer"]]
    sheet += [[r["id"], r["question"], r["answer"]] for r in table]
    inputs["xlsx (row unit)"] = (put("xlsx/faq.xlsx", office.xlsx_file({"FAQ": sheet})), rows, "row")
    return inputs


def best_of(rounds: int, work: Callable[[], list[Document]]) -> tuple[float, list[Document]]:
    best, docs = float("inf"), []
    for _ in range(rounds):
        started = now()
        docs = work()
        best = min(best, now() - started)
    return best, docs


async def run(quick: bool) -> Result:
    log("generating inputs")
    inputs = generate(quick)
    settings = bench_settings(DATA_DIR)
    load_documents([inputs["pdf (en)"][0]])  # imports the parsers outside the timings
    log("loading e5")
    embeddings = Embeddings(E5Model(settings.embeddings_threads), None)
    embeddings.embed_passages(["warm up"])
    sample = 8 if quick else 64  # chunks embedded per format: e5 is the slow part
    rows: list[dict[str, Any]] = []
    for fmt, (path, units, unit) in inputs.items():
        seconds, docs = best_of(ROUNDS, lambda path=path: load_documents([path]).documents)  # type: ignore[misc]
        # Unique texts: `Embeddings` embeds a text repeated in one call once (a table on every page).
        texts = list(
            dict.fromkeys(
                embedding_text(doc.title, chunk.text)
                for doc in docs
                for chunk in chunk_document(doc, size=settings.chunk_size, overlap=settings.chunk_overlap)
            )
        )
        embedded = texts[:: max(1, len(texts) // sample)][:sample]  # spread over the set
        started = now()
        embeddings.embed_passages(embedded)
        chunks_per_s = len(embedded) / (now() - started)
        embed_s_per_unit = len(texts) / chunks_per_s / units
        rows.append(
            {
                "format": fmt,
                "units": units,
                "unit": unit,
                "documents": len(docs),
                "chars": sum(len(doc.text) for doc in docs),
                "extract_s": round(seconds, 3),
                "units_per_s": round(units / seconds, 1),
                "unique_chunks": len(texts),
                "chunks_embedded": len(embedded),
                "embed_chunks_per_s": round(chunks_per_s, 1),
                "extract_ms_per_unit": round(seconds / units * 1000, 2),
                "embed_ms_per_unit": round(embed_s_per_unit * 1000, 1),
            }
        )
        log(f"  {fmt}: {rows[-1]['units_per_s']} {unit}s/s, e5 {rows[-1]['embed_chunks_per_s']} chunks/s")
    print_table(
        f"extraction: load_documents (best of {ROUNDS}) and e5 embedding of the same text (no cache)",
        [
            "format",
            "units",
            "docs",
            "chars",
            "extract s",
            "units/s",
            "chunks",
            "e5 chunks/s",
            "extract ms/unit",
            "embed ms/unit",
        ],
        [
            [
                r["format"],
                f"{r['units']} {r['unit']}s",
                r["documents"],
                r["chars"],
                r["extract_s"],
                r["units_per_s"],
                r["unique_chunks"],
                r["embed_chunks_per_s"],
                r["extract_ms_per_unit"],
                r["embed_ms_per_unit"],
            ]
            for r in rows
        ],
    )
    pooled = pdf_folder_in_processes(inputs)
    return Result(
        NAME, quick, {"model": E5Model.name, "chunk_size": settings.chunk_size, "rows": rows, "processes": pooled}
    )


def pdf_folder_in_processes(inputs: dict[str, tuple[Path, int, str]]) -> list[dict[str, Any]]:
    """A folder of 8 PDFs read by 1 and by 2 processes (`voicerag ingest --workers`): pages/s."""
    folder = FOLDER / "pdf_folder"
    folder.mkdir()
    pages = 0
    for fmt in ("pdf (en)", "pdf (ja, CID font)"):
        path, units, _ = inputs[fmt]
        for copy in range(4):
            shutil.copyfile(path, folder / f"{path.parent.name}_{copy}.pdf")
            pages += units
    rows = []
    for workers in (1, 2):
        seconds, docs = best_of(1, lambda workers=workers: load_documents([folder], workers=workers).documents)  # type: ignore[misc]
        rows.append({"workers": workers, "pages": pages, "documents": len(docs), "s": round(seconds, 2)})
        log(f"  {pages} PDF pages, {workers} process(es): {pages / seconds:.1f} pages/s")
    print_table(
        "extraction: a folder of PDFs read by one process and by two (`--workers 2`)",
        ["processes", "pages", "s", "pages/s"],
        [[r["workers"], r["pages"], r["s"], round(r["pages"] / r["s"], 1)] for r in rows],
    )
    return rows
