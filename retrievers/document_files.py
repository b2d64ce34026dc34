"""The files `load_documents` reads: found in folders without trusting links, each read once.

A folder is walked without following links (hidden files and folders are passed over, and so are
FIFOs, sockets and devices). A link is judged by where it really points:

- to a file inside the folder: read, under the link's own name;
- to a folder inside: not followed (its files are read where they really are, once);
- outside the folder, or nowhere: refused, naming the link. Not skipped with a warning: ingest is
  all-or-nothing, a warning scrolls past in a cron job while the knowledge base silently lacks the
  document (and pruning would delete the copy ingested before), and the fix is one command away:
  copy the file in, or name it on the command line.

A file with several names (hard links) inside a folder is refused too: its other name may be outside,
and nothing tells where. A path named on the command line is read as named, links and all: the
operator chose it.

Each file is opened once, one path component at a time below the folder with `O_NOFOLLOW`, and its
type, names, size and bytes all come from that one descriptor: a file or folder swapped for a link
between the walk and the read is refused, never followed. POSIX only (`dir_fd`, `O_NOFOLLOW`).
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from retrievers.document_values import visible
from retrievers.errors import UserInputError

_NO_WAIT = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO swapped in must not block the read
_CHANGED = {errno.ELOOP, errno.ENOTDIR, errno.ENOENT, errno.EMLINK}  # a link met where none was


@dataclass(frozen=True, slots=True)
class FoundFile:
    path: Path  # as found or named: what messages, ids and the format (suffix) come from
    root: Path  # the folder it was found in; its own folder when named on the command line
    source: str  # the real file's absolute path: the same file always has the same source
    beneath: tuple[Path, tuple[str, ...]] | None  # (real folder, parts below it) to open; None: as named


def named(path: Path | str) -> str:
    """A path for an error message (a file name may hold a newline or a bidi override)."""
    return visible(str(path))


def find_files(paths: Iterable[Path], suffixes: tuple[str, ...]) -> tuple[list[FoundFile], list[Path]]:
    """The files to read under `paths` (folders recursively), and those passed over for their type."""
    files: list[FoundFile] = []
    skipped: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UserInputError(f"{named(path)}: no such file or folder")
        if path.is_dir():
            found = sorted(_walk(path), key=lambda item: item.path)
            kept = [item for item in found if item.path.suffix.lower() in suffixes]
            if not kept:
                raise UserInputError(f"{named(path)}: no {_listed(suffixes)} files in this folder")
            files += kept
            skipped += [item.path for item in found if item.path.suffix.lower() not in suffixes]
        elif path.suffix.lower() in suffixes:
            files.append(FoundFile(path, path.parent, path.resolve().as_posix(), None))
        else:
            raise UserInputError(
                f"{named(path)}: unsupported file type {path.suffix or '(none)'!r}; "
                f"expected one of {', '.join(suffixes)}"
            )
    if not files:
        raise UserInputError(f"no documents found: give {_listed(suffixes)} files or folders")
    return files, skipped


def _listed(suffixes: tuple[str, ...]) -> str:
    shown = [suffix for suffix in suffixes if suffix not in (".markdown", ".htm")]  # variants of .md, .html
    return f"{', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else shown[0]


def _walk(root: Path) -> list[FoundFile]:
    real_root = root.resolve()
    found: list[FoundFile] = []
    folders = [root]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.name.startswith("."):
                    continue
                if entry.is_symlink():
                    target = Path(os.path.realpath(path))
                    if not target.is_relative_to(real_root):
                        raise UserInputError(
                            f"{named(path)}: a link to {named(target)}, outside {named(root)}: refused; "
                            "copy the file into the folder, or name it directly"
                        )
                    if target.is_dir():
                        continue  # its files are found where they really are
                    if not target.is_file():
                        raise UserInputError(f"{named(path)}: a link to {named(target)}, which is not a file")
                    parts = target.relative_to(real_root).parts
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(path)
                    continue
                elif entry.is_file(follow_symlinks=False):
                    parts = path.relative_to(root).parts
                else:
                    continue  # FIFOs, sockets, devices: never documents
                found.append(FoundFile(path, root, real_root.joinpath(*parts).as_posix(), (real_root, parts)))
    return found


def read_found(file: FoundFile, max_bytes: int) -> bytes:
    """The file's bytes, from one descriptor opened without following any link below its folder."""
    try:
        fd = _open(file)
    except OSError as exc:
        if file.beneath is not None and exc.errno in _CHANGED:
            raise UserInputError(
                f"{named(file.path)}: changed while being read (replaced by a link, moved or removed); run again"
            ) from None
        raise UserInputError(f"{named(file.path)}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as opened:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserInputError(f"{named(file.path)}: not a regular file")
        if file.beneath is not None and info.st_nlink > 1:
            raise UserInputError(
                f"{named(file.path)}: has {info.st_nlink} names (hard links), so it may be a file from outside "
                "the folder; copy it into the folder instead"
            )
        if info.st_size > max_bytes:
            raise UserInputError(f"{named(file.path)}: {info.st_size:,} bytes, over the {_size(max_bytes)} limit")
        data = opened.read(max_bytes + 1)  # never more, whatever the size was a moment ago
    if len(data) > max_bytes:
        raise UserInputError(f"{named(file.path)}: over the {_size(max_bytes)} limit")
    return data


def _open(file: FoundFile) -> int:
    if file.beneath is None:
        return os.open(file.path, _NO_WAIT)
    folder, parts = file.beneath
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.open(parts[-1], _NO_WAIT | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def _size(count: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} B"


def decoded_text(file: FoundFile, data: bytes) -> str:
    """The bytes of a text file as text, or a refusal naming the line of the first bad byte."""
    if b"\x00" in data:
        raise UserInputError(f"{named(file.path)}: binary file (contains NUL bytes), expected UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)  # past the BOM
        line = data[:start].count(b"\n") + 1
        raise UserInputError(f"{named(file.path)}:{line}: not valid UTF-8 (byte {start})") from None
