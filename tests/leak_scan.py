"""The session's leak scan (issue 9, "Done when"): no fake secret the tests configure
(`helpers.FAKE_SECRETS`) and no personal data they say as callers (`helpers.SAMPLE_PII`) appears in
anything the product wrote during the session.

- Log records: a handler on the root logger renders every record the way the product writes it
  (`voicerag.logs`' formatter: structlog, JSON, masked) and looks for each needle at once. The root
  logger is at INFO for the session (the per-turn line is INFO); a test may lower it. Records of the
  tests' own code (`fakes.*`, test modules) are not the product's and are not scanned.
- Files: when the session ends, every file under its base temp dir — the data dirs, logs, JSON,
  SQLite databases (the audit log, caches) — is read as bytes and searched (needles in UTF-8; phone
  and card numbers also without their separators).
- Exempt, on purpose: a test that writes a needle itself (an input file holding a secret, a control
  showing the scan finds one) is marked `@pytest.mark.leak_scan_exempt("why")`: its `tmp_path` is
  not scanned, nor are the records logged while it runs.
- A leak fails the session (exit status 1) with one line per finding: where (the file, or the logger
  and the test running), which needle (its name and first characters only).

Under pytest-xdist (`make test` runs two workers) each worker scans what its tests wrote and the
controller reports the findings of all. Registered by `tests/conftest.py` (`pytest_plugins`);
`-p no:leak_scan` switches it off.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHUNK = 8 * 1024 * 1024
MAX_FINDINGS_SHOWN = 40
TEST_CODE = ("fakes", "tests", "conftest", "helpers", "hermetic", "leak_scan")  # loggers that are not the product's


@dataclass(frozen=True)
class Needle:
    name: str
    value: str

    @property
    def shown(self) -> str:
        """How a finding names it: never the whole value."""
        return f"{self.name} ({self.value[:4]}…)"


@dataclass(frozen=True)
class Finding:
    where: str
    needle: Needle

    def line(self) -> str:
        return f"leak scan: {self.needle.shown} in {self.where}"


def needles(secrets: dict[str, str], pii: dict[str, str]) -> list[Needle]:
    """The strings to look for: each secret, each piece of PII, and PII numbers without separators."""
    found = [Needle(name, value) for name, value in secrets.items()]
    for name, value in pii.items():
        found.append(Needle(name, value))
        digits = re.sub(r"[\s-]", "", value)
        if digits != value and digits.isdigit():
            found.append(Needle(f"{name}, digits only", digits))
    return found


def scan_text(text: str, where: str, looking_for: Iterable[Needle]) -> list[Finding]:
    return [Finding(where, needle) for needle in looking_for if needle.value in text]


def scan_file(path: Path, looking_for: list[Needle]) -> list[Finding]:
    """The needles in `path`, read as bytes in chunks that overlap by the longest needle."""
    encoded = [(needle, needle.value.encode()) for needle in looking_for]
    overlap = max((len(value) for _, value in encoded), default=1)
    hits: set[Needle] = set()
    try:
        with path.open("rb") as file:
            tail = b""
            while chunk := file.read(CHUNK):
                window = tail + chunk
                hits.update(needle for needle, value in encoded if value in window)
                tail = window[-overlap:]
    except OSError:
        return []  # removed meanwhile, or unreadable: nothing the product could have shown either
    return [Finding(str(path), needle) for needle in looking_for if needle in hits]


# Chroma's HNSW segment files: hnswlib saves its whole preallocated buffer, and the unused part is
# uninitialised heap — whatever the test process held before (seen: a question a previous test asked).
# They are written by hnswlib, not by the product, and hold vectors and labels, never text the
# product chose to keep; the documents and metadata themselves live in chroma.sqlite3, which is scanned.
HNSW_FILES = frozenset({"data_level0.bin", "link_lists.bin", "length.bin", "header.bin"})


def files_under(root: Path, skipped: set[Path]) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.name in HNSW_FILES:
            continue
        if any(path.is_relative_to(folder) for folder in skipped):
            continue
        yield path


def scan_tree(root: Path, looking_for: list[Needle], skipped: Iterable[Path] = ()) -> list[Finding]:
    skip = {Path(folder) for folder in skipped}
    return [finding for path in files_under(root, skip) for finding in scan_file(path, looking_for)]


def product_formatter() -> logging.Formatter:
    """The formatter `voicerag.logs.configure_logging` gives the product's one handler (JSON lines),
    taken without leaving that configuration in place."""
    from voicerag.logs import NOISY_LIBRARIES, configure_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY_LIBRARIES}
    try:
        configure_logging("INFO", "json")
        formatter = root.handlers[0].formatter
    finally:
        root.handlers, root.level = handlers, level
        for name, was in noisy.items():
            logging.getLogger(name).setLevel(was)
    assert formatter is not None
    return formatter


class LeakScanHandler(logging.Handler):
    """Renders each record as the product would write it and keeps what it finds."""

    def __init__(self, looking_for: list[Needle], formatter: logging.Formatter) -> None:
        super().__init__(logging.NOTSET)
        self.looking_for = looking_for
        self.setFormatter(formatter)
        self.findings: list[Finding] = []
        self.scanned = 0  # records rendered and searched
        self.test: str | None = None  # the test running, for the finding's line
        self.exempt = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.exempt or record.name.split(".")[0] in TEST_CODE or record.name.startswith("test_"):
            return
        self.scanned += 1
        try:
            text = self.format(record)
        except Exception:  # the product's formatter failing is not a leak; the raw message is what shows
            text = f"{record.getMessage()} {record.__dict__!r}"
        where = f"a log record of {record.name}" + (f" (during {self.test})" if self.test else "")
        self.findings.extend(scan_text(text, where, self.looking_for))


class LeakScan:
    """The plugin's state for one session."""

    def __init__(self, config: pytest.Config) -> None:
        from helpers import FAKE_SECRETS, SAMPLE_PII

        self.config = config
        self.looking_for = needles(FAKE_SECRETS, SAMPLE_PII)
        self.handler = LeakScanHandler(self.looking_for, product_formatter())
        self.exempt_dirs: set[Path] = set()
        root = logging.getLogger()
        root.addHandler(self.handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)

    def findings(self, basetemp: Path | None) -> tuple[list[Finding], int]:
        """What was found, and how many files were read."""
        found = list(self.handler.findings)
        files = list(files_under(basetemp, self.exempt_dirs)) if basetemp is not None and basetemp.is_dir() else []
        for path in files:
            found += scan_file(path, self.looking_for)
        return list(dict.fromkeys(found)), len(files)


_KEY = pytest.StashKey[LeakScan]()
_WORKERS = pytest.StashKey[list[dict[str, Any]]]()  # under pytest-xdist, in the controller: each worker's scan
WORKER_OUTPUT = "leak_scan"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "leak_scan_exempt(reason): this test writes a secret or PII on purpose (tests/leak_scan.py)"
    )
    config.stash[_KEY] = LeakScan(config)
    config.stash[_WORKERS] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    scan = item.config.stash[_KEY]
    scan.handler.test = item.nodeid
    scan.handler.exempt = item.get_closest_marker("leak_scan_exempt") is not None
    yield
    scan.handler.test, scan.handler.exempt = None, False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Remember an exempt test's tmp_path (its fixtures are still there)."""
    if item.get_closest_marker("leak_scan_exempt") is None:
        return
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if isinstance(tmp_path, Path):
        item.config.stash[_KEY].exempt_dirs.add(tmp_path)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist, in the controller: a worker is done; keep what its own scan found."""
    output = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT)
    if output is not None:
        node.config.stash[_WORKERS].append(output)  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    scan = session.config.stash.get(_KEY, None)
    if scan is None:
        return
    logging.getLogger().removeHandler(scan.handler)
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = factory.getbasetemp() if factory is not None and factory._basetemp is not None else None
    workers = session.config.stash.get(_WORKERS, [])
    # Under pytest-xdist each worker scans its own logs and base temp dir (it knows which tests were
    # exempt) and hands the result to the controller, which reports them all.
    found, files = scan.findings(None if workers else basetemp)
    lines = [finding.line() for finding in found]
    records = scan.handler.scanned
    for worker in workers:
        lines += worker["lines"]
        records, files = records + worker["records"], files + worker["files"]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # this is a worker: the controller reports
        workeroutput[WORKER_OUTPUT] = {"lines": lines, "records": records, "files": files}
        return
    lines = list(dict.fromkeys(lines))
    if not lines:
        print(f"\nleak scan: clean ({records} log records, {files} files, {len(scan.looking_for)} needles)")
        return
    shown = lines[:MAX_FINDINGS_SHOWN]
    if len(lines) > MAX_FINDINGS_SHOWN:
        shown.append(f"leak scan: … and {len(lines) - MAX_FINDINGS_SHOWN} more")
    print("\n" + "\n".join(shown))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
