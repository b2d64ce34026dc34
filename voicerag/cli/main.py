"""Entry point of the `voicerag` command: registers the commands and maps errors to exit codes.

Exit codes: 0 success, 1 runtime failure, 2 bad input or usage. Errors are one line on stderr;
`VOICERAG_DEBUG=1` shows the traceback instead.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from importlib.metadata import version as package_version
from typing import Annotated, NoReturn

import typer

from retrievers.errors import VoiceragError
from voicerag.cli import agent, ask, audit, cache, chat, eval_answers, evaluate, ingest, search
from voicerag.cli.terminal import safe


def _version(show: bool) -> None:
    if show:
        print(f"voicerag {package_version('voicerag')}")
        raise typer.Exit()


app = typer.Typer(
    name="voicerag",
    help="A voice agent that answers from your knowledge base and live systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("ingest")(ingest.ingest)
app.command("ask")(ask.ask)
app.command("chat")(chat.chat)
app.command("search")(search.search)
app.command("eval")(evaluate.evaluate)
app.command("eval-answers")(eval_answers.eval_answers)
app.command("audit")(audit.audit)
app.add_typer(cache.app, name="cache")


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """A voice agent that answers from your knowledge base and live systems."""


# Everything after `agent`, `--help` included, is for LiveKit's CLI (`voicerag agent console --help`).
app.command(
    "agent",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)(agent.agent)


def _debug() -> bool:
    return os.environ.get("VOICERAG_DEBUG", "").lower() in ("1", "true", "yes")


def run() -> NoReturn:
    exit_now(_exit_code())


def _exit_code() -> int:
    try:
        app()  # standalone mode: typer reports usage errors itself (exit 2) and exits
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except VoiceragError as exc:
        if _debug():
            raise
        print(f"error: {safe(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        if _debug():
            raise
        print(f"error: {type(exc).__name__}: {safe(str(exc))} (set VOICERAG_DEBUG=1 for details)", file=sys.stderr)
        return 1
    return 0


def exit_now(code: int) -> NoReturn:
    """End the process once the command is over, without the interpreter tearing down every module
    it loaded (chromadb, onnxruntime, LangGraph...: 0.7 s measured after `ask`, most of the wait
    between the answer and the shell prompt). The command has closed what it opened; the atexit
    handlers (logging, metrics' temporary directory, LangSmith's and LiveKit's own) run here, then
    the output is flushed."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
