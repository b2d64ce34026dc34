"""Weather questions → place and day, without an LLM, in both languages, follow-ups included."""

from __future__ import annotations

import pytest

from retrievers.sources.weather import WeatherSource, conditions, weather_summary

SOURCE = WeatherSource()


@pytest.mark.parametrize(
    ("question", "earlier", "place", "day"),
    [
        ("東京の天気は？", [], "東京", "today"),
        ("明日の大阪の天気は？", [], "大阪", "tomorrow"),
        ("札幌は雪ですか", [], "札幌", "today"),
        ("What's the weather in Tokyo?", [], "Tokyo", "today"),
        ("Will it rain in New York tomorrow?", [], "New York", "tomorrow"),
        ("Sapporo weather tomorrow", [], "Sapporo", "tomorrow"),
        ("明日は？", ["東京の天気は？"], "東京", "tomorrow"),
        ("and tomorrow?", ["What's the weather in Tokyo?"], "Tokyo", "tomorrow"),
        ("and in Osaka?", ["What's the weather in Tokyo?"], "Osaka", "today"),
        ("大阪は？", ["東京の天気は？"], "大阪", "today"),
    ],
)
def test_place_and_day_are_found(question: str, earlier: list[str], place: str, day: str) -> None:
    params = SOURCE.extract(question, "ja", earlier)
    assert params is not None and (params.place, params.day) == (place, day)


@pytest.mark.parametrize(
    ("question", "earlier"),
    [
        ("What is the warranty on the KH-300?", []),
        ("返品できる期間は？", []),
        ("明日は？", ["返品できる期間は？"]),  # a follow-up to something else
        ("天気を教えて", []),  # no place and no default place
    ],
)
def test_other_questions_do_not_call_the_weather(question: str, earlier: list[str]) -> None:
    assert SOURCE.extract(question, "ja", earlier) is None


def test_a_default_place_answers_questions_that_name_none() -> None:
    params = WeatherSource(default_place="Tokyo").extract("天気を教えて", "ja", [])
    assert params is not None and params.place == "Tokyo"


def test_summary_states_the_api_figures_in_each_language() -> None:
    data = {
        "place": "東京", "day": "tomorrow", "weather_code": 61, "temperature_max": 13.0, "temperature_min": 9.9,
        "precipitation_probability_max": 80, "temperature_unit": "°C",
    }  # fmt: skip
    assert weather_summary(data, "ja") == "東京の明日の天気は弱い雨、最高気温13.0°C、最低気温9.9°C、降水確率は80%です。"
    english = weather_summary({**data, "place": "Tokyo"}, "en")
    assert english == "Tokyo tomorrow: light rain, from 9.9°C to 13.0°C, chance of rain 80%."
    assert conditions(99, "en") == "thunderstorm with heavy hail" and conditions(1234, "ja") == "不明な天候"
