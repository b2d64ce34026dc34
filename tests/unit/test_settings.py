"""Settings: defaults, .env, and one clear line naming the variable on a wrong value."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.openai_server import Behaviour, FakeOpenAIServer
from helpers import FAKE_SECRETS

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
    monkeypatch.setenv("VOICERAG_ENV_FILE", ".env")  # the session reads none (tests/hermetic.py)
    monkeypatch.setenv("COLLECTION", "from-env")
    settings = load_settings()
    assert settings.top_k == 7 and settings.collection == "from-env"


def test_overlap_must_be_smaller_than_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUNK_SIZE", "200")
    monkeypatch.setenv("CHUNK_OVERLAP", "300")
    with pytest.raises(UserInputError, match=r"^CHUNK_OVERLAP:"):
        load_settings()


SECRETS = {name: FAKE_SECRETS[name] for name in ("OPENAI_API_KEY", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")}


def test_secrets_are_loaded_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in SECRETS.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings()
    # control: the values were read, so finding none of them below means something
    assert [getattr(settings, v.lower()).get_secret_value() for v in SECRETS] == list(SECRETS.values())
    renderings = {
        "repr": repr(settings),
        "str": str(settings),
        "f-string": f"{settings}",
        "model_dump_json": settings.model_dump_json(),
        "model_dump": str(settings.model_dump()),
    }
    shown = {how: [v for v in SECRETS.values() if v in text] for how, text in renderings.items()}
    assert shown == {how: [] for how in renderings}
    assert "**********" in renderings["model_dump_json"]  # there, but masked


def run_cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    voicerag = str(Path(sys.executable).parent / "voicerag")
    environment = {**os.environ, **SECRETS, **env}
    return subprocess.run([voicerag, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("debug", "exit_code"), [("0", 2), ("1", 1)])  # 1: a traceback, for debugging
def test_a_cli_error_shows_no_secret(tmp_path: Path, debug: str, exit_code: int) -> None:
    done = run_cli(tmp_path, "ask", "hello", TOP_K="zero", VOICERAG_DEBUG=debug)
    assert done.returncode == exit_code and "TOP_K" in done.stderr
    assert not [v for v in SECRETS.values() if v in done.stdout + done.stderr]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("REDIS_URL", "http://cache:hunter2@redis.internal:6379"), ("OPENAI_BASE_URL", "http://u:hunter2@h:99999/v1")],
)
def test_a_rejected_url_does_not_show_its_password(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(UserInputError) as error:
        load_settings()
    assert str(error.value).startswith(f"{variable}:") and "hunter2" not in str(error.value)


@pytest.mark.integration
def test_cli_answers_with_the_key_and_never_prints_it(tmp_path: Path) -> None:
    with FakeOpenAIServer(Behaviour(reply="Hello! How can I help?")) as server:
        done = run_cli(
            tmp_path,
            "ask",
            "hello",
            "--json",
            OPENAI_BASE_URL=server.base_url,
            EMBEDDINGS="use",
            VOICERAG_DATA_DIR=str(tmp_path / "data"),
            SOURCES_FILE="",
            DATABASE_QUERIES_FILE="",
        )
        authorizations = [r.headers.get("Authorization") for r in server.chat_requests]
    assert done.returncode == 0, done.stderr
    assert authorizations == [f"Bearer {SECRETS['OPENAI_API_KEY']}"]  # control: the key was used
    assert json.loads(done.stdout)["answer"] == "Hello! How can I help?"
    assert not [v for v in SECRETS.values() if v in done.stdout + done.stderr]


def test_env_example_documents_every_setting() -> None:
    """`.env.example` is the reference of every variable: a new setting must appear there."""
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    missing = sorted(name.upper() for name in Settings.model_fields if name.upper() not in documented)
    assert not missing, f".env.example lacks {missing}"


def test_the_openai_embedding_batching_settings_reach_the_model(tmp_path: Path) -> None:
    from retrievers.embeddings import OpenAIModel
    from voicerag.services import build_embeddings

    settings = load_settings(
        _env_file=None,
        voicerag_data_dir=tmp_path,
        embeddings="openai",
        openai_api_key="sk-test",
        openai_embedding_batch=7,
        openai_embedding_concurrency=2,
        openai_embedding_max_tokens=9000,
    )
    embeddings = build_embeddings(settings)
    try:
        model = embeddings.model
        assert isinstance(model, OpenAIModel)
        batching = model.batching
        assert (batching.batch_size, batching.concurrency, batching.max_tokens) == (7, 2, 9000)
    finally:
        embeddings.close()
