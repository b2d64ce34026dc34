"""Extractive answers: the sentences of the graded documents that best match the question.

Used when no chat model is configured, or when it fails or is too slow (the degraded mode).
Nothing is paraphrased, so nothing can be invented: the agent reads out what the documents say.
"""

from __future__ import annotations

import math
import re

from graph.state import DocumentHit
from retrievers.keyword import tokenize
from retrievers.language import Language

MAX_SENTENCES = 2
MAX_CHARS = 320
_SENTENCE_END = re.compile(r"(?<=[。！？!?])\s*|(?<=[.])\s+|\n+")
_MARKUP = re.compile(r"^[#>*\-\s|]+|[*_`|]+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a document, without Markdown headings and markup (they are not read out)."""
    parts = (part.strip() for part in _SENTENCE_END.split(text))
    sentences = (_MARKUP.sub("", part).strip() for part in parts if not part.startswith("#"))
    return [s for s in sentences if len(s) > 1]


def extract_answer(question: str, documents: list[DocumentHit], language: Language) -> str:
    """Up to two sentences, best matching the question, from documents in the question's language
    when there are any. Sentences keep their order in the document."""
    same_language = [d for d in documents if d["lang"] == language] or documents
    wanted = set(tokenize(question))
    candidates: list[tuple[float, int, int, str]] = []
    for doc_rank, doc in enumerate(same_language):
        for position, sentence in enumerate(split_sentences(doc["text"])):
            tokens = tokenize(sentence)
            if not tokens:
                continue
            overlap = len(wanted.intersection(tokens))
            # Prefer the best documents and sentences that cover the question without rambling.
            score = overlap / math.sqrt(len(tokens)) - 0.3 * doc_rank
            candidates.append((score, doc_rank, position, sentence))
    if not candidates:
        return ""
    chosen = sorted(candidates, key=lambda c: -c[0])[:MAX_SENTENCES]
    chosen.sort(key=lambda c: (c[1], c[2]))
    answer = ""
    for _, _, _, sentence in chosen:
        joiner = "" if language == "ja" or not answer else " "
        if answer and len(answer) + len(sentence) > MAX_CHARS:
            break
        answer += joiner + sentence
    return answer[: MAX_CHARS * 2]
