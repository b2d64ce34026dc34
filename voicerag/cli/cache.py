"""`voicerag cache clear [--source NAME]`: drop cached responses of external sources."""

from __future__ import annotations

from typing import Annotated

import typer

from retrievers.errors import UserInputError
from voicerag.cli.common import err, out, settings
from voicerag.cli.running import run_async

app = typer.Typer(help="Manage the response cache of external sources.", no_args_is_help=True)


@app.command("clear")
def clear(
    source: Annotated[str | None, typer.Option("--source", help="Only this source's responses.")] = None,
) -> None:
    """Drop cached responses (all, or one source's). With REDIS_URL every worker sees it at once;
    without it the cache lives inside each running process, so there is nothing to clear here."""
    run_async(_clear(source))


async def _clear(source: str | None) -> None:
    from voicerag.services import build_http_and_sources, close_http

    loaded = settings()
    http, registry = build_http_and_sources(loaded)
    try:
        if source is not None and registry.get(source) is None:
            raise UserInputError(f"--source: no source named {source!r}; known: {', '.join(registry.names)}")
        if loaded.redis_url is None:
            err.print("REDIS_URL is not set: responses are cached in each running process; restart it to clear them")
        removed = await http.clear_cache(source)
    finally:
        await registry.aclose()
        await close_http(http)
    out.print(f"removed {removed} cached response(s)" + (f" of {source}" if source else ""))
