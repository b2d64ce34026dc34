"""weather: Open-Meteo geocoding + forecast (a real, keyless API), Japanese and English places.

Two calls through the shared resilient HTTP client: `/v1/search` turns a place name into
coordinates (cached for a day: places do not move), `/v1/forecast` gives the current weather
and two days of daily figures (cached for ten minutes). The summary states the figures as the API
gave them, with its units, and the conditions from the WMO weather code, in the turn's language.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from retrievers.follow_ups import follow_up_subject, is_short
from retrievers.language import Language
from retrievers.sources.base import Fetched, Source, SourceContext
from retrievers.turn.failures import FetchError

if TYPE_CHECKING:
    from retrievers.http.client import ResilientHttp

GEOCODE_TTL_S = 24 * 3600
FORECAST_TTL_S = 600

Day = Literal["today", "tomorrow"]


class WeatherParams(BaseModel):
    place: str = Field(min_length=1, max_length=80, description="City or place name, in any language")
    day: Day = Field("today", description="today or tomorrow")


# WMO weather interpretation codes (Open-Meteo documentation), both languages.
WMO: dict[int, tuple[str, str]] = {
    0: ("clear sky", "快晴"),
    1: ("mainly clear", "晴れ"),
    2: ("partly cloudy", "晴れ時々曇り"),
    3: ("overcast", "曇り"),
    45: ("fog", "霧"),
    48: ("freezing fog", "着氷性の霧"),
    51: ("light drizzle", "弱い霧雨"),
    53: ("drizzle", "霧雨"),
    55: ("dense drizzle", "強い霧雨"),
    56: ("light freezing drizzle", "弱い着氷性の霧雨"),
    57: ("freezing drizzle", "着氷性の霧雨"),
    61: ("light rain", "弱い雨"),
    63: ("rain", "雨"),
    65: ("heavy rain", "強い雨"),
    66: ("light freezing rain", "弱い着氷性の雨"),
    67: ("freezing rain", "着氷性の雨"),
    71: ("light snow", "弱い雪"),
    73: ("snow", "雪"),
    75: ("heavy snow", "大雪"),
    77: ("snow grains", "霧雪"),
    80: ("light showers", "弱いにわか雨"),
    81: ("showers", "にわか雨"),
    82: ("violent showers", "激しいにわか雨"),
    85: ("light snow showers", "弱いにわか雪"),
    86: ("snow showers", "にわか雪"),
    95: ("thunderstorm", "雷雨"),
    96: ("thunderstorm with hail", "ひょうを伴う雷雨"),
    99: ("thunderstorm with heavy hail", "激しいひょうを伴う雷雨"),
}


def conditions(code: Any, language: Language) -> str:
    names = WMO.get(int(code)) if isinstance(code, int | float) else None
    if names is None:
        return "unknown conditions" if language == "en" else "不明な天候"
    return names[0] if language == "en" else names[1]


# ------------------------------------------------------------------------------ question → params

_WEATHER_WORDS = re.compile(
    r"weather|forecast|temperature|rain|raining|umbrella|snow|sunny|hot|cold|天気|天候|気温|予報|雨|傘|雪|晴れ|暑い|寒い",
    re.IGNORECASE,
)
_TOMORROW = re.compile(r"tomorrow|明日|あした|あす", re.IGNORECASE)
_TODAY = re.compile(r"today|now|tonight|今日|きょう|今|現在", re.IGNORECASE)
_EN_PLACE = re.compile(r"\b(?:in|for|at|around)\s+((?:[A-Z][\w'-]*|[A-Za-z]+)(?:[ -][A-Z][\w'-]*)*)", re.IGNORECASE)
_EN_PLACE_BEFORE = re.compile(r"\b([A-Z][\w'-]*(?:\s[A-Z][\w'-]*)*)(?:'s)?\s+(?:weather|forecast|temperature)")
_JA_PLACE = re.compile(
    r"([\w\u3005\u30fc]+?)(?:の|は|で|って)(?:今日の|明日の|あしたの|あすの)?(?:天気|天候|気温|予報|雨|雪)"
)
_NOT_PLACES = frozenset(
    "今日 明日 あした あす きょう 今 現在 週末 今週 the today tomorrow weather what how is it there".split()
)


def _clean_place(raw: str) -> str | None:
    place = raw.strip(" 、。,.?？!！「」\"'")
    for prefix in ("今日の", "明日の", "あしたの", "あすの", "今の", "現在の"):
        place = place.removeprefix(prefix)
    place = re.sub(r"^(?:the|tomorrow|today)\s+", "", place, flags=re.IGNORECASE)
    place = re.sub(r"\s+(?:tomorrow|today|tonight|now|this \w+)$", "", place, flags=re.IGNORECASE)
    if not place or place.lower() in _NOT_PLACES or len(place) > 40:
        return None
    return place


def find_place(question: str) -> str | None:
    """The place a weather question names, or None."""
    text = unicodedata.normalize("NFKC", question)
    for pattern in (_JA_PLACE, _EN_PLACE_BEFORE, _EN_PLACE):
        for match in pattern.finditer(text):
            place = _clean_place(match.group(1))
            if place:
                return place
    return None


def find_day(question: str) -> Day | None:
    if _TOMORROW.search(question):
        return "tomorrow"
    if _TODAY.search(question):
        return "today"
    return None


@dataclass
class WeatherSource(Source[WeatherParams]):
    """Current weather and today's/tomorrow's forecast for a place."""

    name = "weather"
    description = "Current weather and the forecast for today or tomorrow for a city or place."
    labels = {"en": "the weather service", "ja": "天気予報サービス"}  # noqa: RUF012 - constants, never mutated
    examples = {  # noqa: RUF012
        "en": ["What's the weather in Tokyo?", "Will it rain in Osaka tomorrow?"],
        "ja": ["東京の天気は？", "明日の札幌は雪ですか"],
    }
    params_model = WeatherParams

    http: ResilientHttp | None = None
    geocoding_url: str = "https://geocoding-api.open-meteo.com"
    forecast_url: str = "https://api.open-meteo.com"
    default_place: str | None = None  # used when a weather question names no place
    ttl_s: float = FORECAST_TTL_S
    timeout_s: float = 1.2
    aliases: dict[str, str] = field(default_factory=dict)

    def extract(self, question: str, language: Language, earlier: list[str]) -> WeatherParams | None:
        place = find_place(question)
        day = find_day(question)
        if _WEATHER_WORDS.search(question):
            place = place or self._place_from(earlier) or self.default_place
            return WeatherParams(place=place, day=day or "today") if place else None
        # A follow-up to a weather question: "明日は？", "and in Osaka?", "what about tomorrow?"
        if earlier and _WEATHER_WORDS.search(earlier[-1]) and _is_follow_up(question):
            previous = find_place(earlier[-1]) or self.default_place
            new_place = _follow_up_place(question)
            place = new_place or previous
            if place:
                return WeatherParams(place=place, day=day or find_day(earlier[-1]) or "today")
        return None

    def _place_from(self, earlier: list[str]) -> str | None:
        return next((p for p in (find_place(q) for q in reversed(earlier[-3:])) if p), None)

    async def fetch(self, params: WeatherParams, ctx: SourceContext) -> Fetched:
        if self.http is None:
            raise FetchError("unreachable", "no HTTP client configured")
        place = await self._geocode(params.place, ctx.language)
        forecast = await self.http.request_json(
            "GET",
            f"{self.forecast_url.rstrip('/')}/v1/forecast",
            params={
                "latitude": place["latitude"],
                "longitude": place["longitude"],
                "current": "temperature_2m,weather_code",
                "daily": "weather_code,temperature_2m_max,temperature_2m_min,precipitation_probability_max",
                "timezone": "auto",
                "forecast_days": 2,
            },
            cache_ttl_s=self.ttl_s,
            cache_namespace=self.name,
            timeout_s=self.timeout_s,
        )
        data = _forecast_data(place, forecast.data, params.day)
        return Fetched(data=data, summary=weather_summary(data, ctx.language), cached=forecast.cached)

    async def _geocode(self, name: str, language: Language) -> dict[str, Any]:
        assert self.http is not None
        response = await self.http.request_json(
            "GET",
            f"{self.geocoding_url.rstrip('/')}/v1/search",
            params={"name": self.aliases.get(name, name), "count": 1, "language": language, "format": "json"},
            cache_ttl_s=GEOCODE_TTL_S,
            cache_namespace=self.name,
            timeout_s=self.timeout_s,
        )
        results = response.data.get("results") if isinstance(response.data, dict) else None
        if not results:
            raise FetchError("bad_response", f"no place called {name!r}")
        first = results[0]
        if not isinstance(first, dict) or "latitude" not in first or "longitude" not in first:
            raise FetchError("bad_response", "geocoding result without coordinates")
        return first


def _is_follow_up(question: str) -> bool:
    short = is_short(question, ja_chars=20, en_words=5)
    return short and (follow_up_subject(question) is not None or find_day(question) is not None)


def _follow_up_place(question: str) -> str | None:
    subject = follow_up_subject(question)
    if subject is None:
        return None
    place = _clean_place(subject)
    return None if place is None or find_day(place) else place


def _forecast_data(place: dict[str, Any], forecast: Any, day: Day) -> dict[str, Any]:
    """The figures the answer needs, as the API gave them (with its units)."""
    if not isinstance(forecast, dict) or not isinstance(forecast.get("daily"), dict):
        raise FetchError("bad_response", "forecast without daily data")
    daily, units = forecast["daily"], forecast.get("daily_units", {})
    index = 0 if day == "today" else 1
    try:
        data: dict[str, Any] = {
            "place": place.get("name"),
            "country": place.get("country"),
            "day": day,
            "date": daily["time"][index],
            "weather_code": daily["weather_code"][index],
            "temperature_max": daily["temperature_2m_max"][index],
            "temperature_min": daily["temperature_2m_min"][index],
            "precipitation_probability_max": (daily.get("precipitation_probability_max") or [None, None])[index],
            "temperature_unit": units.get("temperature_2m_max", "°C"),
        }
    except (KeyError, IndexError, TypeError) as exc:
        raise FetchError("bad_response", f"forecast missing {exc}") from None
    current = forecast.get("current")
    if day == "today" and isinstance(current, dict) and "temperature_2m" in current:
        data["current_temperature"] = current["temperature_2m"]
        data["current_weather_code"] = current.get("weather_code")
    return data


def weather_summary(data: dict[str, Any], language: Language) -> str:
    """One or two spoken sentences with the API's figures."""
    unit = data["temperature_unit"]
    rain = data.get("precipitation_probability_max")
    place = data["place"]
    if language == "ja":
        day = "今日" if data["day"] == "today" else "明日"
        text = ""
        if "current_temperature" in data:
            now = conditions(data.get("current_weather_code"), "ja")
            text += f"{place}の現在の天気は{now}、気温は{data['current_temperature']}{unit}です。"
        text += (
            f"{place}の{day}の天気は{conditions(data['weather_code'], 'ja')}、"
            f"最高気温{data['temperature_max']}{unit}、最低気温{data['temperature_min']}{unit}"
        )
        text += f"、降水確率は{rain}%です。" if rain is not None else "です。"
        return text
    day = "today" if data["day"] == "today" else "tomorrow"
    text = ""
    if "current_temperature" in data:
        now = conditions(data.get("current_weather_code"), "en")
        text += f"In {place} it is {data['current_temperature']}{unit} now, {now}. "
    text += (
        f"{place} {day}: {conditions(data['weather_code'], 'en')}, "
        f"from {data['temperature_min']}{unit} to {data['temperature_max']}{unit}"
    )
    text += f", chance of rain {rain}%." if rain is not None else "."
    return text
