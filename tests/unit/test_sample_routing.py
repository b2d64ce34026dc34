"""The sample company's declared sources are chosen precisely, and a switched-off one is still
recognised (so the caller hears it is not available, not "I couldn't find that")."""

from __future__ import annotations

import pytest
from helpers import FAKE_SECRETS, REPO

from retrievers.sources.config import build_declared_sources, load_sources_file
from retrievers.sources.registry import SourceRegistry

CONFIGURED = {
    "CARRIER_API_KEY": FAKE_SECRETS["CARRIER_API_KEY"],
    "CRM_CLIENT_ID": "id",
    "CRM_CLIENT_SECRET": FAKE_SECRETS["CRM_CLIENT_SECRET"],
    "STATUS_WS_URL": "ws://127.0.0.1:9/feed",
}


def registry(environ: dict[str, str]) -> SourceRegistry:
    loaded = load_sources_file(REPO / "data" / "sources.yaml", environ)
    return SourceRegistry([*build_declared_sources(loaded.declarations, None), *loaded.unavailable_sources()])


def chosen(registry: SourceRegistry, question: str) -> list[str]:
    language = "ja" if any(ord(c) > 0x3000 for c in question) else "en"
    return [source.name for source, _ in registry.select(question, language, [])]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What's the status of my order KA-2026-000123?", []),  # the order system's, not the live status feed
        ("Is the online store working?", ["service_status"]),
        ("Is the app down?", ["service_status"]),
        ("Can I download the manual?", []),
        ("What are your working hours?", []),
        ("アプリは落ちていますか", ["service_status"]),
        ("Where is my parcel 1234-5678-9012?", ["parcel_tracking"]),
    ],
)
def test_sources_are_chosen_by_what_the_question_is_about(question: str, expected: list[str]) -> None:
    assert chosen(registry(CONFIGURED), question) == expected


def test_a_source_switched_off_for_a_missing_secret_is_still_recognised_and_never_called() -> None:
    off = registry({k: v for k, v in CONFIGURED.items() if k != "CARRIER_API_KEY"})
    source = off.get("parcel_tracking")
    assert source is not None and source.unavailable == "CARRIER_API_KEY not set"
    assert chosen(off, "Where is my parcel 1234-5678-9012?") == ["parcel_tracking"]
    assert source.labels["en"] == "the parcel tracking service"
