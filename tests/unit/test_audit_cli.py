"""`voicerag audit` as a user runs it (the installed command, a real SQLite log): filters, JSON lines,
`--verify` 0 after a session and 1 naming an edited record, and one line with exit 2 for bad input."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from voicerag.audit import AuditRecord, open_audit_writer
from voicerag.audit.database import sqlite_url
from voicerag.audit.store import AuditStore
from voicerag.settings import load_settings

VOICERAG = str(Path(sys.executable).parent / "voicerag")
DAYS = [f"2025-01-0{day}T09:00:00Z" for day in range(1, 7)]


def run(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "VOICERAG_DATA_DIR": str(data_dir), "VOICERAG_ENV_FILE": "", **env}
    return subprocess.run([VOICERAG, "audit", *args], capture_output=True, text=True, env=environ, timeout=60)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
async def six_days(tmp_path: Path) -> Path:
    """A data dir whose log has a turn a day, alice and bob in turn, one question with an escape."""
    store = AuditStore(sqlite_url(tmp_path / "audit.sqlite"))
    await store.append(
        [
            AuditRecord(
                time=day,
                turn_id=f"t{i}",
                session_id="s",
                user_id=("alice", "bob")[i % 2],
                front_door="voice",
                latency_ms=250,
                question="clear \x1b[2J the screen?" if i == 5 else f"q{i}",
                answer=f"a{i}",
            )
            for i, day in enumerate(DAYS)
        ]
    )
    await store.close()
    return tmp_path


def turn_ids(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["turn_id"] for line in result.stdout.splitlines()]


def test_filters_select_the_most_recent_records_oldest_first(six_days: Path) -> None:
    assert turn_ids(run(six_days, "--json")) == ["t0", "t1", "t2", "t3", "t4", "t5"]
    assert turn_ids(run(six_days, "--json", "--user", "alice")) == ["t0", "t2", "t4"]
    assert turn_ids(run(six_days, "--json", "--since", "2025-01-04")) == ["t3", "t4", "t5"]
    assert turn_ids(run(six_days, "--json", "--since", "2025-01-04T17:59:59+09:00")) == ["t3", "t4", "t5"]
    assert turn_ids(run(six_days, "--json", "--limit", "2")) == ["t4", "t5"]
    assert turn_ids(run(six_days, "--json", "--user", "bob", "--since", "2025-01-02", "--limit", "2")) == ["t3", "t5"]


def test_json_lines_carry_every_field_and_the_text_is_inert(six_days: Path) -> None:
    as_json = run(six_days, "--json", "--limit", "1")
    record = json.loads(as_json.stdout)
    assert set(record) == set(AuditRecord.model_fields) | {"seq", "previous_hash", "hash"}
    assert record["question"] == "clear \x1b[2J the screen?" and "\\u001b" in as_json.stdout  # escaped, not raw
    text = run(six_days, "--limit", "1")
    assert text.returncode == 0 and "\x1b" not in text.stdout
    assert text.stdout.startswith("2025-01-06T09:00:00.000000Z  #6  voice  user=bob") and "Q: clear" in text.stdout


def test_verify_passes_after_a_session_and_fails_after_a_record_is_edited(tmp_path: Path) -> None:
    writer = open_audit_writer(load_settings(voicerag_data_dir=tmp_path))  # a session, as a front door runs it
    for i in range(20):
        writer.write(AuditRecord(turn_id=f"t{i}", session_id="s", user_id="u", front_door="chat", latency_ms=9,
                                 question=f"q{i}", answer=f"a{i}"))  # fmt: skip
    assert writer.close(timeout_s=30) == 0
    intact = run(tmp_path, "--verify")
    assert intact.returncode == 0 and "intact: 20 record(s)" in intact.stdout, intact.stderr
    connection = sqlite3.connect(tmp_path / "audit.sqlite", isolation_level=None)
    connection.execute("DROP TRIGGER audit_records_no_update")
    connection.execute("UPDATE audit_records SET answer = 'nothing happened' WHERE seq = 7")
    connection.close()
    broken = run(tmp_path, "--verify")
    assert broken.returncode == 1 and broken.stdout == ""
    assert broken.stderr.startswith("audit log broken at record 7 (turn t6): its content does not match its hash")
    assert "triggers" in broken.stderr  # and the dropped trigger is reported
    as_json = run(tmp_path, "--verify", "--json")
    verdict = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and verdict["intact"] is False and verdict["first_bad"]["seq"] == 7


def test_no_log_yet_is_said_and_nothing_is_created(tmp_path: Path) -> None:
    listing = run(tmp_path, "--json")
    assert listing.returncode == 0 and listing.stdout == "" and "no audit records yet" in listing.stderr
    verify = run(tmp_path, "--verify")
    assert verify.returncode == 0 and "0 record(s)" in verify.stdout
    assert not (tmp_path / "audit.sqlite").exists()


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--since", "yesterday"], {}, "--since"),
        (["--verify", "--user", "alice"], {}, "--verify"),
        (["--postgres-setup", "app; DROP TABLE x"], {}, "--postgres-setup"),
        ([], {"AUDIT_DATABASE_URL": "mysql://root@127.0.0.1/audit"}, "AUDIT_DATABASE_URL"),
        ([], {"AUDIT_DATABASE_URL": "sqlite:///:memory:"}, "AUDIT_DATABASE_URL"),
        ([], {"AUDIT_QUEUE_SIZE": "0"}, "AUDIT_QUEUE_SIZE"),
    ],
)
def test_bad_input_is_one_line_naming_it_with_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    result = run(tmp_path, *args, **env)
    assert result.returncode == 2 and named in one_line_error(result)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_unreachable_database_is_one_line_with_exit_1(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(tmp_path, "--verify", AUDIT_DATABASE_URL=f"postgresql://postgres:secret@127.0.0.1:{port}/audit")
    line = one_line_error(result)
    assert result.returncode == 1 and "AUDIT_DATABASE_URL" in line and "secret" not in line


def test_postgres_setup_grants_the_role_insert_and_select_only(tmp_path: Path) -> None:
    result = run(tmp_path, "--postgres-setup", "voicerag_app")
    assert result.returncode == 0 and "CREATE TABLE IF NOT EXISTS audit_records" in result.stdout
    assert "GRANT SELECT, INSERT ON audit_records TO voicerag_app;" in result.stdout
    assert "UPDATE" not in result.stdout.split("REVOKE", 1)[1]  # granted nothing more
