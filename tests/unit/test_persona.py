"""The persona file: the company's name and every fixed sentence come from data, checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import REPO, SAMPLE_PERSONA, write

from graph.nodes.small_talk import small_talk_reply
from graph.persona import load_persona
from retrievers.errors import UserInputError

SAMPLE = yaml.safe_load((REPO / "data" / "persona.yaml").read_text(encoding="utf-8"))


def persona_file(folder: Path, **changes: object) -> Path:
    raw = {**SAMPLE, **changes}
    return write(folder, "persona.yaml", yaml.safe_dump(raw, allow_unicode=True))


def test_the_company_is_filled_in_in_each_language() -> None:
    assert SAMPLE_PERSONA.company["en"] == "Kumo Audio"
    assert "{company}" not in SAMPLE_PERSONA.small_talk.greeting["ja"]
    assert "クモオーディオ" in SAMPLE_PERSONA.small_talk.greeting["ja"]
    assert "Kumo Audio" in SAMPLE_PERSONA.small_talk.greeting["en"]
    assert "Kumo Audio" in SAMPLE_PERSONA.instructions
    # {what} is filled when the sentence is said, not when the file is loaded
    assert "{what}" in SAMPLE_PERSONA.phrases.could_not_reach["en"]


def test_another_company_needs_only_another_file(tmp_path: Path) -> None:
    persona = load_persona(persona_file(tmp_path, company={"en": "Acme Audio", "ja": "アクメ音響"}))
    for language in ("en", "ja"):
        reply = small_talk_reply("hello", language, persona.small_talk)
        assert ("Acme Audio" if language == "en" else "アクメ音響") in reply
        assert "Kumo" not in reply and "クモ" not in reply


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"company": {"en": "Acme"}}, "company.ja: Field required"),
        ({"small_talk": {**SAMPLE["small_talk"], "thanks": {"en": "Thanks from {compnay}", "ja": "x"}}}, "{compnay}"),
        ({"phrases": {**SAMPLE["phrases"], "not_found": {"en": "No {what}", "ja": "x"}}}, "phrases.not_found.en"),
        ({"phrases": {**SAMPLE["phrases"], "filer": {"en": "x", "ja": "y"}}}, "phrases.filer: Extra inputs"),
        ({"instructions": "Hello {"}, "instructions: bad template"),
    ],
)
def test_mistakes_name_the_file_and_the_field(tmp_path: Path, changes: dict[str, object], expected: str) -> None:
    with pytest.raises(UserInputError) as caught:
        load_persona(persona_file(tmp_path, **changes))
    message = str(caught.value)
    assert str(tmp_path / "persona.yaml") in message and expected in message
    assert "\n" not in message


def test_a_file_that_is_not_a_persona_is_named_never_echoed(tmp_path: Path) -> None:
    secret = write(tmp_path, "secret.txt", "root:x:0:0:root:/root:/bin/bash\nAPI_KEY=sk-very-secret\n")
    with pytest.raises(UserInputError) as caught:
        load_persona(secret)
    assert str(secret) in str(caught.value) and "sk-very-secret" not in str(caught.value)
    with pytest.raises(UserInputError, match=r"PERSONA_FILE: .*does not exist"):
        load_persona(tmp_path / "missing.yaml")
    broken = write(tmp_path, "broken.yaml", "company: {en: Acme\nsecret: sk-very-secret\n")
    with pytest.raises(UserInputError, match=r"broken.yaml:\d+: invalid YAML") as caught:
        load_persona(broken)
    assert "sk-very-secret" not in str(caught.value)
