"""The router on tests/data/routing_cases.jsonl: small talk or a lookup, with the sample company's
sources (weather, the database, data/sources.yaml) and both offline models, without an LLM.

Each case goes through the real `route_query` node (`graph/nodes/route.py`): the small-talk rules,
the sources' rules, then embedding similarity to example utterances for short turns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import offline_services
from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from graph.context import Context
from graph.nodes.common import Node
from graph.nodes.route import make_route_query

pytestmark = pytest.mark.integration  # the embedding models

CASES = [
    json.loads(line)
    for line in (Path(__file__).resolve().parents[1] / "data" / "routing_cases.jsonl").read_text("utf-8").splitlines()
    if line.strip()
]


# Cases the product gets wrong today (the case is right): strict, so a fix makes them fail until removed.
MISROUTED: dict[str, str] = {}


def labelled(case: dict[str, str]) -> Any:
    reason = MISROUTED.get(case["text"])
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(case, marks=marks, id=case["text"])


@pytest.fixture(scope="module", params=["use", "e5"])
def route_query(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    services = offline_services(tmp_path_factory.mktemp(f"routing-{request.param}"), request.param)
    assert "database_query" in services.sources.names  # the sample sources: routing only extracts, calls none
    yield make_route_query(services)


async def route(route_query: Node, text: str) -> dict[str, Any]:
    update = await route_query({"messages": [HumanMessage(text)]}, Runtime(context=Context()))
    return dict(update["route"])


def test_the_cases_cover_both_kinds_and_both_languages() -> None:
    assert len(CASES) == 37
    kinds = {(case["kind"], any(ord(c) > 0x3000 for c in case["text"])) for case in CASES}
    assert kinds == {("small_talk", False), ("small_talk", True), ("lookup", False), ("lookup", True)}


@pytest.mark.parametrize("case", [labelled(case) for case in CASES])
async def test_each_case_is_routed_as_labelled(route_query: Node, case: dict[str, str]) -> None:
    decided = await route(route_query, case["text"])
    assert decided["kind"] == case["kind"], decided
    if decided["kind"] == "lookup":
        assert decided["sources"][0] == "knowledge_base"  # a lookup always searches the knowledge base
