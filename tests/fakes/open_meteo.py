"""A local server that answers like Open-Meteo's geocoding and forecast APIs (the real paths and
JSON shapes), for tests: the real API is never called. Scriptable failures per path."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from fakes.threaded import ThreadedServer

PLACES = {
    "tokyo": {"en": "Tokyo", "ja": "東京", "latitude": 35.6895, "longitude": 139.69171, "country": ("Japan", "日本")},
    "東京": {"en": "Tokyo", "ja": "東京", "latitude": 35.6895, "longitude": 139.69171, "country": ("Japan", "日本")},
    "osaka": {
        "en": "Osaka",
        "ja": "大阪市",
        "latitude": 34.69374,
        "longitude": 135.50218,
        "country": ("Japan", "日本"),
    },
    "大阪": {"en": "Osaka", "ja": "大阪市", "latitude": 34.69374, "longitude": 135.50218, "country": ("Japan", "日本")},
    "sapporo": {
        "en": "Sapporo",
        "ja": "札幌市",
        "latitude": 43.06417,
        "longitude": 141.34694,
        "country": ("Japan", "日本"),
    },
    "札幌": {
        "en": "Sapporo",
        "ja": "札幌市",
        "latitude": 43.06417,
        "longitude": 141.34694,
        "country": ("Japan", "日本"),
    },
}
# Daily figures per latitude: today, tomorrow.
FORECASTS = {
    35.6895: {"code": [3, 61], "max": [16.1, 13.0], "min": [8.4, 9.9], "rain": [10, 80], "now": (14.2, 3)},
    34.69374: {"code": [1, 2], "max": [18.3, 17.5], "min": [9.1, 10.2], "rain": [0, 5], "now": (15.8, 1)},
    43.06417: {"code": [73, 71], "max": [2.4, 1.0], "min": [-3.1, -4.6], "rain": [70, 60], "now": (0.5, 73)},
}


@dataclass
class Failure:
    status: int = 200
    delay_s: float = 0.0
    body: str | None = None  # raw body (e.g. malformed JSON)


@dataclass
class OpenMeteoServer(ThreadedServer):
    failures: dict[str, list[Failure]] = field(default_factory=dict)  # path -> failures to serve first
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def fail(self, path: str, *failures: Failure) -> None:
        self.failures.setdefault(path, []).extend(failures)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/search", self._search)
        app.router.add_get("/v1/forecast", self._forecast)

    async def _scripted(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.path, dict(request.query)))
        queue = self.failures.get(request.path)
        if not queue:
            return None
        failure = queue.pop(0)
        await asyncio.sleep(failure.delay_s)
        if failure.body is not None or failure.status != 200:
            body = failure.body if failure.body is not None else '{"error": true, "reason": "scripted failure"}'
            return web.Response(status=failure.status, text=body, content_type="application/json")
        return None

    async def _search(self, request: web.Request) -> web.Response:
        if (scripted := await self._scripted(request)) is not None:
            return scripted
        name = request.query.get("name", "").strip().lower()
        language = request.query.get("language", "en")
        place = PLACES.get(name)
        if place is None:
            return web.json_response({"generationtime_ms": 0.3})  # the real API omits "results"
        result = {
            "id": 1850147,
            "name": place["ja" if language == "ja" else "en"],
            "latitude": place["latitude"],
            "longitude": place["longitude"],
            "elevation": 40.0,
            "country_code": "JP",
            "timezone": "Asia/Tokyo",
            "country": place["country"][1 if language == "ja" else 0],
        }
        return web.json_response({"results": [result], "generationtime_ms": 0.9})

    async def _forecast(self, request: web.Request) -> web.Response:
        if (scripted := await self._scripted(request)) is not None:
            return scripted
        try:
            latitude = float(request.query["latitude"])
            float(request.query["longitude"])
        except (KeyError, ValueError):
            return web.json_response({"error": True, "reason": "Parameter 'latitude' is missing"}, status=400)
        figures = FORECASTS.get(latitude) or FORECASTS[35.6895]
        return web.json_response(
            {
                "latitude": latitude,
                "timezone": "Asia/Tokyo",
                "timezone_abbreviation": "JST",
                "current_units": {"time": "iso8601", "temperature_2m": "°C", "weather_code": "wmo code"},
                "current": {"time": "2026-11-25T15:00", "interval": 900, "temperature_2m": figures["now"][0],
                            "weather_code": figures["now"][1]},
                "daily_units": {"time": "iso8601", "weather_code": "wmo code", "temperature_2m_max": "°C",
                                "temperature_2m_min": "°C", "precipitation_probability_max": "%"},
                "daily": {"time": ["2026-11-25", "2026-11-26"], "weather_code": figures["code"],
                          "temperature_2m_max": figures["max"], "temperature_2m_min": figures["min"],
                          "precipitation_probability_max": figures["rain"]},
            }
        )  # fmt: skip
