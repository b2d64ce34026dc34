"""Keyword side of hybrid search: a BM25 index (bm25s) over the chunks of one collection.

One tokenizer serves both languages (see `tokenize`): character n-grams for Japanese text (no
dictionary needed; on the shared eval sets they beat morphological tokens on recall@1), stemmed
words for English. The index is derived from Chroma, never edited in place: it is
rebuilt when the collection changes (see `retrievers/knowledge_base/keyword_upkeep.py`) and can be
saved beside the data. A saved copy records the tokenizer it was built with (`tokenizer_signature`):
tokens from another tokenizer would silently miss, so such a copy is refused, not reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import bm25s
import numpy as np
import Stemmer

from retrievers.language import has_japanese

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG and logs every build

# Bump when `tokenize` changes in a way the settings below do not show (saved indexes are then rebuilt).
TOKENIZER_VERSION = 1

_NORMAL_FORM: Final = "NFKC"
_RUN = re.compile(r"[^\W_]+")  # letters, digits and Japanese script, split at space and punctuation
_LATIN_WORD = re.compile(r"[a-z0-9]{2,}")
_JAPANESE_NGRAMS = (1, 2)  # character n-gram sizes for Japanese runs
_STEMMER_LANGUAGE = "english"
_STEMMER = Stemmer.Stemmer(_STEMMER_LANGUAGE)
_BM25: dict[str, Any] = {"k1": 1.5, "b": 0.75, "method": "lucene"}
# Very common English function words carry no topic; dropping them keeps short voice questions
# from matching on "the" and "is" (measured: +1 point of recall@1 on en/squad_dev).
_STOPWORDS = frozenset(
    "a an and are as at be by do does for from how i in is it its me my of on or our the this to "
    "was what when where which who why will with you your".split()
)


@lru_cache(maxsize=8192)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def tokenizer_signature() -> str:
    """What shapes tokens and their scores, as one short string: equal signatures, same tokens.

    Read at call time (not cached), so a test that changes a setting sees a new signature."""
    settings = {
        "version": TOKENIZER_VERSION,
        "normal_form": _NORMAL_FORM,
        "run": _RUN.pattern,
        "latin_word": _LATIN_WORD.pattern,
        "japanese_ngrams": list(_JAPANESE_NGRAMS),
        "stemmer": _STEMMER_LANGUAGE,
        "stopwords": sorted(_STOPWORDS),
        "bm25": _BM25,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return f"v{TOKENIZER_VERSION}-{digest}"


class IncompatibleIndexError(ValueError):
    """A saved keyword index built with another tokenizer (or by a version that did not record it)."""


def tokenize(text: str) -> list[str]:
    """Tokens for BM25.

    Japanese text (any kana or kanji): character unigrams + bigrams of every run of letters,
    digits and Japanese script (digits and Latin letters included: they matter in Japanese
    questions, "KH-300の保証"), plus the stemmed Latin words, so that product codes and English
    names also match English documents. Other text: stemmed English words without stopwords.
    """
    normal = unicodedata.normalize(_NORMAL_FORM, text).lower()
    tokens: list[str] = []
    if has_japanese(normal):
        for run in _RUN.findall(normal):
            for n in _JAPANESE_NGRAMS:
                tokens.extend(run[i : i + n] for i in range(len(run) - n + 1))
            tokens.extend(_stem(word) for word in _LATIN_WORD.findall(run))
        return tokens
    return [_stem(word) for word in _RUN.findall(normal) if word not in _STOPWORDS]


_MAX_CACHED_MASKS = 64


@dataclass(frozen=True, slots=True)
class KeywordHit:
    row: int
    score: float


class KeywordIndex:
    """BM25 over chunk texts, with per-chunk metadata for exact filtering by mask."""

    def __init__(self, chunk_ids: Sequence[str], texts: Sequence[str], metadatas: Sequence[Mapping[str, Any]]):
        if not (len(chunk_ids) == len(texts) == len(metadatas)):
            raise ValueError("chunk_ids, texts and metadatas must have the same length")
        self.chunk_ids = list(chunk_ids)
        self.metadatas = [dict(m) for m in metadatas]
        self._row_of = {chunk_id: row for row, chunk_id in enumerate(self.chunk_ids)}
        self._columns: dict[str, np.ndarray] = {}
        self._masks: dict[str, np.ndarray] = {}
        self._bm25: bm25s.BM25 | None = None
        self._document_frequency: Counter[str] = Counter()
        if self.chunk_ids:
            tokenized = [tokenize(t) for t in texts]
            for tokens in tokenized:
                self._document_frequency.update(set(tokens))
            self._bm25 = bm25s.BM25(**_BM25)
            self._bm25.index(tokenized, show_progress=False)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def row(self, chunk_id: str) -> int | None:
        return self._row_of.get(chunk_id)

    def scores(self, query: str, mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every chunk (0 where the mask excludes it)."""
        tokens = tokenize(query)
        if self._bm25 is None or not tokens:
            return np.zeros(len(self), dtype=np.float32)
        scores = np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)
        return scores * mask if mask is not None else scores

    def search(self, query: str, limit: int, mask: np.ndarray | None = None) -> list[KeywordHit]:
        """The best `limit` chunks with a positive score, best first."""
        scores = self.scores(query, mask)
        if not len(scores):
            return []
        limit = min(limit, len(scores))
        top = np.argpartition(-scores, limit - 1)[:limit]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [KeywordHit(int(row), float(scores[row])) for row in top if scores[row] > 0]

    def coverage(self, query: str, text: str) -> float:
        """Share of the query's tokens found in `text`, weighted by idf (0..1): how much of what
        was asked the text talks about. Rare words count most; unknown words count fully."""
        wanted = set(tokenize(query))
        if not wanted:
            return 0.0
        present = set(tokenize(text))
        weights = {token: self.idf(token) for token in wanted}
        return sum(w for t, w in weights.items() if t in present) / sum(weights.values())

    def idf(self, token: str) -> float:
        """BM25's inverse document frequency of a token (high for rare tokens, ~0 for particles)."""
        total = max(len(self), 1)
        return math.log(1 + (total + 0.5) / (self._document_frequency.get(token, 0) + 0.5))

    def mask(self, filters: Mapping[str, Any]) -> np.ndarray | None:
        """A 0/1 mask of chunks whose metadata equals every filter (a list means any of)."""
        if not filters:
            return None
        key = repr(
            sorted(
                (k, sorted(map(str, v)) if isinstance(v, list | tuple | set) else str(v)) for k, v in filters.items()
            )
        )
        if key not in self._masks:  # the same few filters (categories, languages) come back every turn
            if len(self._masks) >= _MAX_CACHED_MASKS:
                self._masks.clear()
            self._masks[key] = self._compute_mask(filters)
        return self._masks[key]

    def _compute_mask(self, filters: Mapping[str, Any]) -> np.ndarray:
        keep = np.ones(len(self), dtype=bool)
        for key, wanted in filters.items():
            column = self._column(key)
            allowed = wanted if isinstance(wanted, list | tuple | set) else [wanted]
            keep &= np.isin(column, np.asarray([str(v) for v in allowed], dtype=object))
        return keep.astype(np.float32)

    def _column(self, key: str) -> np.ndarray:
        if key not in self._columns:
            self._columns[key] = np.asarray([str(m.get(key, "")) for m in self.metadatas], dtype=object)
        return self._columns[key]

    # ---- persistence: the index is derived, so a saved copy is only a start-up shortcut ----

    def save(self, folder: Path) -> None:
        """Save to `folder`. The tokenizer signature is written last: a save cut short has none,
        so `load` refuses it."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / _SIGNATURE_FILE).unlink(missing_ok=True)
        if self._bm25 is not None:
            self._bm25.save(str(folder / "bm25"))
        with (folder / "chunks.json").open("w", encoding="utf-8") as file:
            json.dump(
                {"chunk_ids": self.chunk_ids, "metadatas": self.metadatas, "df": self._document_frequency},
                file,
                ensure_ascii=False,
            )
        (folder / _SIGNATURE_FILE).write_text(json.dumps({"signature": tokenizer_signature()}), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> KeywordIndex:
        """A saved index; `IncompatibleIndexError` when it was not built by this tokenizer."""
        saved_with = _saved_signature(folder)
        if saved_with != tokenizer_signature():
            raise IncompatibleIndexError(
                f"{folder} was built with tokenizer {saved_with or 'unknown'}, not {tokenizer_signature()}"
            )
        with (folder / "chunks.json").open(encoding="utf-8") as file:
            data = json.load(file)
        index = cls([], [], [])
        index.chunk_ids = data["chunk_ids"]
        index.metadatas = data["metadatas"]
        index._row_of = {chunk_id: row for row, chunk_id in enumerate(index.chunk_ids)}
        index._document_frequency = Counter(data.get("df", {}))
        if index.chunk_ids:
            index._bm25 = bm25s.BM25.load(str(folder / "bm25"))
        return index


_SIGNATURE_FILE = "tokenizer.json"  # beside the index, as bm25s keeps its tokenizer's settings


def _saved_signature(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / _SIGNATURE_FILE).read_text(encoding="utf-8"))["signature"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
