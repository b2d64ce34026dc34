"""PDF: one document per file, its pages' text kept with where each page starts.

Text comes from pdfminer.six, page by page, as langchain-community's PDFMinerLoader does in its
"page" mode (one LTPage at a time, layout analysis on). pdfminer rather than pypdf: both read the
generated horizontal Japanese CID-font fixture correctly, but on the vertical (tategaki) one pypdf
gives one glyph a line where pdfminer's `detect_vertical` gives the columns as lines, right to left;
and pdfminer ships Adobe-Japan1 CMaps, so a CID font without a ToUnicode map still decodes. pypdf
opens the file first: the encryption check and the document title.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

from retrievers.errors import UserInputError
from retrievers.formats.common import Draft, Origin, make_document, short_title, tidy_lines

# pdfminer puts a space between glyphs set apart (vertical text often): Japanese has no spaces between words.
_JAPANESE = "\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef"  # kana, kanji, Japanese and full-width punctuation
_SPACE_IN_JAPANESE = re.compile(f"(?<=[{_JAPANESE}]) (?=[{_JAPANESE}])")
_UNMAPPED = re.compile(r"\(cid:\d+\)")  # pdfminer's stand-in for a glyph it has no character for
MAX_UNMAPPED = 10  # a page with more is unreadable text, not a stray symbol


def pdf_document(data: bytes, origin: Origin) -> Draft:
    """The file as one Document whose `page_starts` say where each page's text begins."""
    with _parser_warnings_off():
        title, page_count = _open_checked(data, origin.name)
        pages = _page_texts(data, origin.name)
    if not any(pages):
        raise UserInputError(
            f"{origin.name}: no extractable text on any of its {page_count} page(s) "
            "(a scanned image? run OCR on it first)"
        )
    starts: list[int] = []
    text = ""
    for page in pages:
        text += "\n\n" if text else ""
        starts.append(len(text))
        text += page
    first_line = next(page for page in pages if page)
    return make_document(
        origin,
        text=text,
        title=title or short_title(first_line),
        page_starts=tuple(starts),
    )


def _open_checked(data: bytes, name: str) -> tuple[str, int]:
    """(title, page count); refuses a file that is not a PDF or needs a password."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        # An empty user password (only copying or printing restricted) opens: pdfminer reads it too.
        if reader.is_encrypted and not reader.decrypt(""):
            raise UserInputError(f"{name}: encrypted (needs a password); save an unprotected copy and ingest that")
        title = str(reader.metadata.title or "") if reader.metadata else ""
        return title, len(reader.pages)
    except UserInputError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise UserInputError(f"{name}: not a readable PDF ({_reason(exc)})") from None


def _page_texts(data: bytes, name: str) -> list[str]:
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams, LTTextContainer
    from pdfminer.pdfexceptions import PDFException

    texts: list[str] = []
    try:
        for number, page in enumerate(extract_pages(io.BytesIO(data), laparams=LAParams(detect_vertical=True)), 1):
            boxes = (
                _SPACE_IN_JAPANESE.sub("", tidy_lines(box.get_text()))
                for box in page
                if isinstance(box, LTTextContainer)
            )
            text = "\n\n".join(box for box in boxes if box)  # a text box is a paragraph: the splitter's first cut
            if len(_UNMAPPED.findall(text)) > MAX_UNMAPPED:
                raise UserInputError(
                    f"{name}: page {number}: text in a font with no character map (shown as (cid:N) codes); "
                    "export the PDF again with its fonts embedded"
                )
            texts.append(text)
    except UserInputError:
        raise
    except (PDFException, ValueError, KeyError, TypeError, AssertionError, OSError) as exc:
        raise UserInputError(f"{name}: page {len(texts) + 1}: cannot be read ({_reason(exc)})") from None
    return texts


def _reason(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


@contextmanager
def _parser_warnings_off() -> Iterator[None]:
    """pypdf and pdfminer log each repair of a damaged file as a warning: noise around a refusal
    that must be one line, and nothing an operator can act on when the text reads fine."""
    loggers = [logging.getLogger(name) for name in ("pypdf", "pdfminer")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
