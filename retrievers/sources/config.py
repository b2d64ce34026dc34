"""Reading `data/sources.yaml` (or `SOURCES_FILE`): REST, GraphQL and real-time declarations.

Values may use `${VAR}` or `${VAR:-default}` to read the environment (secrets never live in the
file). A declaration that needs a variable that is not set is left out with a warning naming it,
so a missing API key disables one source instead of the whole agent. Anything else wrong in the
file stops start-up with one line naming the file and the field.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from retrievers.config_files import field_error, read_yaml
from retrievers.errors import UserInputError
from retrievers.http.address_guard import DEFAULT_INSECURE_HOSTS, NetworkPolicy
from retrievers.sources.base import Source
from retrievers.sources.declared import DeclaredSource, GraphQLSpec, RestSpec
from retrievers.sources.realtime import RealtimeFeedConfig, RealtimeSource
from retrievers.sources.unavailable import UnavailableSource

if TYPE_CHECKING:
    from retrievers.http.client import ResilientHttp

log = logging.getLogger(__name__)
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rest: list[RestSpec] = []
    graphql: list[GraphQLSpec] = []
    realtime: list[RealtimeFeedConfig] = []

    def hosts(self) -> set[str]:
        """Every host the declarations may call: the allow-list of the HTTP client."""
        specs: list[RestSpec | GraphQLSpec] = [*self.rest, *self.graphql]
        urls = [s.url for s in specs] + [s.url for s in self.realtime]
        urls += [s.auth.token_url for s in specs if s.auth and s.auth.token_url]
        return {urlparse(url).hostname or "" for url in urls} - {""}


@dataclass
class LoadedSources:
    declarations: SourcesFile
    disabled: dict[str, str] = field(default_factory=dict)  # name -> why (missing variable)
    disabled_entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> its declaration

    def unavailable_sources(self) -> list[Source[Any]]:
        """The disabled declarations as sources that are recognised but never called."""
        entries = self.disabled_entries
        return [UnavailableSource(entries.get(name, {"name": name}), why) for name, why in self.disabled.items()]


def _substitute(value: Any, environ: Mapping[str, str], missing: set[str]) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            missing.add(name)
            return ""

        return _VARIABLE.sub(replace, value)
    if isinstance(value, list):
        return [_substitute(v, environ, missing) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, environ, missing) for k, v in value.items()}
    return value


def load_sources_file(
    path: Path, environ: Mapping[str, str] | None = None, insecure_hosts: str | Iterable[str] = DEFAULT_INSECURE_HOSTS
) -> LoadedSources:
    """The declarations in `path` (a file that does not exist is an error naming SOURCES_FILE); plain
    http/ws only to development hosts (`insecure_hosts`, HTTP_INSECURE_HOSTS)."""
    environ = os.environ if environ is None else environ
    raw = read_yaml(path, what="sources file", variable="SOURCES_FILE") or {}
    if not isinstance(raw, dict):
        raise UserInputError(f"{path}: expected a mapping with rest, graphql and realtime lists")
    disabled: dict[str, str] = {}
    disabled_entries: dict[str, dict[str, Any]] = {}
    kept: dict[str, list[Any]] = {}
    for kind, entries in raw.items():
        if not isinstance(entries, list):
            raise UserInputError(f"{path}: {kind}: expected a list")
        kept[kind] = []
        for index, entry in enumerate(entries):
            missing: set[str] = set()
            value = _substitute(entry, environ, missing)
            if missing:
                name = entry.get("name", f"{kind}[{index}]") if isinstance(entry, dict) else f"{kind}[{index}]"
                disabled[str(name)] = f"{', '.join(sorted(missing))} not set"
                if isinstance(entry, dict):
                    disabled_entries[str(name)] = entry
                continue
            kept[kind].append(value)
    try:
        declarations = SourcesFile.model_validate(kept)
    except ValidationError as exc:
        raise field_error(path, exc) from None
    names = [s.name for s in declarations.rest] + [s.name for s in declarations.graphql]
    names += [s.name for s in declarations.realtime]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UserInputError(f"{path}: source name {duplicated[0]!r} is declared twice")
    _refuse_plain_urls(path, declarations, NetworkPolicy(insecure_hosts))
    for name, why in disabled.items():
        log.info("source %s is disabled: %s", name, why)
    return LoadedSources(declarations, disabled, disabled_entries)


def _refuse_plain_urls(path: Path, declarations: SourcesFile, network: NetworkPolicy) -> None:
    """A declared URL over plain http/ws to a host that is not a development host stops start-up."""
    specs: list[RestSpec | GraphQLSpec] = [*declarations.rest, *declarations.graphql]
    urls = [(s.name, "url", s.url) for s in [*specs, *declarations.realtime]]
    urls += [(s.name, "auth.token_url", s.auth.token_url) for s in specs if s.auth and s.auth.token_url]
    for name, where, url in urls:
        parts = urlsplit(url)
        reason = network.plain_refused(parts.scheme, parts.hostname or "")
        if reason is not None:
            raise UserInputError(f"{path}: source {name!r}: {where}: {reason}")


def build_declared_sources(declarations: SourcesFile, http: ResilientHttp | None) -> list[Source[Any]]:
    sources: list[Source[Any]] = []
    specs: list[RestSpec | GraphQLSpec] = [*declarations.rest, *declarations.graphql]
    sources.extend(DeclaredSource(spec, http) for spec in specs)
    for feed in declarations.realtime:
        sources.append(RealtimeSource(feed, http.network if http is not None else None))
    return sources
