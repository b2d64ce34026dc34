"""How voicerag's logs look: structlog renders every stdlib log record (ours and the libraries').

Code logs with the standard `logging` module (as LiveKit, LangChain and httpx do); structured
fields travel in `extra=` (the per-turn line: `logging.getLogger("voicerag.turns").info("turn",
extra=record)`). Here structlog's `ProcessorFormatter` turns each record into one line: readable
`key=value` on a terminal (`LOG_FORMAT=console`), or one JSON object (`LOG_FORMAT=json`) for log
shippers.

Every line is masked before it is rendered (`retrievers.masking`): the message, every string field
at any depth and a traceback's text — phone numbers, e-mail addresses, card numbers... a caller said
never reach a log, whichever library logged them (error messages quote questions, URLs, SQL values).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

from retrievers.masking import mask, mask_value

NOISY_LIBRARIES = ("chromadb", "httpx", "httpcore", "openai")  # their INFO lines are per request
UNMASKED = frozenset({"timestamp", "level", "logger"})  # ours, never a caller's words
MASKED = "_masked"  # = graph.turn_record.MASKED (not imported: logging stays light for every command)


def mask_fields(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: every string of the line masked (the message, fields, a traceback) —
    but for a line whose fields say they are masked already (the per-turn line: masking is the
    costly part of it, done once per turn by `TurnRecord.masked_texts`)."""
    if event.pop(MASKED, False):
        return event
    for key, value in event.items():
        if key in UNMASKED or key.startswith("_"):
            continue
        if isinstance(value, str):
            event[key] = mask(value)
        elif isinstance(value, dict | list | tuple):
            event[key] = mask_value(value)
    return event


def configure_logging(level: str, log_format: Literal["console", "json"]) -> None:
    """Route every log record through one structlog formatter on stderr, at `level`."""
    shared: list[structlog.types.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),  # `extra=` fields become keys of the line
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # the traceback as text, so that it is masked too
            mask_fields,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
