"""Running a command's async work so that Ctrl-C always works the first time.

`asyncio.run` cancels the main task on Ctrl-C, then waits for every thread it started to finish —
and a call blocked on a server that never answers (in a thread, or in the event loop itself while a
client connects) or in `input()` can keep the command alive long after the user gave up. Here the
first Ctrl-C cancels the work and, if the command has not ended `GRACE_S` later, ends the process (a
timer thread does it, so even a blocked event loop cannot delay it); a second Ctrl-C ends it at once.
Nothing is lost by that: every write the product makes survives a kill (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")
GRACE_S = 1.0
INTERRUPTED = 130  # the shell's code for a command ended by SIGINT


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(work)`, with the Ctrl-C described above (KeyboardInterrupt when it cancels)."""
    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        return asyncio.run(work)
    interrupted = threading.Event()

    async def main() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()

        def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
            if interrupted.is_set():
                _end_now()
            interrupted.set()
            if task is not None:
                loop.call_soon_threadsafe(task.cancel)
            timer = threading.Timer(GRACE_S, _end_now)
            timer.daemon = True  # fires while the main thread is stuck; never delays a clean exit
            timer.start()

        previous = signal.signal(signal.SIGINT, on_ctrl_c)
        try:
            return await work
        except asyncio.CancelledError:
            if interrupted.is_set():
                raise KeyboardInterrupt from None
            raise
        finally:
            signal.signal(signal.SIGINT, previous)

    return asyncio.run(main())


def _end_now() -> None:
    sys.stdout.flush()
    sys.stderr.write("\ninterrupted\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED)
