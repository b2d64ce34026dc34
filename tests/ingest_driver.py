"""Processes for the knowledge-base write tests (crash, concurrency, timeouts).

`run_cli` / `start_cli` run the real `voicerag` CLI in a process of its own, with a fast stand-in
embedding model and checkpoints at which a test can kill it or pause it. The processes are forked
from a fork server that imported the CLI once (`multiprocessing`'s "forkserver"), so each costs a
fraction of a second instead of the 2 s of importing it: the crash tests start dozens of them.

Every progress point of the write is printed on stdout as `@ <stage>:<done>/<total>` (flushed) before
the work goes on. Environment of a run:

- `KILL_AT=<point>`: the process SIGKILLs itself at the first point that starts with it
  (`write:1000/` is the point after the first 1,000 chunks were written);
- `PAUSE_AT=<point>` with `RESUME_FILE=<path>`: waits at that point (a prefix too) until the file
  exists (60 s at most);
- the settings `CHROMA_TIMEOUT_S` (Chroma's call timeout) and `INGEST_LOCK_TIMEOUT_S` (how long a
  writer waits for another) work as in production.

Also here: `ChromaServer` (a real `chroma run`) and `SilentServer` (accepts connections, never answers).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx
import numpy as np

import voicerag.cli.ingest  # imported here so that the fork server has them loaded
import voicerag.cli.main
import voicerag.services
from voicerag.settings import Settings

PAUSE_LIMIT_S = 60.0
_FORKS = multiprocessing.get_context("forkserver")
# What the fork server imports once (the modules it can find: Python 3.11's does not get tests/ on its path).
_FORKS.set_forkserver_preload(["voicerag.cli.main", "voicerag.cli.ingest", "voicerag.services", "numpy", "httpx"])


class HashModel:
    """Deterministic unit vectors from a text's CRC: the same text, the same vector, in any process."""

    name = "test-hash-64"

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(64) for t in texts]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), 64)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    queries = passages


def checkpoint(stage: str, done: int, total: int) -> None:
    """Print the point; then die, or wait, when the environment asks for it here."""
    point = f"{stage}:{done}/{total}"
    print(f"@ {point}", flush=True)
    if point.startswith(os.environ.get("KILL_AT") or "\0"):
        os.kill(os.getpid(), signal.SIGKILL)
    if point.startswith(os.environ.get("PAUSE_AT") or "\0"):
        resume = Path(os.environ["RESUME_FILE"])
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while not resume.exists():
            if time.monotonic() > deadline:
                print(f"ingest_driver: {resume} never appeared", file=sys.stderr, flush=True)
                os._exit(3)
            time.sleep(0.02)


@contextlib.contextmanager
def checkpoints(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    yield checkpoint


def _cli(cwd: str, env: dict[str, str], args: Sequence[str], stdout: str, stderr: str) -> None:
    """In the forked process: `voicerag *args` in `cwd` with exactly `env`, output to files."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    voicerag.services.load_model = lambda *args, **kwargs: HashModel()
    voicerag.cli.ingest.progress_bar = checkpoints
    sys.argv = ["voicerag", *args]
    voicerag.cli.main.run()


@dataclass
class Ran:
    returncode: int | None
    stdout: str
    stderr: str


class Running:
    """A `voicerag` process started by `start_cli`."""

    def __init__(self, cwd: Path, env: dict[str, str], args: Sequence[str]) -> None:
        name = uuid.uuid4().hex[:12]
        (cwd / ".cli").mkdir(exist_ok=True)
        self.stdout, self.stderr = cwd / ".cli" / f"{name}.out", cwd / ".cli" / f"{name}.err"
        self.process = _FORKS.Process(target=_cli, args=(str(cwd), env, list(args), str(self.stdout), str(self.stderr)))
        self.process.start()

    def output(self) -> Ran:
        read = lambda path: path.read_text(encoding="utf-8") if path.exists() else ""  # noqa: E731
        return Ran(self.process.exitcode, read(self.stdout), read(self.stderr))

    def wait_for(self, text: str, timeout_s: float = 30) -> Ran:
        """Its output so far, once its stdout or stderr holds `text` (fails after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ran = self.output()
            if text in ran.stdout or text in ran.stderr:
                return ran
            if not self.process.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"never printed {text!r}: {self.output()}")

    def wait(self, timeout_s: float = 60) -> Ran:
        """Its output once it ended; killed (and its output so far) if it outlived `timeout_s`."""
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)
        return self.output()


def start_cli(cwd: Path, env: dict[str, str], *args: str) -> Running:
    return Running(cwd, env, args)


def run_cli(cwd: Path, env: dict[str, str], *args: str, timeout_s: float = 60) -> Ran:
    return start_cli(cwd, env, *args).wait(timeout_s)


def cli_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This environment without any voicerag setting, plus the data dir and `settings`. An ingest runs
    at normal priority unless a test says otherwise (INGEST_NICE): niced, it would crawl beside the other
    pytest worker, and what these tests time is the ingest, not the scheduler."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names and k != "FORCE_COLOR"}
    return {**env, "VOICERAG_DATA_DIR": str(data_dir), "INGEST_NICE": "0", **settings}


def points(stdout: str) -> list[str]:
    """The progress points a run printed, in order."""
    return [line.removeprefix("@ ") for line in stdout.splitlines() if line.startswith("@ ")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChromaServer:
    """A real `chroma run` on 127.0.0.1, its data in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> Self:
        binary = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
        if binary is None:
            raise RuntimeError("the `chroma` server binary (from the chromadb wheel) is missing")
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "server.log").open("wb") as log:
            self._process = subprocess.Popen(
                [binary, "run", "--path", str(self.folder / "db"), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chroma run did not start: {(self.folder / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            process.kill()  # nothing left to kill once it has exited
            process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte: a hung
    server. With `forward_to`, a proxy to that address instead, until `fall_silent()`: from then
    on it forwards nothing, on old connections and new ones alike."""

    def __init__(self, forward_to: tuple[str, int] | None = None) -> None:
        self.forward_to = forward_to
        self._silent = threading.Event()
        if forward_to is None:
            self._silent.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()

    def fall_silent(self) -> None:
        self._silent.set()

    def start(self) -> Self:
        threading.Thread(target=self._accept, name="silent-server", daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            if not self._silent.is_set() and self.forward_to is not None:
                upstream = socket.create_connection(self.forward_to, timeout=10)
                upstream.settimeout(None)  # an idle keep-alive connection must not time out here
                self._sockets.append(upstream)
                for source, target in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._silent.is_set():
                data = source.recv(65536)
                if not data or self._silent.is_set():  # silent: what arrives is swallowed
                    return
                target.sendall(data)

    def stop(self) -> None:
        self._closed.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
