"""Real audio in, fixed-latency fakes around it: what `voice_e2e` puts an `AgentSession` through.

- `spoken_question`: a question said by espeak-ng (a local synthesiser, `scripts/system-deps.sh`)
  into a WAV, cached under `benchmarks/.data/voice_e2e/`, read back as 16 kHz mono int16 with its
  leading and trailing silence cut, so the clip's last sample is the end of speech.
- `ScriptedMicrophone`: the caller's track, 20 ms frames at 16 kHz in real time: silence, and a
  question's samples when `say` is called. It notes when the first and last voiced frame went in.
- `ScriptedSTT`: a streaming recognizer that knows the script: when the microphone starts a question
  it sends start of speech, an interim half-way, a preflight transcript `preflight_delay_s` after the
  audio ends (the early, stable transcript of STTs with eager end of turn; without the final
  punctuation, as those differ from the final), and the final transcript `final_delay_s` after the
  audio ends (what a cloud STT's endpointing costs), then end of speech.
- `FixedTTFTLLM`: a plain LiveKit chat model whose first token comes `ttft_s` after the request
  (the RAG baseline's model; ours and the LLMAdapter baseline use `FixedTTFTChatModel`, the same
  delay as a LangChain model).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectOptions, llm, stt, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
from livekit.agents.utils.audio import AudioBuffer
from livekit.agents.voice.io import AudioInput
from scipy.signal import resample_poly

SAMPLE_RATE = 16000
FRAME_S = 0.02
FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_S)
VOICED = 300  # |int16| above this counts as speech when trimming the synthesiser's silence
INSTALL_HINT = "espeak-ng is not installed: run `make system-deps` (or `apt-get install espeak-ng`)"


class MissingSynthesiser(RuntimeError):
    """espeak-ng is absent."""


def spoken_question(text: str, language: str, cache_dir: Path) -> np.ndarray:
    """`text` said by espeak-ng in `language` ("ja"/"en"): 16 kHz mono int16, silence trimmed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{language}-{sha256(text.encode()).hexdigest()[:16]}.wav"
    if not path.exists():
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise MissingSynthesiser(INSTALL_HINT)
        partial = path.with_suffix(".partial")
        # -s: words per minute (a brisk caller); nothing but the file is written
        subprocess.run([binary, "-v", language, "-s", "200", "-w", str(partial), text], check=True, timeout=30)
        partial.replace(path)
    with wave.open(str(path), "rb") as wav:
        rate, raw = wav.getframerate(), wav.readframes(wav.getnframes())
    samples = np.frombuffer(raw, dtype=np.int16).astype(np.float64)
    ratio = Fraction(SAMPLE_RATE, rate)
    resampled = resample_poly(samples, ratio.numerator, ratio.denominator)
    pcm = np.clip(resampled, -32768, 32767).astype(np.int16)
    voiced = np.flatnonzero(np.abs(pcm) > VOICED)
    return pcm[voiced[0] : voiced[-1] + 1] if len(voiced) else pcm


def frame_of(samples: np.ndarray) -> rtc.AudioFrame:
    padded = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    padded[: len(samples)] = samples
    return rtc.AudioFrame(
        data=padded.tobytes(), sample_rate=SAMPLE_RATE, num_channels=1, samples_per_channel=FRAME_SAMPLES
    )


@dataclass
class Utterance:
    """One question the caller says, and when its audio went into the session (time.monotonic())."""

    text: str
    language: str
    pcm: np.ndarray
    started_at: float | None = None  # first voiced frame sent
    ended_at: float | None = None  # last voiced frame sent: the end of user speech

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / SAMPLE_RATE


class ScriptedMicrophone(AudioInput):
    """The caller's audio track: silence in real time, a question's samples when told to say one."""

    def __init__(self, on_speech: Callable[[Utterance], None]) -> None:
        super().__init__(label="scripted-microphone")
        self._on_speech = on_speech
        self._clock: float | None = None
        self._sent = 0
        self._current: Utterance | None = None
        self._offset = 0

    def say(self, utterance: Utterance) -> None:
        """Start saying `utterance` at the next frame (replaces nothing: one at a time)."""
        if self._current is not None:
            raise RuntimeError("the caller is already speaking")
        self._current, self._offset = utterance, 0

    @property
    def speaking(self) -> bool:
        return self._current is not None

    async def __anext__(self) -> rtc.AudioFrame:
        moment = time.monotonic()
        if self._clock is None:
            self._clock = moment
        due = self._clock + self._sent * FRAME_S
        if due > moment:
            await asyncio.sleep(due - moment)
        self._sent += 1
        utterance = self._current
        if utterance is None:
            return frame_of(np.zeros(0, dtype=np.int16))
        chunk = utterance.pcm[self._offset : self._offset + FRAME_SAMPLES]
        if self._offset == 0:
            utterance.started_at = time.monotonic()
            self._on_speech(utterance)
        self._offset += FRAME_SAMPLES
        if self._offset >= len(utterance.pcm):
            utterance.ended_at = time.monotonic()
            self._current = None
        return frame_of(chunk)


class ScriptedSTT(stt.STT):
    """A streaming recognizer that knows what each question says: the final transcript comes
    `final_delay_s` after the question's audio ends."""

    def __init__(self, final_delay_s: float, preflight_delay_s: float | None = None) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))
        self.final_delay_s, self.preflight_delay_s = final_delay_s, preflight_delay_s
        self._streams: list[ScriptedRecognizeStream] = []

    @property
    def model(self) -> str:
        return "scripted-stt"

    @property
    def provider(self) -> str:
        return "fake"

    def heard(self, utterance: Utterance) -> None:
        """The microphone started `utterance` now: schedule its events on the open stream."""
        for stream in self._streams:
            if not stream.closed:
                stream.schedule(utterance, self.final_delay_s, self.preflight_delay_s)

    async def _recognize_impl(
        self, buffer: AudioBuffer, *, language: object = None, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        raise NotImplementedError("streaming only")

    def stream(
        self, *, language: object = None, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ScriptedRecognizeStream:
        stream = ScriptedRecognizeStream(stt=self, conn_options=conn_options)
        self._streams = [s for s in self._streams if not s.closed] + [stream]
        return stream


class ScriptedRecognizeStream(stt.RecognizeStream):
    def __init__(self, *, stt: ScriptedSTT, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=stt, conn_options=conn_options)
        self.closed = False
        self._timers: list[asyncio.TimerHandle] = []

    def _send(self, kind: stt.SpeechEventType, utterance: Utterance, text: str = "") -> None:
        if self.closed:
            return
        alternatives = [stt.SpeechData(language=LanguageCode(utterance.language), text=text, confidence=0.95)]
        self._event_ch.send_nowait(stt.SpeechEvent(type=kind, alternatives=alternatives if text else []))

    def schedule(self, utterance: Utterance, final_delay_s: float, preflight_delay_s: float | None) -> None:
        loop = asyncio.get_running_loop()
        half = utterance.text[: max(1, len(utterance.text) // 2)]  # an interim: what was heard so far
        speech = utterance.duration_s
        self._send(stt.SpeechEventType.START_OF_SPEECH, utterance)
        self._timers += [
            loop.call_later(speech / 2, self._send, stt.SpeechEventType.INTERIM_TRANSCRIPT, utterance, half),
            loop.call_later(speech + final_delay_s, self._final, utterance),
        ]
        if preflight_delay_s is not None:
            preflight = utterance.text.rstrip("？?。.！!")
            self._timers.append(
                loop.call_later(
                    speech + preflight_delay_s,
                    self._send,
                    stt.SpeechEventType.PREFLIGHT_TRANSCRIPT,
                    utterance,
                    preflight,
                )
            )

    def _final(self, utterance: Utterance) -> None:
        self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, utterance, utterance.text)
        self._send(stt.SpeechEventType.END_OF_SPEECH, utterance)

    async def _run(self) -> None:
        try:
            async for _frame in self._input_ch:  # the audio itself is not needed: the script says it
                pass
        finally:
            self.closed = True
            for timer in self._timers:
                timer.cancel()


class FixedTTFTLLM(llm.LLM):
    """A LiveKit chat model: the first token `ttft_s` after the request, then the rest at once."""

    def __init__(self, *, ttft_s: float, reply: str) -> None:
        super().__init__()
        self.ttft_s, self.reply = ttft_s, reply

    @property
    def model(self) -> str:
        return "fixed-ttft-llm"

    @property
    def provider(self) -> str:
        return "fake"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> llm.LLMStream:
        return _FixedStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _FixedStream(llm.LLMStream):
    def __init__(self, model: FixedTTFTLLM, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._model = model

    async def _run(self) -> None:
        await asyncio.sleep(self._model.ttft_s)
        request = utils.shortuuid("fixed_")
        for token in re.findall(r"\s*\S+", self._model.reply):
            self._event_ch.send_nowait(
                llm.ChatChunk(id=request, delta=llm.ChoiceDelta(role="assistant", content=token))
            )
