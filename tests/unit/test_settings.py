"""Settings: defaults, .env, and one clear line naming the variable on a wrong value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from retrievers.errors import UserInputError
from voicerag.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("EMBEDDINGS", "TOP_K", "COLLECTION", "CHROMA_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "CHUNK_SIZE"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_need_no_keys_and_no_servers() -> None:
    settings = load_settings()
    assert settings.embeddings == "e5" and settings.chroma_url is None and not settings.chat_model_configured


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EMBEDDINGS", "bert"),
        ("TOP_K", "zero"),
        ("TOP_K", "0"),
        ("CHROMA_URL", "not a url"),
        ("COLLECTION", "x"),
        ("COLLECTION", "bad-"),
        ("CHUNK_SIZE", "10"),
        ("FUSION_DENSE_WEIGHT", "2"),
    ],
)
def test_a_wrong_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(UserInputError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith(f"{variable}:") and "\n" not in message


def test_env_file_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TOP_K=7\nCOLLECTION=from-dotenv\n")
    monkeypatch.setenv("COLLECTION", "from-env")
    settings = load_settings()
    assert settings.top_k == 7 and settings.collection == "from-env"


def test_overlap_must_be_smaller_than_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUNK_SIZE", "200")
    monkeypatch.setenv("CHUNK_OVERLAP", "300")
    with pytest.raises(UserInputError, match=r"^CHUNK_OVERLAP:"):
        load_settings()


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    settings = load_settings()
    assert settings.chat_model_configured and "sk-secret-value" not in repr(settings)


def test_env_example_documents_every_setting() -> None:
    """`.env.example` is the reference of every variable: a new setting must appear there."""
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    missing = sorted(name.upper() for name in Settings.model_fields if name.upper() not in documented)
    assert not missing, f".env.example lacks {missing}"
