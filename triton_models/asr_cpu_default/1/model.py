"""asr_cpu_default: Whisper tiny.en via faster-whisper on CPU behind the streaming ASR contract.

execute() only buffers audio and runs the endpointer (Silero VAD, common/vad.py,
or energy); Whisper decodes run on one worker thread (CTranslate2 releases the
GIL). The request whose chunk ended an utterance is completed by the worker
with that utterance's final, as soon as it is decoded; other results go out on
the sequence's next request; an END request is completed by the worker after
the last final. Stale partial decodes (a newer partial or the final of the same
utterance is queued) are skipped, so a loaded CPU sheds partials, never finals.

Early final (VAD endpointing, ``vad_early_decode_ms`` > 0): once the open utterance has
been quiet for all but ``vad_early_decode_ms`` of the end silence, the VAD segmenter cuts
the final it would have if the silence goes on (``common.vad.EarlyFinal``) and the worker
decodes it then; when the end rule fires with the same audio (same segment, start and
end), that decode is the final, sent at once (or as soon as it is done). Speech that
resumes makes it stale: the final is decoded afresh, the early decode was wasted CPU.
"""

from __future__ import annotations

import dataclasses
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # noqa: E402
from common.asr_contract import (  # noqa: E402
    AsrResult,
    ParameterError,
    SessionTable,
    config_parameters,
    float_parameter,
    int_parameter,
    samples_to_s,
)
from common.endpointing import DecodeJob, EndpointConfig, UtteranceSegmenter  # noqa: E402
from common.triton_io import (  # noqa: E402
    execute_each,
    model_config,
    ready_chunk,
    send_error,
    send_results,
)
from common.vad import EarlyFinal, SileroVad, VadSegmenter, vad_endpoint_config  # noqa: E402
from common.whisper_decode import (  # noqa: E402
    WhisperDecoder,
    WhisperSettings,
    load_model,
    resolve_model_path,
)


@dataclass(slots=True)
class StreamSession:
    corrid: int
    segmenter: UtteranceSegmenter
    phrases: tuple[str, ...] = ()
    outbox: deque[AsrResult] = field(default_factory=deque)
    latest_partial: DecodeJob | None = None
    finals_queued: int = 0
    early: tuple[DecodeJob, AsrResult] | None = None  # an EarlyFinal and its decode
    latest_early: DecodeJob | None = None
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)  # drain + send, in order

    def drain(self) -> list[AsrResult]:
        out: list[AsrResult] = []
        while self.outbox:
            out.append(self.outbox.popleft())
        return out


@dataclass(frozen=True, slots=True)
class Work:
    """A decode for the worker; with ``sender`` the worker completes that request (END, or
    the request whose chunk ended the utterance of this final)."""

    session: StreamSession
    job: DecodeJob | None
    audio_s: float
    sender: Any = None
    end: bool = False


ENDPOINTING = ("vad", "energy")


def endpointing(params: dict[str, str]) -> str:
    mode = params.get("endpointing") or "vad"
    if mode not in ENDPOINTING:
        raise ParameterError(f"endpointing must be one of {', '.join(ENDPOINTING)}, got {mode!r}")
    return mode


def endpoint_config(params: dict[str, str]) -> EndpointConfig:
    if endpointing(params) == "vad":
        return vad_endpoint_config(
            threshold=float_parameter(params, "vad_threshold", 0.5),
            end_silence_ms=int_parameter(params, "vad_end_silence_ms", 250),
            short_speech_ms=int_parameter(params, "vad_short_speech_ms", 500),
            short_end_silence_ms=int_parameter(params, "vad_short_end_silence_ms", 600),
            early_decode_ms=early_decode_ms(params),
            max_utterance_s=float_parameter(params, "max_utterance_s", 25.0),
            partial_interval_s=float_parameter(params, "partial_interval_s", 1.0))
    return EndpointConfig(
        start_dbfs=float_parameter(params, "start_dbfs", -42.0, minimum=None),
        stop_dbfs=float_parameter(params, "stop_dbfs", -48.0, minimum=None),
        end_silence_ms=int_parameter(params, "end_silence_ms", 600),
        max_utterance_s=float_parameter(params, "max_utterance_s", 25.0),
        partial_interval_s=float_parameter(params, "partial_interval_s", 1.0))


def early_decode_ms(params: dict[str, str]) -> int:
    """vad_early_decode_ms (0: off)."""
    return int_parameter(params, "vad_early_decode_ms", 0)


def whisper_settings(params: dict[str, str]) -> WhisperSettings:
    return WhisperSettings(
        model_path=resolve_model_path(params.get("model_path", "")),
        compute_type=params.get("compute_type") or "int8",
        cpu_threads=int_parameter(params, "cpu_threads", 0),
        language=params.get("language") or "en",
        beam_size=int_parameter(params, "beam_size", 5),
        partial_beam_size=int_parameter(params, "partial_beam_size", 1),
        encoder_pad_s=float_parameter(params, "encoder_pad_s", 1.0),
        encoder_min_window_s=float_parameter(params, "encoder_min_window_s", 8.0))


class DecodeWorker:
    """One thread running Whisper decodes in submission order."""

    def __init__(self, decoder: WhisperDecoder, logger: Any) -> None:
        self._decoder = decoder
        self._log = logger
        self._queue: queue.Queue[Work | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="whisper-decode", daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> None:
        self._queue.put(work)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while (work := self._queue.get()) is not None:
            try:
                self._run(work)
            except Exception as exc:  # noqa: BLE001 - a failed decode must not kill the thread
                self._log.log_error(f"decode failed for CORRID {work.session.corrid}: {exc!r}")
                if work.end:
                    send_error(work.sender, f"decode failed: {exc}")
                elif work.sender is not None:  # a lost mid-stream final fails no request
                    with work.session.lock:
                        send_results(work.sender, work.session.drain(), complete=True)

    def _run(self, work: Work) -> None:
        session, job = work.session, work.job
        if job is not None and job.type == "partial" and _stale(session, job):
            return
        if isinstance(job, EarlyFinal):
            if not session.closed and job is session.latest_early and (
                    session.finals_queued <= job.segment):
                session.early = (job, self._result(work))
            return
        early = session.early
        if job is not None and early is not None and _same_audio(early[0], job):
            result = dataclasses.replace(early[1], audio_s=work.audio_s)
            self._log.log_verbose(f"CORRID {session.corrid}: final of segment {job.segment} "
                                  "from its early decode")
        else:
            result = self._result(work)
        if work.sender is None:
            session.outbox.append(result)
            return
        with session.lock:
            send_results(work.sender, [*session.drain(), result], complete=True)

    def _result(self, work: Work) -> AsrResult:
        if work.job is not None:
            started = time.monotonic()
            result = self._decoder.decode(work.job, work.session.phrases, work.audio_s)
            self._log.log_verbose(f"CORRID {work.session.corrid}: {work.job.type} of "
                                  f"{samples_to_s(work.job.audio.size):.2f} s decoded in "
                                  f"{time.monotonic() - started:.3f} s")
            return result
        segment = work.session.segmenter.next_segment
        return AsrResult("final", segment, "", work.audio_s, work.audio_s, work.audio_s)


def _same_audio(early: DecodeJob, job: DecodeJob) -> bool:
    return (job.type == "final" and early.segment == job.segment
            and early.start_sample == job.start_sample and early.end_sample == job.end_sample)


def _stale(session: StreamSession, job: DecodeJob) -> bool:
    return session.closed or job is not session.latest_partial or (
        session.finals_queued > job.segment)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self._log = pb_utils.Logger
        params = config_parameters(model_config(args))
        settings = whisper_settings(params)
        self._endpoint = endpoint_config(params)
        self._early_ms = early_decode_ms(params)
        self._vad = SileroVad() if endpointing(params) == "vad" else None
        idle_s = float_parameter(params, "state_idle_timeout_s", 120.0)
        self._sessions: SessionTable[StreamSession] = SessionTable(idle_s, self._new_session)
        started = time.monotonic()
        decoder = WhisperDecoder(load_model(settings), settings)
        self._log.log_info(f"Whisper loaded from {settings.model_path} in "
                           f"{time.monotonic() - started:.1f} s")
        self._worker = DecodeWorker(decoder, self._log)

    def _new_session(self, corrid: int) -> StreamSession:
        if self._vad is None:
            return StreamSession(corrid, UtteranceSegmenter(self._endpoint))
        return StreamSession(corrid, VadSegmenter(self._endpoint, self._vad.new_stream().push,
                                                  early_decode_ms=self._early_ms))

    def execute(self, requests: list[Any]) -> None:
        now = time.monotonic()
        for corrid in self._sessions.expire(now):
            self._log.log_warn(f"CORRID {corrid}: state expired after idle timeout")
        execute_each(requests, lambda request, sender: self._handle(request, sender, now))

    def _handle(self, request: Any, sender: Any, now: float) -> None:
        chunk = ready_chunk(request, sender)
        if chunk is None:
            return
        session, fresh = self._sessions.acquire(chunk.corrid, start=chunk.start, now=now)
        if fresh and not chunk.start:
            self._log.log_warn(f"CORRID {chunk.corrid}: no state (expired?), starting afresh")
        if chunk.phrases:
            session.phrases = chunk.phrases
        jobs = session.segmenter.push(chunk.audio)
        finals = [j for j in jobs if j.type == "final" and not isinstance(j, EarlyFinal)]
        held = finals[-1] if finals and not chunk.end else None  # its final completes it
        for job in jobs:
            self._submit(session, job, sender if job is held else None)
        if chunk.end:
            self._end(session, sender)
        elif held is None:
            with session.lock:
                send_results(sender, session.drain(), complete=True)

    def _submit(self, session: StreamSession, job: DecodeJob, sender: Any = None) -> None:
        if isinstance(job, EarlyFinal):
            session.latest_early = job
        elif job.type == "partial":
            session.latest_partial = job
        else:
            session.finals_queued = job.segment + 1
        audio_s = samples_to_s(session.segmenter.total_samples)
        self._worker.submit(Work(session, job, audio_s, sender))

    def _end(self, session: StreamSession, sender: Any) -> None:
        self._sessions.release(session.corrid)
        job = session.segmenter.flush()
        if job is not None:
            session.finals_queued = job.segment + 1
        session.closed = True
        audio_s = samples_to_s(session.segmenter.total_samples)
        self._worker.submit(Work(session, job, audio_s, sender, end=True))

    def finalize(self) -> None:
        self._worker.stop()
