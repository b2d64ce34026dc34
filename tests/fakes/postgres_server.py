"""A real, throw-away PostgreSQL server on 127.0.0.1 (a free port), for tests only.

`initdb` and `pg_ctl` from Debian's `postgresql` package (`scripts/system-deps.sh` installs it).
They refuse to run as root: as root they run as the `postgres` user (`runuser`), in a directory
that user owns. Trust authentication on loopback, user `postgres`, an empty database `test` (what
the machine's and CI's server have), no durability (fsync off): a test server, gone on `stop()`.

    with PostgresServer() as server:
        url = server.url          # postgresql://postgres@127.0.0.1:PORT/test
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

import asyncpg

from fakes.redis_server import free_port

SERVER_USER = "postgres"  # the user Debian's package creates; the servers run as it when we are root


def postgres_bin() -> Path | None:
    """The folder with `initdb` and `pg_ctl`: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def why_not_startable() -> str | None:
    """Why a server cannot be started here, or None when it can."""
    if postgres_bin() is None:
        return "initdb/pg_ctl not found (Debian's postgresql package; `make test` installs it as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"initdb refuses to run as root and there is no {SERVER_USER!r} user to run it as"
        if shutil.which("runuser") is None:
            return "initdb refuses to run as root and `runuser` is missing"
    return None


def postgres_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when a PostgreSQL server accepts a connection at `url` (asyncpg's form: postgresql://...)."""

    async def probe() -> None:
        connection = await asyncpg.connect(url, timeout=timeout_s)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
        return False
    return True


class PostgresServer:
    def __init__(self) -> None:
        self.directory: Path | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/test"

    def _run(self, *command: str, timeout_s: float) -> None:
        bin_dir = postgres_bin()
        assert bin_dir is not None and self.directory is not None
        as_user = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*as_user, str(bin_dir / command[0]), *command[1:]],
            cwd=self.directory,  # readable by the server's user, unlike the caller's working directory
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            log = self.directory / "server.log"
            tail = log.read_text(errors="replace")[-1000:] if log.exists() else ""
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()[-1000:]} {tail}")

    def start(self) -> Self:
        problem = why_not_startable()
        if problem:
            raise RuntimeError(problem)
        # Not under pytest's tmp dir: that one is private to the caller, and the server runs as postgres.
        self.directory = Path(tempfile.mkdtemp(prefix="voicerag-postgres-"))
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        self.port = free_port()
        data, log = self.directory / "data", self.directory / "server.log"
        try:
            self._run("initdb", "-D", str(data), "-U", SERVER_USER, "-A", "trust", "-E", "UTF8", "--no-sync",
                      "--locale=C", timeout_s=60)  # fmt: skip
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            self._run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30", "start", timeout_s=40)
            asyncio.run(self._create_test_database())
        except BaseException:
            self.stop()
            raise
        return self

    async def _create_test_database(self) -> None:
        connection = await asyncpg.connect(self.url.removesuffix("/test") + "/postgres", timeout=10)
        try:
            await connection.execute("CREATE DATABASE test")
        finally:
            await connection.close()

    def stop(self) -> None:
        """Stop it at once (its data is thrown away) and remove its directory."""
        if self.directory is None:
            return
        try:
            if (self.directory / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "-t", "20", "stop",
                          timeout_s=30)  # fmt: skip
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
