"""Who the agent is and what it says in fixed sentences: `data/persona.yaml` (or `PERSONA_FILE`).

Everything the caller hears that is not composed by a model — "nothing found", the extractive
lead-in, the filler, the apologies, small-talk replies — and the company's name come from this
file, so another company deploys the product by editing data, not code. `{company}` is filled in
when the file is loaded; `{what}` (the lookups that failed) when the sentence is said.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from retrievers.config_files import field_error, read_yaml
from retrievers.errors import UserInputError
from retrievers.language import Language

SmallTalkKind = Literal["greeting", "thanks", "goodbye", "how_are_you", "other"]
# Fields filled when the sentence is said, not when the file is loaded.
_LATE_FIELDS = {
    name: {"what"} for name in ("could_not_reach", "took_too_long", "not_available", "needs_verified_caller")
}


class Phrase(BaseModel):
    """One sentence in both languages; `phrase[language]` picks one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    en: str
    ja: str

    def __getitem__(self, language: Language) -> str:
        return self.ja if language == "ja" else self.en


class Phrases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    not_found: Phrase
    extractive_prefix: Phrase
    other_language: Phrase
    fallback_prefix: Phrase
    offer_details: Phrase
    no_more_details: Phrase
    cut_short: Phrase
    could_not_reach: Phrase
    took_too_long: Phrase
    not_available: Phrase
    filler: Phrase
    turn_failed: Phrase
    did_not_catch: Phrase
    knowledge_base_label: Phrase
    rate_limited: Phrase
    question_too_long: Phrase
    needs_verified_caller: Phrase


class SmallTalkReplies(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    greeting: Phrase
    thanks: Phrase
    goodbye: Phrase
    how_are_you: Phrase
    other: Phrase

    def reply(self, kind: SmallTalkKind | None, language: Language) -> str:
        return getattr(self, kind or "other")[language]


class Persona(BaseModel):
    """The company as the agent presents it. Built by `load_persona`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    company: Phrase
    knowledge_base: str  # what the knowledge base holds (the LLM router's tool description)
    instructions: str  # LiveKit's system message for the session
    phrases: Phrases
    small_talk: SmallTalkReplies


def load_persona(path: Path) -> Persona:
    """Read and check the persona file; `{company}` is filled in everywhere."""
    raw = read_yaml(path, what="persona file", variable="PERSONA_FILE")
    if not isinstance(raw, dict):
        raise UserInputError(f"{path}: expected a mapping with company, instructions, phrases and small_talk")
    try:
        checked = Persona.model_validate(raw)  # the shape first, so errors name the whole field path
    except ValidationError as exc:
        raise field_error(path, exc) from None
    _check_fields(raw, path)
    return Persona.model_validate(_fill_company(raw, checked.company, None))


def _check_fields(value: Any, path: Path, where: tuple[str, ...] = ()) -> None:
    """Every `{field}` must be one the code fills: a typo would otherwise be spoken, or crash a turn."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_fields(item, path, (*where, str(key)))
    elif isinstance(value, str):
        allowed = {"company"} | next((fields for name, fields in _LATE_FIELDS.items() if name in where), set())
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise UserInputError(f"{path}: {'.'.join(where)}: bad template ({exc})") from None
        if unknown := sorted(used - allowed):
            raise UserInputError(
                f"{path}: {'.'.join(where)}: unknown field {{{unknown[0]}}} (allowed: {sorted(allowed)})"
            )


def _fill_company(value: Any, company: Phrase, language: Language | None) -> Any:
    """`{company}` in the language of the sentence (English outside en/ja pairs); `{what}` kept."""
    if isinstance(value, dict):
        return {
            key: _fill_company(item, company, key if key in ("en", "ja") else language) for key, item in value.items()
        }
    if isinstance(value, str):
        return value.format(company=company[language or "en"], what="{what}")
    return value
