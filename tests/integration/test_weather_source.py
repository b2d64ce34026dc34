"""The weather source against a local server that answers like Open-Meteo (never the real API),
through the real resilient HTTP client, and end to end through `voicerag ask --json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fakes.open_meteo import Failure, OpenMeteoServer
from fakes.redis_server import RedisServer
from langchain_core.messages import HumanMessage

from graph.builder import build_graph, warm_up
from graph.context import Context
from retrievers.http.cache import InMemoryResponseCache
from retrievers.http.client import ResilientHttp
from retrievers.sources.base import SourceContext, run_source
from retrievers.sources.weather import WeatherParams, WeatherSource
from retrievers.turn.failures import FetchError
from voicerag.services import build_services
from voicerag.settings import load_settings

pytestmark = pytest.mark.integration

JA = SourceContext(language="ja")
EN = SourceContext(language="en")


@pytest.fixture
def meteo() -> Iterator[OpenMeteoServer]:
    with OpenMeteoServer() as server:
        yield server


@pytest.fixture
async def weather(meteo: OpenMeteoServer) -> AsyncIterator[WeatherSource]:
    http = ResilientHttp(allowed_hosts=["127.0.0.1"], cache=InMemoryResponseCache())
    yield WeatherSource(http=http, geocoding_url=meteo.url, forecast_url=meteo.url)
    await http.aclose()


async def test_japanese_place_today_with_the_api_figures(weather: WeatherSource, meteo: OpenMeteoServer) -> None:
    fetched = await weather.fetch(WeatherParams(place="東京", day="today"), JA)
    assert fetched.summary == (
        "東京の現在の天気は曇り、気温は14.2°Cです。東京の今日の天気は曇り、最高気温16.1°C、最低気温8.4°C、降水確率は10%です。"
    )
    assert fetched.data["date"] == "2026-11-25" and fetched.data["current_temperature"] == 14.2
    assert meteo.requests[0] == ("/v1/search", {"name": "東京", "count": "1", "language": "ja", "format": "json"})
    forecast_query = meteo.requests[1][1]
    assert (forecast_query["latitude"], forecast_query["timezone"]) == ("35.6895", "auto")


async def test_english_place_tomorrow(weather: WeatherSource) -> None:
    fetched = await weather.fetch(WeatherParams(place="Sapporo", day="tomorrow"), EN)
    assert fetched.summary == "Sapporo tomorrow: light snow, from -4.6°C to 1.0°C, chance of rain 60%."
    assert "current_temperature" not in fetched.data


async def test_repeated_question_is_served_from_the_cache(weather: WeatherSource, meteo: OpenMeteoServer) -> None:
    await weather.fetch(WeatherParams(place="Osaka"), EN)
    again = await weather.fetch(WeatherParams(place="Osaka"), EN)
    assert again.cached and len(meteo.requests) == 2  # geocoding + forecast, once


async def test_unknown_place_is_an_error_result_not_an_invention(weather: WeatherSource) -> None:
    with pytest.raises(FetchError):
        await weather.fetch(WeatherParams(place="Atlantis"), EN)
    result = await run_source(weather, WeatherParams(place="Atlantis"), EN)
    assert result["status"] == "error" and result["summary"] == "I couldn't get the weather service just now."


async def test_a_server_error_is_retried(weather: WeatherSource, meteo: OpenMeteoServer) -> None:
    meteo.fail("/v1/forecast", Failure(status=503))
    result = await run_source(weather, WeatherParams(place="Tokyo"), EN)
    assert result["status"] == "ok" and meteo.count("/v1/forecast") == 2


async def test_malformed_forecast_is_reported(weather: WeatherSource, meteo: OpenMeteoServer) -> None:
    meteo.fail("/v1/forecast", Failure(body="{not json"))
    result = await run_source(weather, WeatherParams(place="Tokyo"), JA)
    assert result["status"] == "error" and result["summary"] == "天気予報サービスの情報を今取得できませんでした。"


def test_ask_json_shows_the_weather_result_and_its_timing(meteo: OpenMeteoServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REDIS_", "CHROMA_"))}
    env.update(
        VOICERAG_DATA_DIR=str(tmp_path), EMBEDDINGS="use", GEOCODING_API_URL=meteo.url, WEATHER_API_URL=meteo.url
    )
    voicerag = str(Path(sys.executable).parent / "voicerag")
    done = subprocess.run(
        [voicerag, "ask", "東京の天気は？", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    turn = json.loads(done.stdout)
    assert turn["route"] == {"kind": "lookup", "sources": ["knowledge_base", "weather"]}
    (result,) = turn["api_results"]
    assert result["source"] == "weather" and result["status"] == "ok" and result["cached"] is False
    assert result["data"]["temperature_max"] == 16.1 and result["elapsed_ms"] > 0
    assert "最高気温16.1°C" in turn["answer"]
    assert turn["timings_ms"]["sources"]["weather"] == result["elapsed_ms"]
    assert turn["timings_ms"]["call_apis"] >= result["elapsed_ms"]


@pytest.mark.quiet  # a time bound (tests/quiet.py)
async def test_a_turn_still_answers_uncached_when_redis_dies(
    meteo: OpenMeteoServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = load_settings(
        _env_file=None,
        voicerag_data_dir=tmp_path,
        embeddings="use",
        redis_url=redis_server.url,
        geocoding_api_url=meteo.url,
        weather_api_url=meteo.url,
    )
    services = build_services(settings)
    graph = build_graph(services)
    try:
        # As a worker does before its first call: a cold first turn loads the keyword index and the
        # model, and can keep the event loop busy past the Redis cache's 100 ms command bound.
        await warm_up(services)
        first = await graph.ainvoke({"messages": [HumanMessage("東京の天気は？")]}, context=Context())
        second = await graph.ainvoke({"messages": [HumanMessage("東京の天気は？")]}, context=Context())
        assert [first["api_results"][0]["cached"], second["api_results"][0]["cached"]] == [False, True]
        redis_server.stop()
        started = time.monotonic()
        third = await graph.ainvoke({"messages": [HumanMessage("東京の天気は？")]}, context=Context())
        assert time.monotonic() - started < 1.0
    finally:
        await services.aclose()
    (result,) = third["api_results"]
    assert result["status"] == "ok" and result["cached"] is False
    assert "最高気温16.1°C" in third["answer"]
