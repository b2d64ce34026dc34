"""What every LangSmith run carries, masked before it leaves the process: the product's masker
(`retrievers/masking`) over every string of a run's inputs, outputs and metadata, at any depth.

The LangSmith client calls `masked` (its `hide_inputs`/`hide_outputs`/`hide_metadata`) on the raw
objects the tracer holds: dicts and lists, LangChain messages and documents, the graph's state. Any
pydantic model or dataclass becomes its fields (as the client would serialise it), anything else
unknown its masked `str`. The same texts recur in many runs of a turn (the question is in every
node's input), so masked texts are memoised: each distinct text is masked once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from retrievers.masking import mask

MEMO_TEXTS = 2048  # distinct texts remembered (a few turns' worth)
_PLAIN = (int, float, bool, type(None))


@lru_cache(maxsize=MEMO_TEXTS)
def masked_text(text: str) -> str:
    return mask(text)


def masked(value: Any) -> Any:
    """A JSON-like copy of `value` with every string masked (dict keys are field names: kept)."""
    if isinstance(value, str):
        return masked_text(value) if value else value
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [masked(item) for item in value]
    if isinstance(value, BaseModel):  # messages, documents, the graph's pydantic values
        return masked(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return masked(dataclasses.asdict(value))
    return masked_text(str(value))
