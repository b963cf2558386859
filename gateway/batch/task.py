"""The per-file task: one stored recording transcribed as one conversation.

:func:`transcribe_file` is the unit every batch path runs (the command line, the HTTP jobs,
a Ray worker). One file is one conversation of one call (a call id and a conversation id of
its own), with a channel per column of the file (:func:`~gateway.batch.formats.channel_names`:
stereo is agent left and customer right unless ``left`` says otherwise, mono is one
channel). Each channel's audio is read in blocks, resampled (soxr) to the model's rate and
fed to its own ASR channel of the shared :class:`~gateway.asr.stream.AsrHub` as a
:attr:`~gateway.asr.audioqueue.SourcePolicy.FILE` source: ``await feed`` waits while the
channel's buffer is full, so the file goes as fast as the model takes it and nothing is
dropped. The same audio at 8 kHz goes through the talk-spurt segmenter
(:class:`~gateway.calls.activity.VoiceActivity`, as for a live call), so the statistics
processor gets its ``voice.*`` events.

The events (``call.offered``, ``call.answered``, the finals, ``call.ended``) go through a
private :class:`~gateway.events.bus.EventBus` with the processors of the config
(:func:`~gateway.processors.build_processors`: redaction, statistics, analytics rules,
sentiment, summary: the stage of live calls). Its clock is the file's own timeline
(:class:`MediaClock`): it starts at the wall time the task began and moves on with the
audio the model has heard on every channel, so the document's ``duration_s`` is the file's
length and a deadline (a compliance rule's ``first_s``, dead air) never fires before the
model has heard that far, however fast or slow the file goes. The ``conversation.summary``
the stage emits before ``call.ended`` is the file's document.

Times in the finals are on the file's timeline, clamped into it, and the words of a final
are made monotonic (each starts at or after the end of the one before).

Outputs (:mod:`gateway.batch.outputs`) are written to temporary names and renamed at the
end, the JSON last: a file whose outputs all exist, are newer than it and whose JSON reads
is *complete* and skipped unless ``force``. Every failure (bad audio, a file that cannot be
read or written, a path outside ``root``, the model refusing or stalling) is a ``failed``
:class:`FileResult` with the reason, never an exception.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from gateway.analytics.activity import SAMPLE_RATE_HZ as ACTIVITY_RATE_HZ
from gateway.analytics.summary import build_summary
from gateway.asr.audioqueue import SourcePolicy
from gateway.asr.contract import Hypothesis, Word
from gateway.asr.stream import MAX_REFUSALS, AsrChannel, AsrHub, Listener
from gateway.batch.audio import AudioInfo, AudioReader, open_audio
from gateway.batch.formats import BadAudio, channel_names, check_channel
from gateway.batch.outputs import output_formats, output_paths, render
from gateway.calls.activity import VoiceActivity, settings_of
from gateway.config import GatewayConfig
from gateway.events.bus import EventBus
from gateway.events.types import (
    CallAnswered,
    CallEnded,
    CallOffered,
    ConversationSummary,
    Envelope,
    GatewayEvent,
    SummaryDocument,
    TranscriptFinal,
    TranscriptWord,
)
from gateway.media.resample import StreamResampler, to_int16
from gateway.metrics import Metrics
from gateway.processors import build_processors

BLOCK_S = 0.5            # audio read, resampled and fed per step
STALL_S = 300.0          # no progress this long (Triton gone, the model stuck): the file fails
WATCH_S = 1.0            # how often the stall watchdog looks
CONNECT_S = 30.0         # asr_hub: how long the first stream connection may take
Status = Literal["done", "skipped", "failed"]
T = TypeVar("T")


class TaskError(Exception):
    """The file could not be transcribed (the reason is the message)."""


class TritonUnavailable(TaskError):
    """No ASR stream could be opened (Triton down, the model not ready)."""


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """How files are transcribed (the same for every file of a run or job)."""

    formats: tuple[str, ...] = ("json",)
    """Outputs besides the JSON (always written): ``vtt``, ``srt``, ``txt``."""
    force: bool = False
    """Transcribe files whose outputs are complete again (default: skip them)."""
    left: str = "agent"
    """The channel of a stereo file's left column (the right one is the other)."""
    mono_channel: str = "customer"
    """The channel of a mono file."""
    raw_rate: int | None = None
    """Sample rate of raw ``.ul``/``.al`` files (None: 8000)."""
    root: Path | None = None
    """Files must lie under it (symlinks resolved); outputs mirror the path below it.
    None: the output is named after the file alone."""

    def __post_init__(self) -> None:
        output_formats(self.formats)
        check_channel(self.left, "left")
        check_channel(self.mono_channel, "mono_channel")
        if self.raw_rate is not None and self.raw_rate <= 0:
            raise ValueError(f"raw_rate must be positive, not {self.raw_rate}")


@dataclass(frozen=True, slots=True)
class FileResult:
    """What became of one file."""

    path: Path
    status: Status
    error: str | None
    audio_s: float
    wall_s: float
    outputs: tuple[Path, ...]

    @property
    def ok(self) -> bool:
        """Done or skipped (a skipped file's outputs are complete)."""
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        """The manifest's line for it."""
        return {"path": str(self.path), "status": self.status, "error": self.error,
                "audio_s": round(self.audio_s, 3), "wall_s": round(self.wall_s, 3),
                "outputs": [str(p) for p in self.outputs]}


# ------------------------------------------------------------------ the hub
async def open_hub(config: GatewayConfig, metrics: Metrics | None = None,
                   connect_s: float = CONNECT_S) -> AsrHub:
    """A started hub on ``config.triton`` whose stream is up; TritonUnavailable (the hub
    closed again) after ``connect_s`` without one. The caller closes it (``await
    hub.close()``)."""
    hub = AsrHub(config.triton, metrics or Metrics(), config.triton.buffer_s)
    hub.start()
    deadline = hub.loop.time() + connect_s
    while not hub.connected:
        if hub.loop.time() >= deadline:
            await hub.close()
            raise TritonUnavailable(
                f"no ASR stream to Triton at {config.triton.url} (model "
                f"{config.triton.asr_model}) within {connect_s:.0f} s")
        await asyncio.sleep(0.05)
    return hub


@asynccontextmanager
async def asr_hub(config: GatewayConfig, metrics: Metrics | None = None,
                  connect_s: float = CONNECT_S) -> AsyncIterator[AsrHub]:
    """:func:`open_hub` as a context manager (closed on leaving)."""
    hub = await open_hub(config, metrics, connect_s)
    try:
        yield hub
    finally:
        await hub.close()


# ------------------------------------------------------------------ the task
async def transcribe_file(path: Path, out_dir: Path, *, hub: AsrHub, config: GatewayConfig,
                          options: BatchOptions) -> FileResult:
    """Transcribe one file into ``out_dir`` (see the module docstring); never raises for
    a bad file: a ``failed`` result says why."""
    started = time.monotonic()

    def result(status: Status, error: str | None, audio_s: float,
               outputs: Sequence[Path] = ()) -> FileResult:
        return FileResult(path, status, error, audio_s, time.monotonic() - started,
                          tuple(outputs))

    try:
        relative = relative_path(path, options.root)
        targets = output_paths(out_dir, relative, options.formats)
        if not options.force:
            recorded = complete_outputs(path, targets)
            if recorded is not None:
                return result("skipped", None, recorded, list(targets.values()))
        with open_audio(path, raw_rate=options.raw_rate) as reader:
            names = channel_names(reader.info.channels, options.left, options.mono_channel)
            talk = _FileConversation(path, relative, reader.info, names, hub, config)
            doc = await talk.run(reader)
        audio_s = reader.info.duration_s
    except (BadAudio, TaskError) as exc:
        return result("failed", str(exc), 0.0)
    except OSError as exc:
        return result("failed", f"cannot read {path}: {exc.strerror or exc}", 0.0)
    try:
        return result("done", None, audio_s, write_outputs(doc, targets))
    except OSError as exc:
        return result("failed", f"cannot write the outputs: {exc}", audio_s)


def relative_path(path: Path, root: Path | None) -> Path:
    """The file's path below ``root`` (symlinks resolved); TaskError when outside it."""
    if root is None:
        return Path(path.name)
    resolved, base = path.resolve(), root.resolve()
    try:
        return resolved.relative_to(base)
    except ValueError:
        raise TaskError(f"{path} is outside the allowed root {root}") from None


def complete_outputs(path: Path, targets: dict[str, Path]) -> float | None:
    """The audio seconds its JSON records when every output exists, is not older than the
    file and the JSON reads; None otherwise (the file is to be done)."""
    source = path.stat().st_mtime
    try:
        if any(p.stat().st_mtime < source for p in targets.values()):
            return None
        doc = json.loads(targets["json"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or "conversation_id" not in doc:
        return None
    duration = doc.get("duration_s")
    return float(duration) if isinstance(duration, int | float) else 0.0


def write_outputs(doc: SummaryDocument, targets: dict[str, Path]) -> tuple[Path, ...]:
    """Each output to a temporary name, then renamed into place, the JSON last (a kill in
    between leaves the file incomplete: redone on the next run)."""
    token = uuid.uuid4().hex[:8]
    temps: dict[str, Path] = {}
    try:
        for fmt, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.{token}.tmp")
            temp.write_text(render(doc, fmt), encoding="utf-8")
            temps[fmt] = temp
        for fmt in sorted(temps, key=lambda f: f == "json"):
            os.replace(temps[fmt], targets[fmt])
            del temps[fmt]
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
    return tuple(targets.values())


# ------------------------------------------------------------------ timeline
class MediaClock:
    """The private bus's clock: ``start`` plus how far into the file the model has heard."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.position_s = 0.0

    def __call__(self) -> float:
        return self.start + self.position_s

    def advance(self, position_s: float) -> None:
        self.position_s = max(self.position_s, position_s)


def clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def monotonic_words(words: Sequence[Word], end_s: float) -> tuple[TranscriptWord, ...]:
    """Words inside ``[0, end_s]``, each starting at or after the end of the one before."""
    out: list[TranscriptWord] = []
    floor = 0.0
    for w in words:
        start = clamp(max(w.start_s, floor), 0.0, end_s)
        end = clamp(max(w.end_s, start), start, end_s)
        out.append(TranscriptWord(word=w.word, start_s=round(start, 3), end_s=round(end, 3),
                                  confidence=w.confidence))
        floor = end
    return tuple(out)


# ------------------------------------------------------------------ one conversation
@dataclass(slots=True)
class _Channel:
    name: str
    asr: AsrChannel
    to_model: StreamResampler
    to_activity: StreamResampler | None
    activity: VoiceActivity | None
    heard_s: float = 0.0            # how far the model has heard (its latest audio_s)
    position: int = 0               # samples at 8 kHz given to the segmenter

    async def feed(self, samples: np.ndarray[Any, Any], progress: _Progress) -> None:
        await self._to_asr(self.to_model.process(samples), progress)
        if self.to_activity is not None:
            self._to_segmenter(self.to_activity.process(samples))

    async def finish(self, progress: _Progress) -> None:
        await self._to_asr(self.to_model.flush(), progress)
        if self.to_activity is not None and self.activity is not None:
            self._to_segmenter(self.to_activity.flush())
            self.activity.end(0)

    async def _to_asr(self, audio: np.ndarray[Any, Any], progress: _Progress) -> None:
        if len(audio) == 0:
            return
        if not await self.asr.feed(audio):
            raise TaskError(f"the ASR stream of the {self.name} channel closed: the model "
                            "refused its audio")
        progress.fed += 1

    def _to_segmenter(self, audio: np.ndarray[Any, Any]) -> None:
        if self.activity is not None and len(audio):
            self.activity.audio(0, self.position, to_int16(audio))
            self.position += len(audio)

    def release(self) -> None:
        self.to_model.close()
        if self.to_activity is not None:
            self.to_activity.close()


@dataclass(slots=True)
class _Progress:
    fed: int = 0
    heard: int = 0
    seen: tuple[object, ...] = ()
    since: float = 0.0

    def mark(self, channels: Sequence[_Channel]) -> tuple[object, ...]:
        return (self.fed, self.heard, *(c.asr.queue.last_sent_at for c in channels))


@dataclass(slots=True)
class _Outcome:
    summary: SummaryDocument | None = None
    events: list[GatewayEvent] = field(default_factory=list)


class _FileConversation:
    """One file as one call of one conversation on a private bus."""

    def __init__(self, path: Path, relative: Path, info: AudioInfo, names: Sequence[str],
                 hub: AsrHub, config: GatewayConfig) -> None:
        self.path, self.info, self.names, self.hub = path, info, tuple(names), hub
        self.config = config
        self.source = f"file:{relative.as_posix()}"
        self.call_id, self.conversation_id = uuid.uuid4().hex, uuid.uuid4().hex
        self.duration_s = info.duration_s
        self.clock = MediaClock(time.time())
        self.bus = EventBus(Metrics(), build_processors(config), clock=self.clock)
        self.outcome = _Outcome()
        self.bus.subscribe(self._on_envelope)
        self.progress = _Progress()
        self.channels: list[_Channel] = []

    async def run(self, reader: AudioReader) -> SummaryDocument:
        self.bus.start(())
        try:
            self._open_channels()
            self.bus.emit(self._offered())
            self.bus.emit(CallAnswered(call_id=self.call_id, sip_call_id=self.source,
                                       conversation_id=self.conversation_id,
                                       channels=self.names, ports=()))
            flushed = await self._guarded(self._stream(reader))
            self.clock.advance(self.duration_s)
            self.bus.emit(self._ended(flushed))
        except BaseException:
            self._drop_asr()
            raise
        finally:
            for ch in self.channels:
                ch.release()
            await self.bus.close()
        return self._document()

    def _open_channels(self) -> None:
        rate, stats = self.info.rate_hz, self.config.statistics
        for name in self.names:
            box: list[_Channel] = []
            asr = self.hub.open(f"{self.call_id}/{name}", self._listener(box),
                                self.config.triton.phrases, source=SourcePolicy.FILE)
            activity = (VoiceActivity(self.bus, self.call_id, self.conversation_id, name,
                                      settings_of(stats)) if stats.enabled else None)
            channel = _Channel(name, asr, StreamResampler(rate, self.config.triton.sample_rate_hz),
                               StreamResampler(rate, ACTIVITY_RATE_HZ) if activity else None,
                               activity)
            box.append(channel)
            self.channels.append(channel)

    def _listener(self, box: list[_Channel]) -> Listener:
        def heard(_asr: AsrChannel, hyp: Hypothesis, _latency: float | None) -> None:
            self._heard(box[0], hyp)
        return heard

    async def _stream(self, reader: AudioReader) -> bool:
        """Every block to every channel, then the ends; whether every last final came."""
        frames = max(1, round(self.info.rate_hz * BLOCK_S))
        for block in reader.blocks(frames):
            for index, channel in enumerate(self.channels):
                await channel.feed(block[:, index], self.progress)
        for channel in self.channels:
            await channel.finish(self.progress)
        closed = await asyncio.gather(*(c.asr.close(24 * 3600.0) for c in self.channels))
        refused = [c.name for c in self.channels if c.asr.refusals > MAX_REFUSALS]
        if refused:
            raise TaskError(f"the model refused the audio of the {', '.join(refused)} "
                            "channel(s)")
        return all(closed)

    async def _guarded(self, work: Coroutine[Any, Any, T]) -> T:
        """``work``, failed with TaskError when the ASR makes no progress for STALL_S."""
        task = asyncio.ensure_future(work)
        loop = asyncio.get_running_loop()
        self.progress.since = loop.time()
        try:
            while True:
                done, _pending = await asyncio.wait({task}, timeout=WATCH_S)
                if done:
                    return task.result()
                mark = self.progress.mark(self.channels)
                if mark != self.progress.seen:
                    self.progress.seen, self.progress.since = mark, loop.time()
                elif loop.time() - self.progress.since >= STALL_S:
                    raise TaskError(f"ASR stalled: no progress for {STALL_S:.0f} s (Triton at "
                                    f"{self.config.triton.url} gone or the model stuck)")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _drop_asr(self) -> None:
        for channel in self.channels:
            channel.asr.closing = True
            self.hub.forget(channel.asr)

    # ----------------------------------------------------------------- ASR results
    def _heard(self, channel: _Channel, hyp: Hypothesis) -> None:
        self.progress.heard += 1
        channel.heard_s = max(channel.heard_s, hyp.audio_s)
        open_channels = [c.heard_s for c in self.channels if not c.asr.done.is_set()]
        self.clock.advance(min(min(open_channels, default=self.duration_s), self.duration_s))
        if hyp.is_final and hyp.text:
            self.bus.emit(self._final(channel.name, hyp))

    def _final(self, channel: str, hyp: Hypothesis) -> TranscriptFinal:
        end = self.duration_s
        start_s = clamp(hyp.start_s, 0.0, end)
        return TranscriptFinal(
            call_id=self.call_id, channel=channel, participant=None,
            conversation_id=self.conversation_id, text=hyp.text, segment=hyp.segment,
            start_s=round(start_s, 3), end_s=round(clamp(hyp.end_s, start_s, end), 3),
            words=monotonic_words(hyp.words, end), latency_s=None)

    # ----------------------------------------------------------------- events
    def _offered(self) -> CallOffered:
        return CallOffered(
            call_id=self.call_id, conversation_id=self.conversation_id,
            channel=self.names[0] if len(self.names) == 1 else None, channels=self.names,
            siprec=False, participants=(), session_id=None, sip_call_id=self.source,
            from_uri=self.source, from_display=None, to_uri="", request_uri="",
            remote="", transport="file", headers={})

    def _ended(self, flushed: bool) -> CallEnded:
        legs = tuple({"channel": c.name, "audio_s": round(self.duration_s, 3),
                      "sample_rate_hz": self.info.rate_hz, "codec": self.info.codec}
                     for c in self.channels)
        return CallEnded(
            call_id=self.call_id, reason="end of file", by="batch", answered=True,
            duration_s=round(self.duration_s, 3), sip_call_id=self.source,
            conversation_id=self.conversation_id, channels=self.names, legs=legs,
            asr_finals_flushed=flushed, recording=str(self.path))

    def _on_envelope(self, envelope: Envelope) -> None:
        event = envelope.event
        if isinstance(event, ConversationSummary):
            if event.conversation_id == self.conversation_id and self.outcome.summary is None:
                self.outcome.summary = event.summary
        elif not self.config.analytics.summary:
            self.outcome.events.append(event)

    def _document(self) -> SummaryDocument:
        """The stage's summary; without a summary processor, the same document folded from
        the events the stage let through."""
        if self.outcome.summary is not None:
            return self.outcome.summary
        start = self.clock.start
        return build_summary(self.conversation_id, self.outcome.events, start,
                             start + self.duration_s)


