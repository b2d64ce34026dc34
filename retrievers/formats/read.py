"""Which reader an office file goes to, by its suffix, with the config that applies to it."""

from __future__ import annotations

from retrievers.document_files import FoundFile, decoded_text, named
from retrievers.errors import UserInputError
from retrievers.formats.common import Draft, Origin
from retrievers.formats.config import ConfigReader


def office_documents(found: FoundFile, data: bytes, path_id: str, configs: ConfigReader) -> list[tuple[str, Draft]]:
    """(where, fields) of each document of the file: `where` names the file and, for a table row,
    the sheet and row (a duplicate id is reported there)."""
    origin = Origin(
        name=named(found.path),
        doc_id=path_id,
        source=found.source,
        config=configs.for_file(found),
    )
    suffix = found.path.suffix.lower()
    if suffix == ".pdf":
        from retrievers.formats.pdf import pdf_document

        docs = [pdf_document(data, origin)]
    elif suffix in (".html", ".htm"):
        from retrievers.formats.html import html_file_documents

        docs = html_file_documents(data, origin)
    elif suffix == ".docx":
        from retrievers.formats.word import docx_document

        docs = [docx_document(data, origin)]
    elif suffix == ".csv":
        from retrievers.formats.tables import csv_documents

        try:
            text = decoded_text(found, data)
        except UserInputError as exc:  # Excel in Japan saves CSV as Shift_JIS unless asked
            raise UserInputError(f"{exc}; save it as CSV UTF-8 (Excel: Save As, CSV UTF-8)") from None
        docs = csv_documents(text, origin)
    else:
        from retrievers.formats.tables import xlsx_documents

        docs = xlsx_documents(data, origin)
    return [(_where(origin.name, doc), doc) for doc in docs]


def _where(name: str, doc: Draft) -> str:
    sheet, row = doc["metadata"].get("sheet"), doc["metadata"].get("row")
    return name + (f": sheet {sheet!r}" if sheet is not None else "") + (f" row {row}" if row is not None else "")
