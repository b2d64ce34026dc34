"""Keyword side of hybrid search: a BM25 index over the chunks of one collection.

One tokenizer serves both languages (see `tokenize`): character n-grams for Japanese text (no
dictionary needed; on the shared eval sets they beat morphological tokens on recall@1), stemmed
words for English. The index is derived from Chroma, never edited in place: it is
rebuilt when the collection changes (see `retrievers/knowledge_base/keyword_upkeep.py`) and can be
saved beside the data. A saved copy records the tokenizer it was built with (`tokenizer_signature`):
tokens from another tokenizer would silently miss, so such a copy is refused, not reused.

The index keeps raw term frequencies (a sparse chunk x term matrix) and scores BM25 at query time,
with the formula and parameters of bm25s's "lucene" method (k1 1.5, b 0.75). bm25s itself bakes
idf and the average length into its matrix at build time; here they are computed over the chunks a
search may see (`mask`: access rules, categories, languages), so a filtered search scores exactly as
an index built on those chunks alone would (bm25s is the tests' oracle for that). Because nothing
global is baked in, a write needs no rebuild: `updated` derives a new index from this one and the
changed chunks alone (only those are tokenised), scoring exactly as an index built from scratch.
An index is never modified once built: searches holding the old one keep a consistent view.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import scipy.sparse
import Stemmer

from retrievers.access import Viewer, roles_of_stored
from retrievers.language import has_japanese

# Bump when `tokenize` changes in a way the settings below do not show (saved indexes are then rebuilt).
TOKENIZER_VERSION = 1

_NORMAL_FORM: Final = "NFKC"
_RUN = re.compile(r"[^\W_]+")  # letters, digits and Japanese script, split at space and punctuation
_LATIN_WORD = re.compile(r"[a-z0-9]{2,}")
_JAPANESE_NGRAMS = (1, 2)  # character n-gram sizes for Japanese runs
_STEMMER_LANGUAGE = "english"
_STEMMER = Stemmer.Stemmer(_STEMMER_LANGUAGE)
_BM25: dict[str, Any] = {"k1": 1.5, "b": 0.75, "method": "lucene"}
# How the index is stored: a copy saved in another layout (bm25s's, before this one) is rebuilt.
_STORAGE = "term-frequencies-v1"
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
        "storage": _STORAGE,
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
_T = TypeVar("_T")

Mask = np.ndarray  # one bool per row: True where a search may use the chunk


@dataclass(frozen=True, slots=True)
class KeywordHit:
    row: int
    score: float


class KeywordIndex:
    """BM25 over chunk texts, scored over the chunks a mask lets through, with per-chunk metadata
    for exact filtering (`mask`) and access control (`access_mask`)."""

    def __init__(self, chunk_ids: Sequence[str], texts: Sequence[str], metadatas: Sequence[Mapping[str, Any]]):
        if not (len(chunk_ids) == len(texts) == len(metadatas)):
            raise ValueError("chunk_ids, texts and metadatas must have the same length")
        vocabulary: dict[str, int] = {}
        rows, columns, lengths = _count_tokens(map(tokenize, texts), len(texts), vocabulary)
        # COO → CSC adds up repeated (row, term) pairs: each cell is a term frequency.
        tf = scipy.sparse.csc_array(
            (np.ones(len(columns), dtype=np.float32), (rows, columns)), shape=(len(texts), len(vocabulary))
        )
        self._attach(list(chunk_ids), [dict(m) for m in metadatas], list(vocabulary), tf, lengths.astype(np.float64))

    def _attach(
        self,
        chunk_ids: list[str],
        metadatas: list[dict[str, Any]],
        terms: list[str],
        tf: Any,
        lengths: np.ndarray | None = None,
        vocabulary: dict[str, int] | None = None,
    ) -> None:
        """`lengths` and `vocabulary`, when the caller already has them, spare a pass over the matrix
        and the terms (`updated`, which must stay well under a second at 100k chunks)."""
        self.chunk_ids = chunk_ids
        self.metadatas = metadatas
        self._row_of = {chunk_id: row for row, chunk_id in enumerate(chunk_ids)}
        self._terms = terms
        self._vocabulary = {term: column for column, term in enumerate(terms)} if vocabulary is None else vocabulary
        self._tf = tf  # chunks x terms, by column: a query reads only its terms' columns
        if lengths is None:
            lengths = np.asarray(tf.sum(axis=1), dtype=np.float64).reshape(-1)
        self._lengths = lengths  # tokens per chunk
        self._document_frequency = np.diff(tf.indptr)  # over every chunk
        self._columns: dict[str, np.ndarray] = {}
        self._groups: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._masks: dict[str, Mask] = {}
        self._access: dict[str, Mask | None] = {}

    # ---- deriving the index of the next version

    def updated(
        self,
        remove: Iterable[str],
        chunk_ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
    ) -> KeywordIndex:
        """A new index: this one without the chunks `remove` names (ids not here are ignored), with
        the given chunks added (replacing any row of the same id). Only the added texts are
        tokenised; new terms get new columns, and terms no chunk uses any more keep an empty one
        (invisible: an empty column scores and weighs as an unknown term).

        Added chunks are merged in by id, so an index whose rows are sorted by chunk id (as the
        knowledge base builds them) stays sorted: it then equals, row for row and score for score,
        `KeywordIndex` built from scratch on the resulting chunks in id order."""
        if not (len(chunk_ids) == len(texts) == len(metadatas)):
            raise ValueError("chunk_ids, texts and metadatas must have the same length")
        if len(set(chunk_ids)) != len(chunk_ids):
            raise ValueError("the added chunks repeat an id")
        gone = {row for chunk_id in (*remove, *chunk_ids) if (row := self._row_of.get(chunk_id)) is not None}
        kept = np.ones(len(self), dtype=bool)
        kept[list(gone)] = False
        kept_ids = list(itertools.compress(self.chunk_ids, kept)) if gone else self.chunk_ids

        order = sorted(range(len(chunk_ids)), key=chunk_ids.__getitem__)
        # Final row of each added chunk: its place among the kept ids, plus the added ones before it.
        added_rows = np.fromiter(
            (bisect.bisect_left(kept_ids, chunk_ids[i]) + n for n, i in enumerate(order)), np.int64, len(order)
        )
        total = len(kept_ids) + len(order)
        is_added = np.zeros(total, dtype=bool)
        is_added[added_rows] = True
        final_of_old = np.full(len(self), -1, dtype=np.int64)
        final_of_old[kept] = np.flatnonzero(~is_added)

        vocabulary = self._vocabulary
        tokens = [tokenize(texts[i]) for i in order]
        if any(token not in vocabulary for each in tokens for token in each):
            vocabulary = dict(vocabulary)  # a copy: the old index keeps its own (searches may be reading it)
        local_rows, columns, added_lengths = _count_tokens(tokens, len(tokens), vocabulary)
        new_terms = itertools.islice(vocabulary, len(self._terms), None)  # a dict keeps insertion order
        terms = self._terms if vocabulary is self._vocabulary else [*self._terms, *new_terms]
        added = scipy.sparse.csc_array(
            (np.ones(len(columns), dtype=np.float32), (local_rows, columns)), shape=(len(order), len(terms))
        )
        tf = _merge_columns(self._tf, final_of_old, added, added_rows, total)

        lengths = np.empty(total, dtype=np.float64)
        lengths[~is_added] = self._lengths[kept]
        lengths[added_rows] = added_lengths
        kept_metadatas = list(itertools.compress(self.metadatas, kept)) if gone else self.metadatas
        index = KeywordIndex.__new__(KeywordIndex)
        index._attach(
            _inserted(kept_ids, [chunk_ids[i] for i in order], added_rows),
            _inserted(kept_metadatas, [dict(metadatas[i]) for i in order], added_rows),
            terms,
            tf,
            lengths,
            vocabulary,
        )
        added_metadatas = [metadatas[i] for i in order]
        for key, column in self._columns.items():  # the filter and access columns searches read: carried over
            derived = np.empty(total, dtype=object)
            derived[~is_added] = column[kept]
            derived[added_rows] = [str(meta.get(key, "")) for meta in added_metadatas]
            index._columns[key] = derived
        return index

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def row(self, chunk_id: str) -> int | None:
        return self._row_of.get(chunk_id)

    # ---- scoring

    def scores(self, query: str, mask: Mask | None = None) -> np.ndarray:
        """BM25 score of every chunk (0 where the mask excludes it), with idf and the average
        length taken over the chunks the mask keeps: the scores of an index of those chunks alone."""
        scores = np.zeros(len(self), dtype=np.float32)
        wanted = Counter(self._vocabulary[t] for t in tokenize(query) if t in self._vocabulary)
        visible, average_length = self._statistics(mask)
        if not wanted or not visible or not average_length:
            return scores
        terms = np.fromiter(wanted.keys(), dtype=np.int64, count=len(wanted))
        repeats = np.fromiter(wanted.values(), dtype=np.float64, count=len(wanted))  # bm25s counts each
        starts, ends = self._tf.indptr[terms], self._tf.indptr[terms + 1]
        rows = np.concatenate([self._tf.indices[s:e] for s, e in zip(starts, ends, strict=True)])
        tf = np.concatenate([self._tf.data[s:e] for s, e in zip(starts, ends, strict=True)]).astype(np.float64)
        term_of = np.repeat(np.arange(len(terms)), ends - starts)
        if mask is None:
            frequency = ends - starts
        else:
            keep = mask[rows]
            rows, tf, term_of = rows[keep], tf[keep], term_of[keep]
            frequency = np.bincount(term_of, minlength=len(terms))
        k1, b = float(_BM25["k1"]), float(_BM25["b"])
        idf = np.log(1.0 + (visible - frequency + 0.5) / (frequency + 0.5))  # Lucene's, never negative
        norm = k1 * (1.0 - b + b * self._lengths[rows] / average_length)
        weights = (idf * repeats)[term_of] * tf / (tf + norm)
        scores[:] = np.bincount(rows, weights=weights, minlength=len(self))
        return scores

    def _statistics(self, mask: Mask | None) -> tuple[int, float]:
        """(chunks, their average length in tokens) over the chunks the mask keeps."""
        if mask is None:
            return len(self), float(self._lengths.mean()) if len(self) else 0.0
        visible = int(np.count_nonzero(mask))
        return visible, float(self._lengths[mask].mean()) if visible else 0.0

    def search(self, query: str, limit: int, mask: Mask | None = None) -> list[KeywordHit]:
        """The best `limit` chunks with a positive score, best first."""
        scores = self.scores(query, mask)
        if not len(scores):
            return []
        limit = min(limit, len(scores))
        top = np.argpartition(-scores, limit - 1)[:limit]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [KeywordHit(int(row), float(scores[row])) for row in top if scores[row] > 0]

    def coverage(
        self, query: str, text: str, mask: Mask | None = None, weights: Mapping[str, float] | None = None
    ) -> float:
        """Share of the query's tokens found in `text`, weighted by idf (0..1): how much of what
        was asked the text talks about. Rare words count most; unknown words count fully.
        `weights`: `query_weights(query, mask)`, computed once when many texts are measured."""
        weights = self.query_weights(query, mask) if weights is None else weights
        if not weights:
            return 0.0
        present = set(tokenize(text))
        return sum(w for t, w in weights.items() if t in present) / sum(weights.values())

    def query_weights(self, query: str, mask: Mask | None = None) -> dict[str, float]:
        """The idf of each distinct token of `query`, over the chunks the mask keeps."""
        total = len(self) if mask is None else int(np.count_nonzero(mask))
        return {token: self._idf(token, total, mask) for token in set(tokenize(query))}

    def idf(self, token: str, mask: Mask | None = None) -> float:
        """BM25's inverse document frequency of a token (high for rare tokens, ~0 for particles),
        over the chunks the mask keeps."""
        return self._idf(token, len(self) if mask is None else int(np.count_nonzero(mask)), mask)

    def _idf(self, token: str, total: int, mask: Mask | None) -> float:
        column = self._vocabulary.get(token)
        if column is None:
            frequency = 0
        elif mask is None:
            frequency = int(self._document_frequency[column])
        else:
            rows = self._tf.indices[self._tf.indptr[column] : self._tf.indptr[column + 1]]
            frequency = int(np.count_nonzero(mask[rows]))
        return math.log(1 + (max(total, 1) + 0.5) / (frequency + 0.5))

    # ---- masks: which chunks a search may use

    def visible(self, viewer: Viewer, filters: Mapping[str, Any] | None = None) -> Mask | None:
        """The chunks `viewer` may see that also match `filters` (None: every chunk)."""
        allowed, matching = self.access_mask(viewer), self.mask(filters or {})
        if allowed is None or matching is None:
            return matching if allowed is None else allowed
        return allowed & matching

    def access_mask(self, viewer: Viewer) -> Mask | None:
        """The chunks `viewer` may see (`retrievers/access.py`); None when that is every chunk."""
        key = viewer.key
        if key not in self._access:
            if len(self._access) >= _MAX_CACHED_MASKS:
                self._access.clear()
            roles, by_roles = self._group("roles")
            tenants, by_tenant = self._group("tenant")
            roles_allow = np.fromiter((viewer.can_see(roles_of_stored(r), None) for r in roles), bool, len(roles))
            tenant_allows = np.fromiter((viewer.can_see((), str(t) or None) for t in tenants), bool, len(tenants))
            allowed = roles_allow[by_roles] & tenant_allows[by_tenant]
            self._access[key] = None if bool(allowed.all()) else allowed
        return self._access[key]

    def mask(self, filters: Mapping[str, Any]) -> Mask | None:
        """The chunks whose metadata equals every filter (a list means any of); None: no filter."""
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

    def _compute_mask(self, filters: Mapping[str, Any]) -> Mask:
        keep = np.ones(len(self), dtype=bool)
        for key, wanted in filters.items():
            column = self._column(key)
            allowed = wanted if isinstance(wanted, list | tuple | set) else [wanted]
            keep &= np.isin(column, np.asarray([str(v) for v in allowed], dtype=object))
        return keep

    def _column(self, key: str) -> np.ndarray:
        if key not in self._columns:
            self._columns[key] = np.asarray([str(m.get(key, "")) for m in self.metadatas], dtype=object)
        return self._columns[key]

    def _group(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """A metadata column's distinct values, and which one each row holds (a handful of role sets
        and tenants: the access rule is evaluated once per distinct value, not per chunk)."""
        if key not in self._groups:
            values, inverse = np.unique(self._column(key).astype(str), return_inverse=True)
            self._groups[key] = (values, inverse.reshape(-1))
        return self._groups[key]

    # ---- persistence: the index is derived, so a saved copy is only a start-up shortcut

    def save(self, folder: Path) -> None:
        """Save to `folder`. The tokenizer signature is written last: a save cut short has none,
        so `load` refuses it."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / _SIGNATURE_FILE).unlink(missing_ok=True)
        scipy.sparse.save_npz(folder / _MATRIX_FILE, self._tf)
        with (folder / "chunks.json").open("w", encoding="utf-8") as file:
            json.dump(
                {"chunk_ids": self.chunk_ids, "metadatas": self.metadatas, "terms": self._terms},
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
        tf = scipy.sparse.csc_array(scipy.sparse.load_npz(folder / _MATRIX_FILE))
        if tf.shape != (len(data["chunk_ids"]), len(data["terms"])):
            raise ValueError(f"{folder}: the saved matrix does not match its chunks and terms")
        index = cls.__new__(cls)
        index._attach(data["chunk_ids"], data["metadatas"], data["terms"], tf)
        return index


def _count_tokens(
    token_lists: Iterable[list[str]], count: int, vocabulary: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column) of every token of `count` texts' tokens, and each text's length in tokens.
    New terms are added to `vocabulary`, numbered from its size."""
    columns = array("q")  # compact: a 100k-chunk corpus has tens of millions of tokens
    lengths = np.zeros(count, dtype=np.int64)
    for row, tokens in enumerate(token_lists):
        columns.extend(vocabulary.setdefault(token, len(vocabulary)) for token in tokens)
        lengths[row] = len(tokens)
    rows = np.repeat(np.arange(count, dtype=np.int64), lengths)
    return rows, np.frombuffer(columns, dtype=np.int64) if columns else np.zeros(0, np.int64), lengths


def _inserted(kept: list[_T], added: list[_T], rows: np.ndarray) -> list[_T]:
    """`kept` with `added[n]` placed so that it ends up at `rows[n]` (rows increasing)."""
    merged: list[_T] = []
    start = 0
    for n, item in enumerate(added):
        stop = int(rows[n]) - n  # kept items before this added one
        merged += kept[start:stop]
        merged.append(item)
        start = stop
    return merged + kept[start:]


def _merge_columns(old: Any, final_of_old: np.ndarray, added: Any, added_rows: np.ndarray, total: int) -> Any:
    """A CSC matrix of `total` rows: `old`'s cells moved to rows `final_of_old` (-1: dropped), and
    `added`'s rows placed at `added_rows`, each column's new cells after its old ones.

    A write changes a few thousand cells of the tens of millions a 100k-chunk index holds: the old
    arrays are copied in the long runs between the changes, and row numbers remapped in one gather."""
    width = added.shape[1]
    old_indptr = np.asarray(old.indptr, dtype=np.int64)
    added_indptr = np.asarray(added.indptr, dtype=np.int64)
    old_width, old_nnz = len(old_indptr) - 1, int(old_indptr[-1])
    index_type = np.int32 if max(old_nnz + added.nnz, total, width) < np.iinfo(np.int32).max else np.int64
    moved = final_of_old.astype(index_type)[old.indices]
    dropped = np.flatnonzero(moved < 0)  # the cells of removed rows
    indptr = np.empty(width + 1, dtype=np.int64)
    indptr[: old_width + 1] = old_indptr - np.searchsorted(dropped, old_indptr)
    indptr[old_width + 1 :] = indptr[old_width]  # new terms: no old cells
    indptr += added_indptr

    # Changes in old-array order: new cells at the end of their column's old cells, then drops.
    filled = np.flatnonzero(np.diff(added_indptr))
    positions = np.concatenate((old_indptr[np.minimum(filled + 1, old_width)], dropped))
    kinds = np.concatenate((np.zeros(len(filled), np.int8), np.ones(len(dropped), np.int8)))  # 0: insert, 1: drop
    columns = np.concatenate((filled, np.full(len(dropped), -1)))
    order = np.lexsort((kinds, positions))
    new_rows = added_rows[added.indices].astype(index_type)
    new_data = added.data.astype(old.data.dtype)
    indices = np.empty(int(indptr[-1]), dtype=index_type)
    data = np.empty(int(indptr[-1]), dtype=old.data.dtype)
    source = target = 0
    for position, kind, column in zip(
        positions[order].tolist(), kinds[order].tolist(), columns[order].tolist(), strict=True
    ):
        run = position - source
        indices[target : target + run] = moved[source:position]
        data[target : target + run] = old.data[source:position]
        target, source = target + run, position
        if kind:  # a dropped cell
            source += 1
            continue
        start, stop = int(added_indptr[column]), int(added_indptr[column + 1])
        indices[target : target + stop - start] = new_rows[start:stop]
        data[target : target + stop - start] = new_data[start:stop]
        target += stop - start
    indices[target:] = moved[source:]
    data[target:] = old.data[source:]
    return scipy.sparse.csc_array((data, indices, indptr.astype(index_type)), shape=(total, width))


_MATRIX_FILE = "term_frequencies.npz"
_SIGNATURE_FILE = "tokenizer.json"  # beside the index: what its tokens were made by


def _saved_signature(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / _SIGNATURE_FILE).read_text(encoding="utf-8"))["signature"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
