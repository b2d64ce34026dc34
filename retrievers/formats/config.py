"""How a table file (CSV, XLSX) becomes documents, and who may see office files: `ingest.yaml`.

A folder's `ingest.yaml` applies to the office files in that folder; a sidecar `<file>.ingest.yaml`
(e.g. `prices.csv.ingest.yaml`) to that one file, and wins over the folder's for the keys it sets.
Both are read as the documents are (`read_found`: no link followed), and validated: an unknown key or
a bad value is one line naming the config file and the field.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from retrievers.access import IDENTIFIER_RULE, is_identifier, split_roles
from retrievers.config_files import field_error
from retrievers.document_files import FoundFile, named, read_found
from retrievers.errors import UserInputError
from retrievers.language import Language

FOLDER_CONFIG = "ingest.yaml"
SIDECAR_SUFFIX = ".ingest.yaml"
MAX_CONFIG_BYTES = 64 * 1024

Unit = Literal["row", "sheet", "file"]


class IngestConfig(BaseModel):
    """What one config file sets; unset keys fall back to the folder's config, then the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: Unit = "row"  # CSV/XLSX: one document per row, per sheet, or for the whole file
    title_column: str | None = Field(None, min_length=1)  # default: the first column
    id_column: str | None = Field(None, min_length=1)  # default: the row number
    category: Literal["product", "support", "general"] | None = None  # default: from the folder name
    lang: Language | None = None  # default: detected from the text
    roles: tuple[str, ...] = ()
    tenant: str | None = None

    @field_validator("roles", mode="before")
    @classmethod
    def _roles(cls, value: object) -> tuple[str, ...]:
        if not isinstance(value, str | list | tuple) or not all(isinstance(role, str) for role in value):
            raise ValueError("must be a list of roles or comma-separated roles")
        roles = split_roles(value)
        bad = next((role for role in roles if not is_identifier(role)), None)
        if bad is not None:
            raise ValueError(f"{bad!r} is not a plain identifier ({IDENTIFIER_RULE})")
        return roles

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and not is_identifier(value):
            raise ValueError(f"{value!r} is not a plain identifier ({IDENTIFIER_RULE})")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class FileConfig:
    """The config that applies to one file, and which config file set each key (for messages)."""

    values: IngestConfig
    set_by: dict[str, str]  # key → config file name, as shown in messages

    def where(self, key: str) -> str:
        return f"{self.set_by[key]}: {key}"


class ConfigReader:
    """Finds and reads the configs of the files of one `load_documents` call (each folder's once)."""

    def __init__(self) -> None:
        self._read: dict[Path, IngestConfig | None] = {}

    def for_file(self, found: FoundFile) -> FileConfig:
        values: dict[str, Any] = {}
        set_by: dict[str, str] = {}
        for config_path in (found.path.parent / FOLDER_CONFIG, found.path.with_name(found.path.name + SIDECAR_SUFFIX)):
            config = self._config(found, config_path)
            if config is not None:
                explicit = config.model_dump(exclude_unset=True)
                values |= explicit
                set_by |= dict.fromkeys(explicit, named(config_path))
        return FileConfig(IngestConfig(**values), set_by)

    def _config(self, found: FoundFile, path: Path) -> IngestConfig | None:
        if path not in self._read:
            self._read[path] = _read_config(_beside(found, path)) if os.path.lexists(path) else None
        return self._read[path]


def is_config_file(path: Path) -> bool:
    return path.name == FOLDER_CONFIG or path.name.endswith(SIDECAR_SUFFIX)


def _beside(found: FoundFile, path: Path) -> FoundFile:
    """The config next to `found`, opened as safely as `found` itself (no link followed below its folder)."""
    if found.beneath is None:
        return FoundFile(path, found.root, path.resolve().as_posix(), None)
    folder, parts = found.beneath
    return FoundFile(
        path, found.root, folder.joinpath(*parts[:-1], path.name).as_posix(), (folder, (*parts[:-1], path.name))
    )


def _read_config(found: FoundFile) -> IngestConfig:
    name = named(found.path)
    data = read_found(found, MAX_CONFIG_BYTES)
    try:
        parsed = yaml.safe_load(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UserInputError(f"{name}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise UserInputError(f"{where}: invalid YAML ({getattr(exc, 'problem', None) or 'cannot parse'})") from None
    if parsed is None:
        return IngestConfig()
    if not isinstance(parsed, dict):
        raise UserInputError(f"{name}: expected `key: value` lines (unit, title_column, id_column, category, ...)")
    try:
        return IngestConfig(**{str(key): value for key, value in parsed.items()})
    except ValidationError as exc:
        raise field_error(Path(name), exc) from None
