"""The session's leak scan (tests/leak_scan.py) finds what it must, and only that.

These tests put secrets and PII into logs and files on purpose: they are `leak_scan_exempt`, the
documented way for a control to show the scan a needle without failing the session.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import leak_scan
import pytest
from helpers import FAKE_SECRETS, REPO, SAMPLE_PII
from leak_scan import LeakScanHandler, needles, product_formatter, scan_tree

pytestmark = pytest.mark.leak_scan_exempt("controls of the leak scan: they write needles on purpose")

KEY = FAKE_SECRETS["OPENAI_API_KEY"]
PHONE = SAMPLE_PII["mobile phone"]
LOOKING_FOR = needles(FAKE_SECRETS, SAMPLE_PII)


def found(findings: list[leak_scan.Finding]) -> list[str]:
    return sorted(f.needle.name for f in findings)


def test_files_are_searched_as_bytes_whatever_they_hold(tmp_path: Path) -> None:
    (tmp_path / "audit.sqlite").write_bytes(b"SQLite format 3\x00" + f"\x01{KEY}\x02".encode())
    (tmp_path / "logs" / "run.log").parent.mkdir()
    (tmp_path / "logs" / "run.log").write_text(f"called 09012345678 for {SAMPLE_PII['e-mail']}\n")
    (tmp_path / "clean.json").write_text('{"answer": "call [PHONE]"}')
    findings = scan_tree(tmp_path, LOOKING_FOR)
    assert found(findings) == ["OPENAI_API_KEY", "e-mail", "mobile phone, digits only"]
    assert {Path(f.where).name for f in findings} == {"audit.sqlite", "run.log"}
    assert all(KEY not in f.line() and "09012345678" not in f.line() for f in findings)  # shown masked
    assert scan_tree(tmp_path, LOOKING_FOR, skipped=[tmp_path / "logs"]) == findings[:1]


def test_a_needle_across_two_chunks_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leak_scan, "CHUNK", 16)
    (tmp_path / "big.bin").write_bytes(b"x" * 13 + KEY.encode() + b"y" * 40)
    assert found(scan_tree(tmp_path, LOOKING_FOR)) == ["OPENAI_API_KEY"]


def test_log_records_are_judged_as_the_product_writes_them() -> None:
    handler = LeakScanHandler(LOOKING_FOR, product_formatter())
    log = logging.getLogger("voicerag.leak_scan_control")
    log.addHandler(handler)
    try:
        log.warning("caller said %s", PHONE, extra={"contact": {"mail": SAMPLE_PII["e-mail"]}})
        assert handler.findings == []  # the product masks personal data in every line it writes
        log.warning("connecting", extra={"headers": {"Authorization": f"Bearer {KEY}"}})
        assert found(handler.findings) == ["OPENAI_API_KEY"]  # a secret is not masked: the scan sees it
        assert handler.findings[0].where == "a log record of voicerag.leak_scan_control"
    finally:
        log.removeHandler(handler)


LEAKY_SUITE = """
import logging
import pytest
from helpers import FAKE_SECRETS

def test_logs_a_secret():
    logging.getLogger("retrievers.http.client").warning("key=%s", FAKE_SECRETS["CARRIER_API_KEY"])

def test_writes_a_secret(tmp_path):
    (tmp_path / "out.json").write_text('{"url": "redis://:%s@h"}' % FAKE_SECRETS["REDIS_PASSWORD"])

@pytest.mark.leak_scan_exempt("a control")
def test_exempt(tmp_path):
    (tmp_path / "in.env").write_text("OPENAI_API_KEY=" + FAKE_SECRETS["OPENAI_API_KEY"])
    logging.getLogger("voicerag").warning(FAKE_SECRETS["OPENAI_API_KEY"])

def test_clean(tmp_path):
    (tmp_path / "out.txt").write_text("nothing to see")
"""


def run_suite(folder: Path, source: str, *selection: str) -> subprocess.CompletedProcess[str]:
    (folder / "test_suite.py").write_text(source)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "leak_scan", "-p", "no:cacheprovider",
         f"--basetemp={folder / 'base'}", f"--rootdir={folder}", "test_suite.py", *selection],
        cwd=folder, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_session_that_leaked_fails_naming_where_and_what(tmp_path: Path) -> None:
    done = run_suite(tmp_path, LEAKY_SUITE)
    assert "4 passed" in done.stdout, done.stdout + done.stderr  # every test passed...
    assert done.returncode == 1, done.stdout  # ...and the session failed
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("leak scan:"))
    assert lines == [
        "leak scan: CARRIER_API_KEY (carr…) in a log record of retrievers.http.client "
        "(during test_suite.py::test_logs_a_secret)",
        f"leak scan: REDIS_PASSWORD (redi…) in {tmp_path}/base/test_writes_a_secret0/out.json",
    ]
    assert FAKE_SECRETS["CARRIER_API_KEY"] not in done.stdout + done.stderr


def test_under_xdist_the_controller_fails_the_session_for_a_workers_leak(tmp_path: Path) -> None:
    """`make test` runs two pytest-xdist workers: a leak found by either still fails the session."""
    done = run_suite(tmp_path, LEAKY_SUITE, "-n", "1")  # a worker and the controller: the path that counts
    assert "4 passed" in done.stdout and done.returncode == 1, done.stdout + done.stderr
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("leak scan:"))
    assert lines == [
        "leak scan: CARRIER_API_KEY (carr…) in a log record of retrievers.http.client "
        "(during test_suite.py::test_logs_a_secret)",
        f"leak scan: REDIS_PASSWORD (redi…) in {tmp_path}/base/popen-gw0/test_writes_a_secret0/out.json",
    ]


def test_a_clean_session_passes(tmp_path: Path) -> None:
    done = run_suite(tmp_path, LEAKY_SUITE, "-k", "exempt or clean")  # the control: same plugin, no leak
    assert done.returncode == 0, done.stdout + done.stderr
    clean = [line for line in done.stdout.splitlines() if line.startswith("leak scan:")]
    assert "2 passed" in done.stdout and len(clean) == 1 and clean[0].startswith("leak scan: clean ("), done.stdout
