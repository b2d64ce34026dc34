"""Fake speech models and audio devices for voice-session tests (tests only).

They stand in for the paid cloud models and the room's audio tracks, and behave the way LiveKit
expects the real ones to, through LiveKit's own base classes (retries, error events, metrics):

- `FakeTTS` is shaped like OpenAI's TTS (`livekit.plugins.openai.TTS`): not streaming, so LiveKit
  feeds it one sentence at a time through its `StreamAdapter` and sentence tokenizer. Each
  request answers after `ttfb_s` with 16-bit PCM silence whose length follows the text, in 10 ms
  frames. Every request is recorded (`requests`: text, when asked, when the first audio came).
  `fail_next(...)` makes the next requests fail with the given errors, after the time to first
  byte as an HTTP TTS does (`server_error()`: OpenAI's retryable 500).
- `FakeSTT` is a streaming recognizer like the realtime STT services: fed real audio frames, it
  turns the `Utterance`s a test makes the caller say into start of speech, preflight, interim and
  final transcripts and end of speech, timed by the audio it has received. `fail_next(...)` makes
  the stream raise at the next frame the way a dropped connection does.
- `FakeAudioInput` is a microphone sending 20 ms frames of silence in real time; `FakeAudioOutput`
  a speaker playing the audio out (at `speed` times real time, to keep tests short), recording
  when each segment's first frame arrived, and cut off by `clear_buffer()` on a barge-in.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from livekit import rtc
from livekit.agents import APIConnectOptions, APIStatusError, stt, tts, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
from livekit.agents.utils.audio import AudioBuffer
from livekit.agents.voice.io import AudioInput, AudioOutput, AudioOutputCapabilities

TTS_SAMPLE_RATE = 24000
MIC_SAMPLE_RATE = 16000
MIC_FRAME_S = 0.02


def silence(duration_s: float, sample_rate: int) -> rtc.AudioFrame:
    samples = max(1, int(sample_rate * duration_s + 0.5))
    return rtc.AudioFrame(
        data=b"\x00\x00" * samples, sample_rate=sample_rate, num_channels=1, samples_per_channel=samples
    )


# ------------------------------------------------------------------------------------------ TTS


@dataclass
class Synthesis:
    """One TTS request."""

    text: str
    asked_at: float  # time.monotonic()
    first_audio_at: float | None = None
    failed: str | None = None


class FakeTTS(tts.TTS):
    """A non-streaming TTS: one request per sentence, audio after `ttfb_s`."""

    def __init__(self, *, ttfb_s: float = 0.05, seconds_per_char: float = 0.06) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=TTS_SAMPLE_RATE, num_channels=1)
        self.ttfb_s = ttfb_s
        self.seconds_per_char = seconds_per_char
        self.requests: list[Synthesis] = []
        self._failures: deque[Exception] = deque()

    @property
    def model(self) -> str:
        return "fake-tts"

    @property
    def provider(self) -> str:
        return "fake"

    def fail_next(self, *errors: Exception) -> None:
        """The next requests fail with these, in order (then synthesis works again)."""
        self._failures.extend(errors)

    @property
    def spoken(self) -> list[str]:
        """The text of every request that produced audio."""
        return [r.text for r in self.requests if r.first_audio_at is not None]

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> FakeChunkedStream:
        return FakeChunkedStream(tts=self, input_text=text, conn_options=conn_options)


def server_error() -> APIStatusError:
    return APIStatusError("The server had an error while processing your request.", status_code=500)


class FakeChunkedStream(tts.ChunkedStream):
    def __init__(self, *, tts: FakeTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._fake = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request = Synthesis(self.input_text, time.monotonic())
        self._fake.requests.append(request)
        await asyncio.sleep(self._fake.ttfb_s)
        if self._fake._failures:
            error = self._fake._failures.popleft()
            request.failed = type(error).__name__
            raise error
        output_emitter.initialize(
            request_id=utils.shortuuid("fake_tts_"),
            sample_rate=TTS_SAMPLE_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        request.first_audio_at = time.monotonic()
        frame = silence(0.01, TTS_SAMPLE_RATE).data.tobytes()
        for _ in range(max(1, round(len(self.input_text) * self._fake.seconds_per_char / 0.01))):
            output_emitter.push(frame)
        output_emitter.flush()


# ------------------------------------------------------------------------------------------ STT


@dataclass
class Utterance:
    """What the caller says, as the recognizer reports it while the audio comes in: start of
    speech at the first frame, the preflight transcript (if any) after `preflight_s` of audio, then
    after `speech_s` an interim with the full text (a caller who went on talking makes a preflight
    stale), the final transcript and end of speech."""

    text: str  # the final transcript
    language: str = "en"
    speech_s: float = 0.3  # audio seconds until the final transcript and the end of speech
    preflight: str | None = None  # an early, stable transcript (for preemptive generation) ...
    preflight_s: float = 0.1  # ... sent after this much audio
    heard_at: dict[str, float] = field(default_factory=dict)  # event type -> time.monotonic()


class FakeSTT(stt.STT):
    """A streaming recognizer saying what the scripted `Utterance`s say, timed by the audio."""

    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))
        self._pending: deque[Utterance] = deque()
        self._failures: deque[Exception] = deque()
        self.streams = 0  # streams opened (LiveKit reopens one after a failure)
        self.frames = 0  # audio frames received

    @property
    def model(self) -> str:
        return "fake-stt"

    @property
    def provider(self) -> str:
        return "fake"

    def say(self, utterance: Utterance) -> Utterance:
        """The caller starts saying this (with the next audio frames)."""
        self._pending.append(utterance)
        return utterance

    def fail_next(self, *errors: Exception) -> None:
        """The stream raises these at its next audio frames (a dropped connection, a 500)."""
        self._failures.extend(errors)

    async def _recognize_impl(
        self, buffer: AudioBuffer, *, language: object = None, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        raise NotImplementedError("streaming only")

    def stream(
        self, *, language: object = None, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> FakeRecognizeStream:
        self.streams += 1
        return FakeRecognizeStream(stt=self, conn_options=conn_options)


class FakeRecognizeStream(stt.RecognizeStream):
    def __init__(self, *, stt: FakeSTT, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=stt, conn_options=conn_options)
        self._fake = stt

    def _send(self, kind: stt.SpeechEventType, utterance: Utterance, text: str = "") -> None:
        alternatives = [stt.SpeechData(language=LanguageCode(utterance.language), text=text, confidence=0.95)]
        self._event_ch.send_nowait(stt.SpeechEvent(type=kind, alternatives=alternatives if text else []))
        utterance.heard_at[kind.value] = time.monotonic()

    async def _run(self) -> None:
        current: Utterance | None = None
        heard = 0.0
        async for frame in self._input_ch:
            if not isinstance(frame, rtc.AudioFrame):
                continue
            self._fake.frames += 1
            if self._fake._failures:
                raise self._fake._failures.popleft()
            if current is None:
                if not self._fake._pending:
                    continue
                current, heard = self._fake._pending.popleft(), 0.0
                self._send(stt.SpeechEventType.START_OF_SPEECH, current)
            before, heard = heard, heard + frame.duration
            if current.preflight and before < current.preflight_s <= heard:
                self._send(stt.SpeechEventType.PREFLIGHT_TRANSCRIPT, current, current.preflight)
            if heard >= current.speech_s:
                self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, current, current.text)
                self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, current, current.text)
                self._send(stt.SpeechEventType.END_OF_SPEECH, current)
                current = None


# ---------------------------------------------------------------------------------------- audio


class FakeAudioInput(AudioInput):
    """A microphone: 20 ms frames of silence, in real time."""

    def __init__(self) -> None:
        super().__init__(label="fake-microphone")
        self._started: float | None = None
        self._sent = 0

    async def __anext__(self) -> rtc.AudioFrame:
        now = time.monotonic()
        if self._started is None:
            self._started = now
        due = self._started + self._sent * MIC_FRAME_S
        if due > now:
            await asyncio.sleep(due - now)
        self._sent += 1
        return silence(MIC_FRAME_S, MIC_SAMPLE_RATE)


@dataclass
class Played:
    """One segment the speaker played (or began to)."""

    first_frame_at: float  # time.monotonic()
    duration_s: float = 0.0
    interrupted: bool = False


class FakeAudioOutput(AudioOutput):
    """A speaker: plays segments out at `speed` times real time; a barge-in clears it."""

    def __init__(self, *, speed: float = 20.0) -> None:
        super().__init__(label="fake-speaker", capabilities=AudioOutputCapabilities(pause=False))
        self.speed = speed
        self.played: list[Played] = []
        self._current: Played | None = None
        self._finish: asyncio.TimerHandle | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._current is None:
            self._current = Played(time.monotonic())
            self.played.append(self._current)
            self.on_playback_started(created_at=time.time())
        self._current.duration_s += frame.duration

    def flush(self) -> None:
        super().flush()
        current = self._current
        if current is None:
            return

        def finished() -> None:
            self._finish = None
            self.on_playback_finished(playback_position=current.duration_s, interrupted=False)

        remaining = current.duration_s / self.speed - (time.monotonic() - current.first_frame_at)
        self._finish = asyncio.get_running_loop().call_later(max(0.0, remaining), finished)
        self._current = None

    def clear_buffer(self) -> None:
        segment = self._current or (self.played[-1] if self._finish is not None and self.played else None)
        if segment is None:
            return
        if self._finish is not None:
            self._finish.cancel()
            self._finish = None
        self._current = None
        segment.interrupted = True
        position = min(segment.duration_s, (time.monotonic() - segment.first_frame_at) * self.speed)
        self.on_playback_finished(playback_position=position, interrupted=True)
