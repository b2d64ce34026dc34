"""Reading many document files in several processes (`voicerag ingest --workers N`).

Extraction is single-threaded Python (pdfminer, the HTML and DOCX parsers, openpyxl), so a folder of
PDFs is read at one core's speed however many the machine has; with a remote embedding model
(OpenAI, concurrent requests) that is the ingest's pace. Files are handed to a pool of spawned
processes (a fresh interpreter: forking a process whose model and HTTP threads already run can
deadlock) and their documents come back in file order, so the result — and the first error, which
names its file — is what a single process would give.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from retrievers.errors import ServiceError

File = TypeVar("File")
Read = TypeVar("Read")


def read_in_processes(read: Callable[[File], Read], files: Sequence[File], workers: int) -> Iterator[Read]:
    """`read(file)` of each file, in order, run by `workers` processes (`read`: a module-level
    function, which a spawned process imports by name)."""
    processes = max(1, min(workers, len(files)))
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            # chunksize 1: one large PDF must not hold a batch of small files behind it
            yield from pool.map(read, files, chunksize=1)
        except BrokenProcessPool as exc:  # a reader was killed (out of memory?): nothing was written
            raise ServiceError(f"a document reader process died ({exc}); try again with fewer --workers") from exc
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # an error stops the rest at once
