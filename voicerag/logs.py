"""How voicerag's logs look: structlog renders every stdlib log record (ours and the libraries').

Code logs with the standard `logging` module (as LiveKit, LangChain and httpx do); structured
fields travel in `extra=` (the per-turn line: `logging.getLogger("voicerag.turns").info("turn",
extra=record)`). Here structlog's `ProcessorFormatter` turns each record into one line: readable
`key=value` on a terminal (`LOG_FORMAT=console`), or one JSON object (`LOG_FORMAT=json`) for log
shippers.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

NOISY_LIBRARIES = ("chromadb", "httpx", "httpcore", "openai")  # their INFO lines are per request


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
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
