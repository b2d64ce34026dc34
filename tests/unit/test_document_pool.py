"""Files read by several processes (`load_documents(..., workers=N)`): the same documents in the same
order as one process reads them, and the same first error, naming its file, for a broken one."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import office_files as office

from retrievers.documents import load_documents
from retrievers.errors import UserInputError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pool") / "kb"
    office.write_office_corpus(folder)
    return folder


def test_several_processes_read_the_same_documents_in_the_same_order(corpus: Path) -> None:
    alone, pooled = load_documents([corpus]), load_documents([corpus], workers=3)
    assert len(alone.documents) > 5 and len(alone.files) > 3  # control: a real mixed corpus
    assert [d.model_dump() for d in pooled.documents] == [d.model_dump() for d in alone.documents]
    assert (pooled.files, pooled.skipped) == (alone.files, alone.skipped)


def test_the_first_broken_file_in_order_is_named_whatever_the_processes(corpus: Path, tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    for name in ("a_scanned.pdf", "b_encrypted.pdf"):  # both broken: the first in file order is named
        (folder / name).write_bytes(office.scanned_pdf() if "scanned" in name else office.encrypted_pdf())
    (folder / "c_guide.pdf").write_bytes(office.english_pdf())
    errors = []
    for workers in (1, 2):
        with pytest.raises(UserInputError) as raised:
            load_documents([folder], workers=workers)
        errors.append(str(raised.value))
    assert errors[0] == errors[1] and "a_scanned.pdf" in errors[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_reading_reports_progress_file_by_file(corpus: Path, workers: int) -> None:
    reported: list[tuple[str, int, int]] = []
    loaded = load_documents([corpus], workers=workers, progress=lambda *step: reported.append(step))
    files = len(loaded.files)
    assert reported == [("read", done, files) for done in range(1, files + 1)]
