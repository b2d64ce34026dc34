"""Running a command's async work so that Ctrl-C always works the first time.

`asyncio.run` cancels the main task on Ctrl-C, then waits for every thread it started to finish —
and a thread blocked in a call to a server that never answers (or in `input()`) can keep the command
alive long after the user gave up. Here the first Ctrl-C cancels the work and, if the command has
not ended `GRACE_S` later, ends the process; a second Ctrl-C ends it at once. Nothing is lost by
that: every write the product makes survives a kill (docs/ARCHITECTURE.md, "crash safety").
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
GRACE_S = 1.0
INTERRUPTED = 130  # the shell's code for a command ended by SIGINT


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(work)`, with the Ctrl-C described above (KeyboardInterrupt when it cancels)."""
    return asyncio.run(_interruptible(work))


async def _interruptible(work: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    presses = 0

    def interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses > 1 or main is None:
            _end_now()
        main.cancel()
        loop.call_later(GRACE_S, _end_now)  # still alive: a thread is stuck in a blocking call

    try:
        loop.add_signal_handler(signal.SIGINT, interrupt)
    except (NotImplementedError, RuntimeError):  # not the main thread (tests), or no signals here
        return await work
    try:
        return await work
    except asyncio.CancelledError:
        if presses:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _end_now() -> None:
    sys.stdout.flush()
    sys.stderr.write("\ninterrupted\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED)
