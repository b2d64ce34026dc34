"""Documents: the model, loaders for .jsonl/.json/.md/.txt (office formats: `formats/`), validation, chunking.

Loading is all-or-nothing: `load_documents` reads and validates every input before anything is
written, and raises `UserInputError` naming the file and line (or field) of the first problem.
Which files are read, and how, is `document_files.py`; what values may hold, `document_values.py`.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from retrievers.access import IDENTIFIER_RULE, is_identifier, split_roles
from retrievers.document_files import FoundFile, decoded_text, find_files, named, read_found
from retrievers.document_values import (
    MAX_JSON_DEPTH,
    MAX_TITLE_CHARS,
    check_record,
    id_problem,
    line_of_depth,
    metadata_problem,
    shown,
)
from retrievers.errors import UserInputError
from retrievers.formats.config import ConfigReader, is_config_file

if TYPE_CHECKING:
    from langchain_text_splitters import RecursiveCharacterTextSplitter
from retrievers.language import Language, detect_language

Category = Literal["product", "support", "general"]
CATEGORIES: tuple[Category, ...] = ("product", "support", "general")
TEXT_SUFFIXES = (".jsonl", ".json", ".md", ".markdown", ".txt")
OFFICE_SUFFIXES = (".pdf", ".html", ".htm", ".docx", ".csv", ".xlsx")  # read by `retrievers/formats/`
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + OFFICE_SUFFIXES
MAX_FILE_BYTES = 64 * 1024 * 1024
MetadataValue = str | int | float | bool

# Chunk metadata keys the knowledge base writes itself; documents may not set them.
RESERVED_METADATA = frozenset(
    {"doc_id", "title", "category", "lang", "source", "chunk_index", "chunk_count", "content_hash", "roles", "tenant"}
)
_KNOWN_FIELDS = {"id", "title", "text", "content", "category", "lang", "metadata", "roles", "tenant"}


class Document(BaseModel):
    """One document of the knowledge base, before chunking."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=512)
    title: str = Field("", max_length=MAX_TITLE_CHARS)
    text: str = Field(min_length=1)
    category: Category = "general"
    lang: Language
    source: str = ""
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    # Who may see it (`retrievers/access.py`): none of both means public.
    roles: tuple[str, ...] = ()
    tenant: str | None = None
    # Where each page's text starts in `text` (PDF): chunks then say which page(s) they come from.
    page_starts: tuple[int, ...] = ()

    @field_validator("roles", mode="before")
    @classmethod
    def _roles_identifiers(cls, value: object) -> tuple[str, ...]:
        if not isinstance(value, str | list | tuple) or not all(isinstance(role, str) for role in value):
            raise ValueError("must be a list of roles or comma-separated roles")
        roles = split_roles(value)
        bad = next((role for role in roles if not is_identifier(role)), None)
        if bad is not None:
            raise ValueError(f"holds {shown(bad)}, not a plain identifier ({IDENTIFIER_RULE})")
        return roles

    @field_validator("tenant", mode="before")
    @classmethod
    def _tenant_identifier(cls, value: object) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if not is_identifier(value.strip()):
            raise ValueError(f"is {shown(value)}, not a plain identifier ({IDENTIFIER_RULE})")
        return value.strip()

    @field_validator("id")
    @classmethod
    def _id_characters(cls, value: str) -> str:
        problem = id_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_allowed(cls, value: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        problem = metadata_problem(value)  # first: the messages below quote keys
        if problem:
            raise ValueError(problem)
        clash = sorted(RESERVED_METADATA & value.keys())
        if clash:
            raise ValueError(f"uses reserved key(s) {', '.join(clash)}")
        # Chroma refuses these at write time, which would be too late for all-or-nothing.
        refused = sorted(key for key in value if not key or key[0] in "#$" or key == "chroma:document")
        if refused:
            raise ValueError(f"key(s) {', '.join(map(shown, refused))} not allowed (empty, or start with # or $)")
        return value

    @property
    def content_hash(self) -> str:
        """Hash of everything that is stored: an unchanged hash means nothing to write. Who may
        see the document is part of it (new roles re-ingest it); a public document hashes as it
        did before documents had access rules."""
        fields: list[object] = [self.title, self.text, self.category, self.lang, self.source]
        fields.append(sorted(self.metadata.items()))
        if self.roles or self.tenant:
            fields.append([sorted(self.roles), self.tenant])
        if self.page_starts:
            fields.append(list(self.page_starts))
        payload = json.dumps(fields, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document as stored in the vector store."""

    id: str
    doc_id: str
    index: int
    text: str
    pages: tuple[int, int] | None = None  # first and last page (1-based) of a paged document

    @staticmethod
    def make_id(doc_id: str, index: int) -> str:
        return f"{doc_id}::{index}"


def chunk_document(doc: Document, *, size: int, overlap: int) -> list[Chunk]:
    """Split a document into overlapping chunks at paragraph, sentence, then word boundaries."""
    pieces = _splitter(size, overlap).split_text(doc.text) or [doc.text.strip()]
    pages = _chunk_pages(doc, pieces) if doc.page_starts else [None] * len(pieces)
    return [Chunk(Chunk.make_id(doc.id, i), doc.id, i, piece, pages[i]) for i, piece in enumerate(pieces)]


def _chunk_pages(doc: Document, pieces: list[str]) -> list[tuple[int, int] | None]:
    """Pages of each chunk: the pieces are substrings of the text, in order (as langchain's
    `add_start_index` finds them), so each is searched from just after the previous one's start."""
    pages: list[tuple[int, int] | None] = []
    start = -1
    for piece in pieces:
        found = doc.text.find(piece, start + 1)
        if found < 0:  # not a substring (never with this splitter): no page rather than a wrong one
            pages.append(None)
            continue
        start = found
        first = bisect.bisect_right(doc.page_starts, start)
        last = bisect.bisect_right(doc.page_starts, start + max(len(piece) - 1, 0))
        pages.append((first, last))
    return pages


def embedding_text(title: str, chunk_text: str) -> str:
    """What is embedded and keyword-indexed for a chunk: the title carries the topic."""
    return f"{title}\n{chunk_text}" if title else chunk_text


_SPLITTERS: dict[tuple[int, int], RecursiveCharacterTextSplitter] = {}


def _splitter(size: int, overlap: int) -> RecursiveCharacterTextSplitter:
    from langchain_text_splitters import RecursiveCharacterTextSplitter  # heavy import, needed to write only

    key = (size, overlap)
    if key not in _SPLITTERS:
        _SPLITTERS[key] = RecursiveCharacterTextSplitter(
            chunk_size=size,
            chunk_overlap=overlap,
            # Japanese sentences end in 。！？ with no space after them.
            separators=["\n\n", "\n", "。", "．", "！", "？", ". ", "! ", "? ", "、", ", ", " ", ""],
            keep_separator="end",
            strip_whitespace=True,
        )
    return _SPLITTERS[key]


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What `load_documents` found: the documents, and files it passed over inside folders."""

    documents: list[Document]
    files: list[Path]
    skipped: list[Path]


def load_documents(
    paths: Iterable[Path | str], workers: int = 1, progress: Callable[[str, int, int], None] | None = None
) -> LoadReport:
    """Read and validate every document under `paths` (files or folders, recursively); with
    `workers` > 1, files are read and parsed by that many processes (`document_pool.py`).
    `progress("read", files done, files)` after each file (a folder of PDFs takes minutes).

    Raises `UserInputError` naming the file and line or field at the first problem (in file order,
    whatever the workers), including a document id used twice anywhere in the inputs.
    """
    files, skipped = find_files((Path(p) for p in paths), SUPPORTED_SUFFIXES)
    documents: list[Document] = []
    first_seen: dict[str, str] = {}
    if workers > 1 and len(files) > 1:
        from retrievers.document_pool import read_in_processes

        per_file: Iterable[list[tuple[str, Document]]] = read_in_processes(file_documents, files, workers)
    else:
        configs = ConfigReader()  # each folder's config read once
        per_file = (file_documents(file, configs) for file in files)
    for done, loaded in enumerate(per_file, start=1):
        if progress is not None:
            progress("read", done, len(files))
        for where, doc in loaded:
            if doc.id in first_seen:
                raise UserInputError(f"{where}: duplicate id {doc.id!r} (first seen at {first_seen[doc.id]})")
            first_seen[doc.id] = where
            documents.append(doc)
    return LoadReport(documents, [f.path for f in files], [path for path in skipped if not is_config_file(path)])


def file_documents(found: FoundFile, configs: ConfigReader | None = None) -> list[tuple[str, Document]]:
    """(where, document) of every document in one file (`configs`: shared by a call's files)."""
    return list(_load_file(found, configs or ConfigReader()))


def _load_file(found: FoundFile, configs: ConfigReader) -> Iterator[tuple[str, Document]]:
    data = read_found(found, MAX_FILE_BYTES)  # read once: everything below checks these bytes
    file, name, path_id = found.path, named(found.path), _path_id(found.path, found.root)
    suffix = file.suffix.lower()
    if suffix in OFFICE_SUFFIXES:
        from retrievers.formats.read import office_documents  # parsers load only when needed

        for where, draft in office_documents(found, data, path_id, configs):
            yield where, document_from_draft(draft, where, file.parent.name)
        return
    text = decoded_text(found, data)
    if suffix == ".jsonl":
        # Only "\n" ends a record: splitlines() would also split at U+2028, U+2029 and U+0085,
        # which JSON strings may hold unescaped (json.dumps(ensure_ascii=False) writes them).
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            where = f"{name}:{number}"
            record = _parse_json(line, where, names_line=True)
            yield (
                where,
                _document_from_record(record, where, found.source, fallback_id=f"{path_id}-{number}"),
            )
    elif suffix == ".json":
        data = _parse_json(text, name)
        records = data.get("documents") if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise UserInputError(f'{name}: expected a list of documents or {{"documents": [...]}}')
        for index, record in enumerate(records):
            where = f"{name}: documents[{index}]"
            yield (
                where,
                _document_from_record(record, where, found.source, fallback_id=f"{path_id}-{index}"),
            )
    else:
        yield name, _document_from_text_file(found, text, path_id)


def _parse_json(text: str, where: str, *, names_line: bool = False) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if names_line:  # a .jsonl line already names its line
            raise UserInputError(f"{where}: invalid JSON ({exc.msg}, column {exc.colno})") from None
        raise UserInputError(f"{where}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})") from None
    except RecursionError:  # nesting deeper than the stack: check_record's limit is far lower
        line = None if names_line else line_of_depth(text)
        at = f"{where}:{line}" if line else where
        raise UserInputError(f"{at}: invalid JSON (nested more than {MAX_JSON_DEPTH} levels deep)") from None
    except ValueError:  # an integer of more than 4,300 digits (Python's int conversion limit)
        raise UserInputError(f"{where}: invalid JSON (a number too long to be read)") from None


def _document_from_record(record: Any, where: str, source: str, *, fallback_id: str) -> Document:
    if not isinstance(record, dict):
        raise UserInputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    check_record(record, where)
    text = record.get("text", record.get("content"))
    if text is None:
        raise UserInputError(f"{where}: field 'text' (or 'content') is missing")
    if not isinstance(text, str):
        raise UserInputError(f"{where}: field 'text' must be a string")
    metadata: dict[str, Any] = {}
    explicit = record.get("metadata", {})
    if not isinstance(explicit, dict):
        raise UserInputError(f"{where}: field 'metadata' must be an object")
    metadata.update(explicit)
    metadata.update({k: v for k, v in record.items() if k not in _KNOWN_FIELDS})
    raw_id = record.get("id", fallback_id)
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise UserInputError(f"{where}: field 'id' must be a string or an integer")
    fields = {
        "id": str(raw_id),
        "title": record.get("title") or "",
        "text": text,
        "category": record.get("category") or "general",
        "lang": record.get("lang") or detect_language(text),
        "source": source,
        "metadata": {k: _scalar(v) for k, v in metadata.items() if v is not None},
        "roles": record.get("roles") or (),
        "tenant": record.get("tenant"),
    }
    hint = "" if "id" in record else "rename the file or give the record an id"
    return validated_document(fields, where, id_hint=hint)


def document_from_draft(draft: dict[str, Any], where: str, folder: str = "") -> Document:
    """A format reader's fields (`retrievers/formats/`, e.g. `html_documents` for a fetched page) as a
    validated Document, with the defaults a text file gets: category from the folder, language detected."""
    fields = dict(draft)
    fields["category"] = fields.get("category") or (folder if folder in CATEGORIES else "general")
    fields["lang"] = fields.get("lang") or detect_language(f"{fields['title']}\n{fields['text']}")
    return validated_document(fields, where)


def _document_from_text_file(found: FoundFile, text: str, path_id: str) -> Document:
    file = found.path
    front, body = _split_front_matter(text)
    hint = "" if front.get("id") else "rename the file or set `id:` in its front matter"
    title = front.pop("title", "") or _first_heading(body)
    parent = file.parent.name
    fields = {
        "id": front.pop("id", "") or path_id,
        "title": title or file.stem.replace("_", " ").replace("-", " "),
        "text": body,
        "category": front.pop("category", "") or (parent if parent in CATEGORIES else "general"),
        "lang": front.pop("lang", "") or detect_language(body),
        "source": found.source,
        "roles": _front_matter_list(front.pop("roles", "")),
        "tenant": front.pop("tenant", "") or None,
        "metadata": dict(front),
    }
    return validated_document(fields, named(file), id_hint=hint)


def validated_document(fields: dict[str, Any], where: str, *, id_hint: str = "") -> Document:
    try:
        return Document(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "document"
        if error["type"] == "missing":
            raise UserInputError(f"{where}: field {shown(field, 80)} is missing") from None
        hint = f" (the id comes from the file name: {id_hint})" if field == "id" and id_hint else ""
        raise UserInputError(f"{where}: field {shown(field, 80)} {_short(error['msg'])}{hint}") from None


def _short(message: str) -> str:
    message = message.removeprefix("Value error, ")
    return message[0].lower() + message[1:] if message else message


def _scalar(value: Any) -> MetadataValue:
    """Chroma stores scalar metadata: lists and objects are kept as JSON text."""
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _path_id(file: Path, root: Path) -> str:
    try:
        relative = file.relative_to(root)
    except ValueError:
        relative = Path(file.name)
    return relative.with_suffix("").as_posix()


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """`key: value` lines between `---` fences at the top of a Markdown or text file."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    front: dict[str, str] = {}
    for line in match.group(1).splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            key, value = line.split(":", 1)
            front[key.strip()] = value.strip().strip("\"'")
    return front, text[match.end() :]


def _front_matter_list(value: str) -> str:
    """`[staff, member]` or `staff, member` (front matter is `key: value` lines, not YAML)."""
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return ",".join(part.strip().strip("\"'") for part in value.split(","))


def _first_heading(text: str) -> str:
    match = _HEADING.search(text)
    return match.group(1).strip() if match else ""
