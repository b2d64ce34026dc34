"""CSV and XLSX: one document per row, per sheet or per file, as the file's `ingest.yaml` says.

The first row names the columns. A row document reads `Column: value` lines; its title is the title
column's value (default: the first column) and its id `<path id>/<row id>` (`<path id>/<sheet>/<row
id>` in a workbook), the row id being the id column's value or the row number as a spreadsheet shows
it (the header is row 1), so ids stay the same from one ingest to the next. A sheet or file document
reads one `col: value; col: value` line a row.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from retrievers.errors import UserInputError
from retrievers.formats.common import Draft, Origin, make_document, opened_zip, row_line

MAX_COLUMNS = 1000


@dataclass(frozen=True, slots=True)
class Sheet:
    """Rows of one table; `name` is None for a CSV (the file is the sheet)."""

    name: str | None
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (row number as a spreadsheet shows it, values)


def csv_documents(text: str, origin: Origin) -> list[Draft]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # an unclosed quote is an error
    try:
        rows = [[" ".join(value.split()) for value in values] for values in reader]
    except csv.Error as exc:
        raise UserInputError(f"{origin.name}:{reader.line_num}: not valid CSV ({exc})") from None
    return _documents([_sheet(None, rows, origin.name)], origin)


def xlsx_documents(data: bytes, origin: Origin) -> list[Draft]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    opened_zip(data, origin.name, "XLSX").close()  # the size check; openpyxl opens its own
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise UserInputError(f"{origin.name}: not a readable XLSX file ({str(exc)[:120]})") from None
    try:
        sheets = []
        for worksheet in workbook.worksheets:
            rows = [[_cell(value) for value in row] for row in worksheet.iter_rows(min_row=1, values_only=True)]
            sheets.append(_sheet(worksheet.title, rows, origin.name))
    finally:
        workbook.close()
    if not sheets:
        raise UserInputError(f"{origin.name}: the workbook has no sheets")
    return _documents(sheets, origin)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 12800.0 is the price 12800
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="minutes") if value.time() != dt.time() else value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())


def _sheet(name: str | None, rows: list[list[str]], file: str) -> Sheet:
    """Rows numbered as a spreadsheet shows them; the first row with a value is the header."""
    where = f"{file}: sheet {name!r}" if name is not None else file
    numbered = list(enumerate(rows, start=1))
    while numbered and not any(numbered[-1][1]):  # trailing empty rows: a formatted but unused range
        numbered.pop()
    while numbered and not any(numbered[0][1]):  # blank rows above the table
        numbered.pop(0)
    if not numbered:
        raise UserInputError(f"{where}: is empty (no header row, no rows)")
    (_, header), body = numbered[0], numbered[1:]
    while header and not header[-1]:
        header = header[:-1]
    if len(header) > MAX_COLUMNS:
        raise UserInputError(f"{where}: {len(header)} columns; at most {MAX_COLUMNS}")
    if not body:
        raise UserInputError(f"{where}: has a header row but no rows below it")
    header = [name or f"column {i + 1}" for i, name in enumerate(header)]
    kept: list[tuple[int, list[str]]] = []
    for number, values in body:
        if not any(values):
            raise UserInputError(f"{where}: row {number}: no values (delete the empty row)")
        extra = [value for value in values[len(header) :] if value]
        if extra:
            raise UserInputError(
                f"{where}: row {number}: {len(header) + len(extra)} values but the header names {len(header)} columns"
            )
        kept.append((number, values[: len(header)]))
    return Sheet(name, header, kept)


def _documents(sheets: list[Sheet], origin: Origin) -> list[Draft]:
    config = origin.config.values
    for key in ("title_column", "id_column"):
        column = getattr(config, key)
        missing = next((sheet for sheet in sheets if column is not None and column not in sheet.header), None)
        if missing is not None:
            in_sheet = f" sheet {missing.name!r}" if missing.name is not None else ""
            raise UserInputError(
                f"{origin.config.where(key)}: {column!r} is not a column of {origin.name}{in_sheet} "
                f"(columns: {', '.join(missing.header[:20])})"
            )
    if config.unit == "row":
        return [doc for sheet in sheets for doc in _row_documents(sheet, origin)]
    if config.unit == "sheet":
        return [_sheet_document(sheet, origin) for sheet in sheets]
    text = "\n\n".join(_sheet_text(sheet, heading=sheet.name is not None) for sheet in sheets)
    return [make_document(origin, text=text, title=origin.stem)]


def _row_documents(sheet: Sheet, origin: Origin) -> Iterator[Draft]:
    config = origin.config.values
    title_at = sheet.header.index(config.title_column) if config.title_column else 0
    id_at = sheet.header.index(config.id_column) if config.id_column else None
    prefix = origin.doc_id if sheet.name is None else f"{origin.doc_id}/{sheet.name}"
    for number, values in sheet.rows:
        where = f"{origin.name}: " + (f"sheet {sheet.name!r} " if sheet.name is not None else "") + f"row {number}"
        row_id = str(number)
        if id_at is not None:
            row_id = values[id_at] if id_at < len(values) else ""
            if not row_id:
                raise UserInputError(f"{where}: no value in the id column {config.id_column!r}")
        text = "\n".join(f"{name}: {value}" for name, value in zip(sheet.header, values, strict=False) if value)
        metadata: dict[str, str | int | float | bool] = {"row": number}
        if sheet.name is not None:
            metadata["sheet"] = sheet.name
        title = values[title_at] if title_at < len(values) else ""
        yield make_document(origin, doc_id=f"{prefix}/{row_id}", text=text, title=title, metadata=metadata)


def _sheet_document(sheet: Sheet, origin: Origin) -> Draft:
    if sheet.name is None:
        return make_document(origin, text=_sheet_text(sheet, heading=False))
    return make_document(
        origin,
        doc_id=f"{origin.doc_id}/{sheet.name}",
        text=_sheet_text(sheet, heading=False),
        title=f"{origin.stem}: {sheet.name}",
        metadata={"sheet": sheet.name},
    )


def _sheet_text(sheet: Sheet, *, heading: bool) -> str:
    lines = [row_line(sheet.header, values) for _, values in sheet.rows]
    return "\n".join([sheet.name or "", *lines] if heading else lines).strip()
