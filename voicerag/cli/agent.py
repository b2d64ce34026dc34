"""`voicerag agent console [--text] | dev | start`: the LiveKit voice worker (LiveKit's own CLI).

`console --text` needs no keys: you type, the agent answers in text. Voice needs speech keys
(`OPENAI_API_KEY`, or `OPENAI_BASE_URL` for a compatible server); `dev` and `start` also need a
LiveKit server (`LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`). A missing one stops here,
before anything starts, with one line naming it.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from retrievers.errors import UserInputError
from voicerag import metrics
from voicerag.settings import load_settings

MODES = ("console", "dev", "start", "connect", "download-files")


def agent(ctx: typer.Context) -> None:
    """Run the LiveKit voice agent: console [--text], dev or start (see `voicerag agent MODE --help`)."""
    args = list(ctx.args)
    mode = args[0] if args else None
    if mode in (None, "--help", "-h"):  # `--help` after a mode is LiveKit's: that mode's own options
        typer.echo(ctx.get_help())
        raise typer.Exit(0 if mode else 2)
    if mode not in MODES:
        raise UserInputError(
            f"MODE: expected one of {', '.join(MODES[:3])} (got {mode!r}); e.g. voicerag agent console --text"
        )
    loaded = load_settings()  # LiveKit's CLI sets up logging for the worker: one handler, not two
    # LiveKit logs at DEBUG by default in console and dev; follow LOG_LEVEL unless --log-level is given.
    os.environ.setdefault("LIVEKIT_LOG_LEVEL", {"WARNING": "WARN"}.get(loaded.log_level, loaded.log_level))
    text = mode == "console" and "--text" in args
    if text:
        os.environ["VOICERAG_AGENT_TEXT"] = "1"
    elif mode in ("console", "dev", "start") and "--help" not in args and not loaded.chat_model_configured:
        raise UserInputError(
            "OPENAI_API_KEY: needed for speech (STT and TTS); to type instead: voicerag agent console --text"
        )
    if mode in ("dev", "start", "connect") and "--help" not in args:
        found = {
            "LIVEKIT_URL": loaded.livekit_url,
            "LIVEKIT_API_KEY": loaded.livekit_api_key.get_secret_value() if loaded.livekit_api_key else None,
            "LIVEKIT_API_SECRET": loaded.livekit_api_secret.get_secret_value() if loaded.livekit_api_secret else None,
        }
        for name, value in found.items():
            if not value:
                raise UserInputError(
                    f"{name}: needed to connect to a LiveKit server (LiveKit Cloud or livekit-server --dev)"
                )
            os.environ.setdefault(name, value)  # LiveKit reads the environment, not our .env
    if loaded.metrics_port and "--help" not in args:
        metrics.enable(loaded.metrics_port)  # before LiveKit imports prometheus_client (multiprocess mode)
    from livekit.agents import cli

    from voicerag.worker import check_ready, server

    if "--help" not in args:
        check_ready(loaded)  # an unreachable knowledge base stops here, in one line (exit 1)

    sys.argv = ["voicerag agent", *args]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # run_app is deprecated for `lk agent`, still works
        cli.run_app(server)
