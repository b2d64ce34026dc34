"""What every office reader needs: where the file came from, and one shape for what it read."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

from retrievers.document_values import MAX_TITLE_CHARS
from retrievers.errors import UserInputError
from retrievers.formats.config import FileConfig, IngestConfig
from retrievers.language import Language


@dataclass(frozen=True, slots=True)
class Origin:
    """A file being read: `name` for messages, `doc_id` (its path without suffix) for ids."""

    name: str
    doc_id: str
    source: str
    config: FileConfig = field(default_factory=lambda: FileConfig(IngestConfig(), {}))

    @property
    def stem(self) -> str:
        return self.doc_id.rsplit("/", 1)[-1].replace("_", " ").replace("-", " ")


Draft = dict[str, Any]  # a Document's fields; `retrievers/documents.py` validates them (fills category, lang)


def make_document(
    origin: Origin,
    *,
    text: str,
    title: str = "",
    doc_id: str = "",
    metadata: dict[str, str | int | float | bool] | None = None,
    page_starts: tuple[int, ...] = (),
    lang: Language | None = None,
) -> Draft:
    """A document's fields with the config's category, language and access rules applied. Unset
    category and language are left to the loader (from the folder's name; detected from the text)."""
    config = origin.config.values
    return {
        "id": doc_id or origin.doc_id,
        "title": short_title(title) or origin.stem,
        "text": text,
        "category": config.category,
        "lang": config.lang or lang,
        "source": origin.source,
        "metadata": metadata or {},
        "roles": config.roles,
        "tenant": config.tenant,
        "page_starts": page_starts,
    }


_SPACES = re.compile(r"[ \t\u00a0\u3000]+")


def short_title(text: str) -> str:
    """One line of at most `MAX_TITLE_CHARS` (a title is stored and embedded with every chunk)."""
    line = _SPACES.sub(" ", text.strip().split("\n", 1)[0]).strip()
    return line[: MAX_TITLE_CHARS - 1] + "…" if len(line) > MAX_TITLE_CHARS else line


def tidy_lines(text: str) -> str:
    """Runs of spaces made one, lines trimmed, blank lines dropped (extracted text is ragged)."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def row_line(header: list[str], values: list[str]) -> str:
    """A table row as `col: value; col: value` (empty cells left out; no header name: the value alone)."""
    names = [*header, *[""] * (len(values) - len(header))]  # a row longer than its header
    return "; ".join(f"{name}: {value}" if name else value for name, value in zip(names, values, strict=False) if value)


def table_lines(rows: list[list[str]], *, has_header: bool) -> list[str]:
    """Rows of an HTML or Word table as lines; the header row names the columns of the others."""
    rows = [row for row in rows if any(cell for cell in row)]
    if not rows:
        return []
    if not has_header or len(rows) == 1:
        return ["; ".join(cell for cell in row if cell) for row in rows]
    header, body = rows[0], rows[1:]
    return [line for line in (row_line(header, row) for row in body) if line]


MAX_UNZIPPED_BYTES = 256 * 1024 * 1024  # a DOCX or XLSX is a ZIP: a small one can inflate to gigabytes


def opened_zip(data: bytes, name: str, what: str) -> zipfile.ZipFile:
    """An office file's ZIP container, refused when it is not one or would unzip too large (a zip bomb)."""
    try:
        container = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserInputError(f"{name}: not a readable {what} file ({str(exc)[:120]})") from None
    if sum(info.file_size for info in container.infolist()) > MAX_UNZIPPED_BYTES:
        raise UserInputError(f"{name}: unzips to more than {MAX_UNZIPPED_BYTES // 2**20} MiB")
    return container
