"""Logs: every record renders through structlog; the per-turn line is one JSON object with its fields."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from graph.turn_record import MASKED, TurnRecord, log_turn
from voicerag.logs import MASKED as LOGS_MASKED
from voicerag.logs import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


def test_the_turn_line_is_one_json_object(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    record = {"turn_id": "t1", "user_id": "u1", "route": "lookup", "timings_ms": {"retrieve": 12.5}, "degraded": False}
    logging.getLogger("voicerag.turns").info("turn", extra=record)
    logging.getLogger("retrievers.sources").debug("not shown at INFO")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["event"] == "turn" and line["logger"] == "voicerag.turns" and line["level"] == "info"
    assert {k: line[k] for k in record} == record and "timestamp" in line


def test_console_lines_are_readable_and_carry_the_fields(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("WARNING", "console")
    logging.getLogger("graph.nodes.retrieve").warning("knowledge base search failed", extra={"reason": "timeout"})
    logging.getLogger("httpx").info("HTTP Request: GET ...")  # noisy libraries stay quiet
    err = capsys.readouterr().err
    assert "knowledge base search failed" in err and "reason=timeout" in err and "HTTP Request" not in err
    assert len(err.strip().splitlines()) == 1


def test_every_line_is_masked_whoever_logs_it(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The message, its arguments, fields at any depth and a traceback: a caller's phone number and
    e-mail address never reach the log, whichever library logged them."""
    phone, email = "090-1234-5678", "taro.yamada@example.com"
    for log_format in ("json", "console"):
        configure_logging("INFO", log_format)  # type: ignore[arg-type]
        log = logging.getLogger("some.library")
        log.info("calling %s back", phone, extra={"request": {"body": [f"mail {email}"]}, "order": "KA-2026-000123"})
        try:
            raise ValueError(f"no such user {email}")
        except ValueError:
            log.exception("lookup failed for %s", phone)
        err = capsys.readouterr().err
        assert phone not in err and email not in err, err
        assert err.count("[PHONE]") == 2 and err.count("[EMAIL]") >= 2 and "ValueError" in err, err
        assert "KA-2026-000123" in err  # an order number is not sensitive: kept (control)


def test_the_turn_line_is_masked_once(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The per-turn line comes masked (`TurnRecord.masked_texts`) and says so: it is not masked
    again (masking is its costly part), and the marker does not reach the line."""
    configure_logging("INFO", "json")
    record = TurnRecord(turn_id="t1", session_id="s1", user_id="u1", front_door="ask", question="call 090-1234-5678")
    log_turn(record)
    (line,) = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    assert MASKED == LOGS_MASKED and line["question"] == "call [PHONE]" and MASKED not in line
    assert record.masked_texts["question"] == "call [PHONE]" and record.question == "call 090-1234-5678"
