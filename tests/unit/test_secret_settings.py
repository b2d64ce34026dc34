"""Secrets in settings: URL passwords hidden everywhere but where a client connects; plain http only to
development hosts (HTTP_INSECURE_HOSTS), one line naming the variable otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FAKE_SECRETS

from retrievers.errors import UserInputError
from retrievers.secret_url import hide_password
from voicerag.audit import audit_database_url
from voicerag.settings import load_settings

URLS = {
    "DATABASE_URL": f"postgresql://app:{FAKE_SECRETS['DATABASE_PASSWORD']}@db.internal:5432/company",
    "REDIS_URL": f"rediss://:{FAKE_SECRETS['REDIS_PASSWORD']}@cache.internal:6380/0",
    "AUDIT_DATABASE_URL": f"postgresql://audit:{FAKE_SECRETS['AUDIT_DATABASE_PASSWORD']}@db.internal/audit",
    "CHROMA_URL": f"https://kb:{FAKE_SECRETS['CHROMA_PASSWORD']}@chroma.internal:8000",
}
PASSWORDS = [FAKE_SECRETS[name] for name in ("DATABASE_PASSWORD", "REDIS_PASSWORD", "AUDIT_DATABASE_PASSWORD")]
PASSWORDS.append(FAKE_SECRETS["CHROMA_PASSWORD"])


@pytest.fixture(autouse=True)
def in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


def test_url_passwords_are_read_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in URLS.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings()
    # Control: each URL is there whole for the client that connects with it.
    assert settings.database_url is not None and settings.database_url.get_secret_value() == URLS["DATABASE_URL"]
    assert audit_database_url(settings) == URLS["AUDIT_DATABASE_URL"]
    renderings = {
        "repr": repr(settings),
        "str": str(settings),
        "model_dump": str(settings.model_dump()),
        "model_dump_json": settings.model_dump_json(),
        "field f-string": f"{settings.redis_url} {settings.chroma_url!r}",
    }
    assert {how: [p for p in PASSWORDS if p in text] for how, text in renderings.items()} == {
        how: [] for how in renderings
    }
    # Which server is still said, for a log line or an error: only the password is hidden.
    assert str(settings.redis_url) == "rediss://:***@cache.internal:6380/0"
    assert repr(settings.database_url) == "SecretUrl('postgresql://app:***@db.internal:5432/company')"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("redis://:pw@h:6379", "redis://:***@h:6379"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        (
            "postgresql://h/db?user=u&password=pw&sslmode=require",
            "postgresql://h/db?user=u&password=***&sslmode=require",
        ),
        ("https://h/v1?api_key=k&q=1", "https://h/v1?api_key=***&q=1"),
    ],
)
def test_hide_password(url: str, shown: str) -> None:
    assert hide_password(url) == shown


def test_a_wrong_redis_url_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"http://:{FAKE_SECRETS['REDIS_PASSWORD']}@cache.internal")
    with pytest.raises(UserInputError) as caught:
        load_settings()
    assert str(caught.value).startswith("REDIS_URL: Value error, must start with redis:// or rediss://")
    assert FAKE_SECRETS["REDIS_PASSWORD"] not in str(caught.value) and "***" in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "url", "host"),
    [
        ("WEATHER_API_URL", "http://api.open-meteo.com", "api.open-meteo.com"),
        ("GEOCODING_API_URL", "http://10.0.0.8:8080", "10.0.0.8"),
        ("OPENAI_BASE_URL", "http://llm.internal:8000/v1", "llm.internal"),
        ("CHROMA_URL", "http://chroma.internal:8000", "chroma.internal"),
        ("LIVEKIT_URL", "ws://livekit.example.com", "livekit.example.com"),
    ],
)
def test_plain_http_to_another_host_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str, host: str
) -> None:
    monkeypatch.setenv(variable, url)
    with pytest.raises(UserInputError) as caught:
        load_settings()
    scheme = url.split(":")[0]
    assert str(caught.value) == (
        f"{variable}: plain {scheme}:// to {host} is refused: use {scheme}s://, or list the host in HTTP_INSECURE_HOSTS"
    )
    # Control: the same URL with the host listed as a development host, or over TLS, is accepted.
    monkeypatch.setenv("HTTP_INSECURE_HOSTS", f"localhost,{host}")
    load_settings()
    monkeypatch.delenv("HTTP_INSECURE_HOSTS")
    monkeypatch.setenv(variable, url.replace(f"{scheme}://", f"{scheme}s://"))
    load_settings()


def test_development_hosts_default_to_loopback_and_a_bad_entry_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEATHER_API_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("CHROMA_URL", "http://localhost:8000")
    assert load_settings().http_insecure_hosts == "localhost,127.0.0.1,::1"
    monkeypatch.setenv("HTTP_INSECURE_HOSTS", "localhost, http://dev")
    with pytest.raises(UserInputError, match=r"^HTTP_INSECURE_HOSTS: Value error, 'http://dev' is not a host name"):
        load_settings()
