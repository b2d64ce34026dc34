"""Small helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path

from graph.persona import load_persona

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PERSONA = load_persona(REPO / "data" / "persona.yaml")  # the sample company's phrases
PHRASES = SAMPLE_PERSONA.phrases


def write(folder: Path, name: str, content: str | bytes) -> Path:
    """Write a file under `folder` (creating parents): text as UTF-8, bytes as they are."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(*records: object) -> str:
    """JSON Lines text, one record a line."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
