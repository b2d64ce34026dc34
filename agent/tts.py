"""`speakable_text` as a LiveKit TTS text transform, installed after LiveKit's own markdown and emoji
filters (`tts_text_transforms()`, given to the `AgentSession` by `voicerag/worker.py::speech`).

The transform sees the answer as a stream of LLM chunks, and a number may be split across them
("03-12" + "34-5678"), so it holds text back to the last sentence end and normalises whole
sentences. That costs nothing with a non-streaming TTS (OpenAI's: LiveKit's adapter sends it
whole sentences anyway); a streaming TTS gets each sentence once it is complete. The language is
decided per sentence (`sentence_language`), so a call that switches language is read right.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

from livekit.agents.voice.transcription.text_transforms import TextTransforms

from graph.tts_rules.shared import DASHES, TILDES
from graph.tts_text import speakable_text
from retrievers.language import Language, detect_language

# A sentence ends at 。！？!? or a newline, or at a period before whitespace and a non-digit (so
# "3.5", "No. 5" and "9 a.m. – 6 p.m." stay whole: their rules need what comes after the period).
_SENTENCE_END = re.compile(rf"[。！？!?\n]|\.\s+(?=[^\d\s{DASHES}{TILDES}])")
_MAX_HELD = 400  # never hold more than this: a run-on answer goes out at its last space or 、
_SOFT_BREAK = re.compile(r"[\s、，,](?=[^\s、，,]*\Z)")
# Japanese punctuation marks a Japanese sentence even when Latin letters outnumber its kanji
# ("電話 03-5400-8820（平日9:30〜17:30）" after an e-mail address).
_JAPANESE_PUNCTUATION = re.compile(r"[。、「」（）：！？]")


def sentence_language(text: str) -> Language:
    return "ja" if _JAPANESE_PUNCTUATION.search(text) else detect_language(text)


def _split_point(held: str) -> int:
    """How much of `held` can be normalised now (0: wait for more)."""
    end = 0
    for match in _SENTENCE_END.finditer(held):
        end = match.end()
    if not end and len(held) > _MAX_HELD and (soft := _SOFT_BREAK.search(held)):
        end = soft.end()
    return end


def speakable_transform(language: Language | None = None) -> Callable[[AsyncIterable[str]], AsyncIterator[str]]:
    """A TTS text transform: whole sentences through `speakable_text` (in `language`, or each
    sentence's own when None)."""

    def normalise(text: str) -> str:
        return speakable_text(text, language or sentence_language(text))

    async def transform(chunks: AsyncIterable[str]) -> AsyncIterator[str]:
        held = ""
        async for chunk in chunks:
            held += chunk
            if cut := _split_point(held):
                ready, held = held[:cut], held[cut:]
                yield normalise(ready)
        if held:
            yield normalise(held)

    return transform


def tts_text_transforms(language: Language | None = None) -> Sequence[TextTransforms]:
    """LiveKit's default transforms, then ours (markdown and emoji are gone before numbers are read)."""
    return ["filter_markdown", "filter_emoji", speakable_transform(language)]
