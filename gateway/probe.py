"""``asr-gateway probe``: one real call through the operator's own SIP path, end to end.

The probe listens to the gateway's ``/v1/events`` WebSocket first (so nothing is
missed), places a call with a pjsua2 phone (``gateway.probe_phone``, run as a
subprocess: pjsua2 threads must never share this process's event loop), plays
speech (a WAV file, or text spoken by Triton's TTS model), waits for the trailing
transcript (and for a reply the gateway is speaking to end), hangs up and reports the
gateway's ``call_id``, every ``transcript.final`` with its channel and round-trip time
(end of the played audio -> final received), the replies the gateway spoke
(``tts.*`` events) and the reply audio the phone actually heard (its recording), and a
summary that says in words what happened (:func:`summary_message`).

Exit status: 0 at least one final came back; 1 none did; 2 setup error (bad
arguments, no pjsua2, gateway or Triton unreachable, call refused).

The gateway's call is matched by the SIP Call-ID of the INVITE (``sip_call_id`` in
``call.offered``/``call.answered``); a B2BUA PBX changes the Call-ID, so the probe
also sends ``X-Probe-Id`` and matches it when the gateway copies that header
(``sip.copy_headers``).

:class:`ProbeTracker` is the sans-I/O part (events in, actions out, time as ``now``);
the rest of the module is the I/O around it.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib
import importlib.util
import ipaddress
import json
import os
import queue
import signal
import sys
import tempfile
import time
import uuid
import wave
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import numpy as np
import numpy.typing as npt
import soxr

EXIT_OK = 0
EXIT_NO_TRANSCRIPT = 1
EXIT_SETUP = 2
PHONE_RATE_HZ = 8000
PROBE_HEADER = "X-Probe-Id"
REPLY_EVENTS = ("tts.started", "tts.finished", "tts.interrupted", "tts.failed")
EVENT_TYPES = ("call.offered,call.answered,call.ended,transcript.partial,transcript.final,"
               + ",".join(REPLY_EVENTS))
SOUND_DBFS = -40.0        # a 20 ms frame of what the phone heard louder than this is sound
SOUND_FRAME_MS = 20
PJSUA2_HINT = "pip install pjsua2-python (asr-gateway[probe])"
SETTLE_S = 1.5            # quiet time after the audio and the last transcript before hanging up
HANGUP_GRACE_S = 5.0      # kept at the end of --timeout-s for the hangup and call.ended
_PHONE_EXIT_WAIT_S = 5.0
_TICK_S = 0.1
_PENDING_LIMIT = 5000     # gateway events kept while this call is not matched yet
Json = dict[str, Any]
Pcm = npt.NDArray[np.int16]


class ProbeSetupError(ValueError):
    """The probe could not run: bad arguments, missing pieces, unreachable services."""


class AudioInputError(ProbeSetupError):
    """The --wav file cannot be read or holds no audio."""


class SpeechSynthesisError(ProbeSetupError):
    """Triton's TTS model could not speak --say TEXT."""


class GatewayUnreachableError(ProbeSetupError):
    """The gateway's event WebSocket refused or failed the connection."""


# ------------------------------------------------------------------ options and results

@dataclass(frozen=True, slots=True)
class ProbeOptions:
    uri: str
    say: str | None = None
    wav: Path | None = None
    events_url: str = "http://127.0.0.1:8088"
    token: str | None = None
    registrar: str | None = None
    user: str = "probe"
    password_env: str | None = None
    domain: str | None = None
    timeout_s: float = 60.0
    headers: tuple[str, ...] = ()
    triton_url: str = "127.0.0.1:8001"
    tts_model: str = "tts_cpu_default"
    bind_address: str | None = None
    json_output: bool = False
    probe_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])


@dataclass(frozen=True, slots=True)
class FinalTranscript:
    channel: str
    text: str
    rtt_s: float | None   # end of the played audio -> final received; < 0: while it played


@dataclass(frozen=True, slots=True)
class SpokenReply:
    """A reply the gateway spoke into the call, as its ``tts.*`` events tell."""

    reply_id: str
    source: str
    text: str
    outcome: str          # playing (no end event seen), finished, interrupted, failed
    played_s: float
    detail: str = ""      # why it was interrupted or failed


@dataclass(frozen=True, slots=True)
class ReceivedAudio:
    """What the phone heard (its recording), reduced to numbers."""

    recorded_s: float
    sound_s: float                 # 20 ms frames above SOUND_DBFS
    first_sound_s: float | None    # from the start of the recording
    last_sound_s: float | None


@dataclass(frozen=True, slots=True)
class ProbeReport:
    exit_code: int
    message: str
    uri: str
    call_id: str | None = None
    sip_call_id: str | None = None
    sip_status: int | None = None
    sip_reason: str = ""
    answered: bool = False
    audio_s: float = 0.0
    finals: tuple[FinalTranscript, ...] = ()
    call_ended_reason: str | None = None
    replies: tuple[SpokenReply, ...] = ()
    reply_audio: ReceivedAudio | None = None

    def to_json(self) -> str:
        return json.dumps({"ok": self.exit_code == EXIT_OK, **asdict(self)})


# ------------------------------------------------------------------ the sans-I/O core

class Action(enum.Enum):
    WAIT = "wait"
    HANGUP = "hangup"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class _Heard:
    channel: str
    text: str
    received_at: float


class ProbeTracker:
    """Follows the phone's and the gateway's events and says when to hang up and stop.

    ``now`` is monotonic seconds, the same clock as the phone's ``mono_s`` stamps.
    """

    def __init__(self, *, now: float, timeout_s: float, probe_id: str = "",
                 settle_s: float = SETTLE_S) -> None:
        self.deadline = now + timeout_s
        self.hangup_at = self.deadline - min(HANGUP_GRACE_S, timeout_s / 4)
        self.settle_s = settle_s
        self.probe_id = probe_id
        self.sip_call_id: str | None = None
        self.call_id: str | None = None
        self.heard: list[_Heard] = []
        self.audio_s = 0.0
        self.audio_started: float | None = None
        self.audio_ended: float | None = None
        self.answered = False
        self.disconnected: Json | None = None
        self.ended: Json | None = None
        self.failure: str | None = None
        self._pending: list[tuple[Json, float]] = []
        self._partial_pending = False
        self._last_transcript = 0.0
        self._replies: dict[str, SpokenReply] = {}
        self._last_reply_event = 0.0
        self._hangup_sent = False
        self._phone_exit: int | None = None
        self._phone_error = ""

    # -------------------------------------------------------- input
    def on_phone(self, event: Mapping[str, Any], now: float) -> None:
        kind = event.get("event")
        at = float(event.get("mono_s", now))
        if kind == "calling":
            self.sip_call_id = str(event.get("sip_call_id", ""))
            self._replay()
        elif kind == "play_started":
            self.audio_started, self.audio_s = at, float(event.get("audio_s", 0.0))
        elif kind == "play_done":
            self.audio_ended = at
        elif kind == "call_state" and event.get("state") == "CONFIRMED":
            self.answered = True
        elif kind == "call_disconnected":
            self._on_disconnected(dict(event))
        elif kind == "reg_failed":
            self.failure = (f"registration failed: SIP {event.get('code')} "
                            f"{event.get('reason', '')}").rstrip()
        elif kind == "error":
            self._phone_error = str(event.get("error", ""))

    def _on_disconnected(self, event: Json) -> None:
        self.disconnected = event
        if event.get("answered"):
            return
        code, reason = int(event.get("code", 0)), str(event.get("reason", ""))
        if self._hangup_sent:
            self.failure = (f"call not answered within the timeout (SIP {code} {reason} "
                            "after the probe gave up; is the URI reachable?)")
        elif code == 0:
            self.failure = f"call failed: {reason}"
        else:
            self.failure = f"call refused: SIP {code} {reason}"

    def on_phone_exit(self, code: int) -> None:
        self._phone_exit = code
        if not self.answered and self.failure is None:
            why = self._phone_error or "see its log"
            self.failure = f"the phone exited with status {code} before the call: {why}"

    def on_gateway(self, event: Mapping[str, Any], now: float) -> None:
        if self.call_id is not None:
            if event.get("call_id") == self.call_id:
                self._apply(event, now)
            return
        self._pending.append((dict(event), now))
        del self._pending[:-_PENDING_LIMIT]     # a busy gateway: keep the newest only
        if self._is_mine(event):
            self._replay()

    def _replay(self) -> None:
        """Match the call among the events seen so far, then apply its events in order."""
        mine = next((e for e, _ in self._pending if self._is_mine(e)), None)
        if mine is None:
            return
        self.call_id = str(mine.get("call_id"))
        pending, self._pending = self._pending, []
        for event, at in pending:
            if event.get("call_id") == self.call_id:
                self._apply(event, at)

    def _is_mine(self, event: Mapping[str, Any]) -> bool:
        if self.sip_call_id and event.get("sip_call_id") == self.sip_call_id:
            return True
        headers = event.get("headers")
        if not self.probe_id or not isinstance(headers, Mapping):
            return False
        return any(str(k).lower() == PROBE_HEADER.lower() and v == self.probe_id
                   for k, v in headers.items())

    def _apply(self, event: Mapping[str, Any], at: float) -> None:
        kind = event.get("type")
        if kind == "transcript.partial":
            self._partial_pending, self._last_transcript = True, at
        elif kind == "transcript.final":
            self._partial_pending, self._last_transcript = False, at
            self.heard.append(_Heard(str(event.get("channel", "?")), str(event.get("text", "")),
                                     at))
        elif kind == "call.ended":
            self.ended = dict(event)
        elif kind in REPLY_EVENTS:
            self._on_reply(str(kind), event, at)

    def _on_reply(self, kind: str, event: Mapping[str, Any], at: float) -> None:
        reply_id = str(event.get("reply_id", ""))
        known = self._replies.get(reply_id) or SpokenReply(
            reply_id, str(event.get("source", "?")), str(event.get("text", "")), "playing", 0.0)
        played_s = float(event.get("played_ms", 0)) / 1000
        if kind == "tts.finished":
            known = replace(known, outcome="finished", played_s=played_s)
        elif kind == "tts.interrupted":
            known = replace(known, outcome="interrupted", played_s=played_s,
                            detail=str(event.get("reason", "")))
        elif kind == "tts.failed":
            known = replace(known, outcome="failed", detail=str(event.get("error", ""))[:200])
        self._replies[reply_id] = known
        self._last_reply_event = at

    @property
    def replies(self) -> tuple[SpokenReply, ...]:
        return tuple(self._replies.values())

    # -------------------------------------------------------- decisions
    def next_action(self, now: float) -> Action:
        if self.failure is not None:
            return Action.DONE
        if not self._hangup_sent:
            if self._trailing_heard(now) or now >= self.hangup_at or self.disconnected:
                self._hangup_sent = True
                return Action.HANGUP
            return Action.WAIT
        if self.ended is not None or now >= self.deadline:
            return Action.DONE
        if self.call_id is None and self._phone_exit is not None:
            return Action.DONE            # the gateway never showed this call: nothing to wait
        return Action.WAIT

    def _trailing_heard(self, now: float) -> bool:
        """The audio is over, a final came, and nothing happened for ``settle_s``: no
        partial pending, no reply still being spoken."""
        if self.audio_ended is None or not self.heard or self._partial_pending:
            return False
        if any(r.outcome == "playing" for r in self._replies.values()):
            return False
        quiet_since = max(self.audio_ended, self._last_transcript, self._last_reply_event)
        return now - quiet_since >= self.settle_s

    def rtt_s(self, heard: _Heard) -> float | None:
        return None if self.audio_ended is None else round(heard.received_at - self.audio_ended, 3)

    def finals(self) -> tuple[FinalTranscript, ...]:
        return tuple(FinalTranscript(h.channel, h.text, self.rtt_s(h)) for h in self.heard)

    def report(self, uri: str, events_url: str) -> ProbeReport:
        code, message = self._outcome(events_url)
        sip = self.disconnected or {}
        return ProbeReport(
            exit_code=code, message=message, uri=uri, call_id=self.call_id,
            sip_call_id=self.sip_call_id,
            sip_status=int(sip["code"]) if "code" in sip else None,
            sip_reason=str(sip.get("reason", "")), answered=self.answered,
            audio_s=self.audio_s, finals=self.finals(),
            call_ended_reason=str(self.ended.get("reason")) if self.ended else None,
            replies=self.replies)

    def _outcome(self, events_url: str) -> tuple[int, str]:
        if self.failure is not None:
            return EXIT_SETUP, self.failure
        if self.heard:
            return EXIT_OK, "OK"
        if self.call_id is None:
            return EXIT_NO_TRANSCRIPT, (
                f"no transcript: the gateway at {events_url} reported no call with SIP Call-ID "
                f"{self.sip_call_id} (through a B2BUA the Call-ID changes: add {PROBE_HEADER} "
                "to sip.copy_headers and let the PBX pass it on)")
        ended = f", call.ended: {self.ended.get('reason')}" if self.ended else ""
        return EXIT_NO_TRANSCRIPT, (
            f"no transcript for call {self.call_id} within the timeout{ended} "
            "(is Triton up and the ASR model loaded? see the gateway's /readyz)")



# ------------------------------------------------------------------ the summary (pure)

def received_audio(pcm: Pcm, rate_hz: int = PHONE_RATE_HZ, *,
                   threshold_dbfs: float = SOUND_DBFS,
                   frame_ms: int = SOUND_FRAME_MS) -> ReceivedAudio:
    """How much sound is in what the phone heard, by 20 ms frames above a level."""
    frame = rate_hz * frame_ms // 1000
    count = len(pcm) // frame
    recorded_s = len(pcm) / rate_hz
    if count == 0:
        return ReceivedAudio(round(recorded_s, 3), 0.0, None, None)
    frames = pcm[:count * frame].astype(np.float64).reshape(count, frame) / 32768.0
    rms = np.sqrt((frames ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > 10 ** (threshold_dbfs / 20))
    if loud.size == 0:
        return ReceivedAudio(round(recorded_s, 3), 0.0, None, None)
    step_s = frame_ms / 1000
    return ReceivedAudio(round(recorded_s, 3), round(loud.size * step_s, 3),
                         round(float(loud[0]) * step_s, 3),
                         round(float(loud[-1] + 1) * step_s, 3))


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else many or word + 's'}"


def finals_sentence(finals: Sequence[FinalTranscript]) -> str:
    """How many finals, and when the last one came relative to the end of the audio."""
    head = _plural(len(finals), "final")
    last = finals[-1].rtt_s if finals else None
    if last is None:
        return head
    after = sum(1 for f in finals if f.rtt_s is not None and f.rtt_s >= 0)
    if after:
        return f"{head} (the last {last:.2f} s after the audio ended)"
    return (f"{head}, all while the audio played (the last {-last:.2f} s before its end; "
            "none came after it)")


def replies_sentence(replies: Sequence[SpokenReply]) -> str:
    if not replies:
        return "no spoken reply from the gateway"
    if len(replies) == 1:
        r = replies[0]
        return f"1 spoken reply ({_reply_state(r)}): {r.text!r}"
    played = sum(r.played_s for r in replies)
    states = ", ".join(_reply_state(r) for r in replies)
    return f"{len(replies)} spoken replies ({played:.2f} s played; {states})"


def _reply_state(r: SpokenReply) -> str:
    why = f" ({r.detail})" if r.detail else ""
    if r.outcome == "failed":
        return f"{r.source}, failed{why}"
    if r.outcome == "playing":
        return f"{r.source}, still playing at hangup"
    return f"{r.source}, {r.outcome}{why}, {r.played_s:.2f} s played"


def reply_audio_sentence(audio: ReceivedAudio | None,
                         replies: Sequence[SpokenReply]) -> str | None:
    if audio is None:
        return None
    played = sum(r.played_s for r in replies if r.outcome != "failed")
    if audio.sound_s == 0:
        if played > 0:
            return (f"but the phone heard no reply audio in {audio.recorded_s:.2f} s "
                    "(one-way audio: is the gateway's RTP reaching this phone?)")
        return "no reply audio received"
    first = f", from {audio.first_sound_s:.2f} s" if audio.first_sound_s is not None else ""
    return (f"reply audio received: {audio.sound_s:.2f} s of sound in {audio.recorded_s:.2f} s"
            f" heard{first}")


def summary_message(report: ProbeReport) -> str:
    """What happened, in words (the sentences of ``summary:``); setup errors keep theirs."""
    if report.exit_code == EXIT_SETUP:
        return report.message
    head = report.message if report.exit_code != EXIT_OK else f"OK: call {report.call_id}"
    parts = [head, f"played {report.audio_s:.2f} s of audio"]
    if report.finals:
        parts.append(finals_sentence(report.finals))
    if report.call_id is not None:
        parts.append(replies_sentence(report.replies))
    heard = reply_audio_sentence(report.reply_audio, report.replies)
    if heard:
        parts.append(heard)
    if report.sip_status:
        parts.append(f"hangup SIP {report.sip_status} {report.sip_reason}".rstrip())
    return "; ".join(parts)


def with_reply_audio(report: ProbeReport, audio: ReceivedAudio | None) -> ProbeReport:
    """The report with what the phone heard, and its message in words."""
    report = replace(report, reply_audio=audio)
    return replace(report, message=summary_message(report))


# ------------------------------------------------------------------ audio

def load_wav(path: Path) -> Pcm:
    """Any WAV soundfile reads, mixed to mono and resampled to 8 kHz 16-bit."""
    soundfile: Any = importlib.import_module("soundfile")
    try:
        data, rate_hz = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as exc:
        raise AudioInputError(f"--wav {path}: cannot read it: {exc}") from exc
    if data.size == 0:
        raise AudioInputError(f"--wav {path}: no audio in it")
    return to_phone_pcm(np.asarray(data.mean(axis=1), dtype=np.float32), int(rate_hz))


def to_phone_pcm(audio: npt.NDArray[np.float32], rate_hz: int) -> Pcm:
    if rate_hz != PHONE_RATE_HZ:
        audio = np.asarray(soxr.resample(audio, rate_hz, PHONE_RATE_HZ), dtype=np.float32)
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def write_phone_wav(path: Path, pcm: Pcm) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(PHONE_RATE_HZ)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def synthesize(text: str, triton_url: str, model: str, timeout_s: float) -> Pcm:
    """TEXT spoken by a TTS model of the repository's contract (triton_models/TTS.md)."""
    grpcclient: Any = importlib.import_module("tritonclient.grpc")
    client = grpcclient.InferenceServerClient(triton_url)
    try:
        _check_tts_ready(client, triton_url, model)
        chunks = _stream_tts(grpcclient, client, text, model, timeout_s)
    finally:
        client.close()
    if not chunks:
        raise SpeechSynthesisError(f"{model} returned no audio for --say {text!r}")
    rate_hz = chunks[0][0]
    return to_phone_pcm(np.concatenate([a for _, a in chunks]).astype(np.float32), rate_hz)


def _check_tts_ready(client: Any, url: str, model: str) -> None:
    try:
        client.is_server_live(client_timeout=10)
    except Exception as exc:  # noqa: BLE001 - tritonclient raises its own kinds
        raise SpeechSynthesisError(f"Triton at {url} is unreachable: {exc}") from exc
    try:
        ready = bool(client.is_model_ready(model, client_timeout=10))
    except Exception:  # noqa: BLE001 - an unknown model is an error on some versions
        ready = False
    if not ready:
        raise SpeechSynthesisError(f"TTS model {model} is not ready in Triton at {url} "
                                   f"(load it: POST /v2/repository/models/{model}/load)")


def _stream_tts(grpcclient: Any, client: Any, text: str, model: str,
                timeout_s: float) -> list[tuple[int, npt.NDArray[np.float32]]]:
    replies: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: replies.put((result, error)))
    try:
        tensor = grpcclient.InferInput("TEXT", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([text.encode("utf-8")], dtype=np.object_))
        client.async_stream_infer(model, [tensor], request_id="probe",
                                  enable_empty_final_response=True)
        return _collect_tts(replies, model, time.monotonic() + timeout_s)
    finally:
        client.stop_stream()


def _collect_tts(replies: queue.Queue[tuple[Any, Any]], model: str,
                 deadline: float) -> list[tuple[int, npt.NDArray[np.float32]]]:
    chunks: list[tuple[int, npt.NDArray[np.float32]]] = []
    while True:
        try:
            result, error = replies.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise SpeechSynthesisError(f"{model}: no complete reply in time") from None
        if error is not None:
            raise SpeechSynthesisError(f"{model}: {error}")
        audio = result.as_numpy("AUDIO")
        if audio is not None and audio.size:
            rate = int(result.as_numpy("SAMPLE_RATE").reshape(-1)[0])
            chunks.append((rate, audio.reshape(-1).astype(np.float32)))
        final = result.get_response().parameters.get("triton_final_response")
        if final is not None and final.bool_param:
            return chunks


# ------------------------------------------------------------------ the phone subprocess

def pjsua2_available() -> bool:
    return importlib.util.find_spec("pjsua2") is not None


def default_bind(opts: ProbeOptions) -> str:
    """Loopback when the first hop is on this host, else every interface."""
    host = _uri_host(opts.registrar or opts.uri)
    with contextlib.suppress(ValueError):
        return "127.0.0.1" if ipaddress.ip_address(host).is_loopback else "0.0.0.0"
    return "127.0.0.1" if host == "localhost" else "0.0.0.0"


def _uri_host(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    host = rest.rsplit("@", 1)[-1].split(";", 1)[0]
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0]


def phone_argv(opts: ProbeOptions, wav: Path, record: Path | None = None) -> list[str]:
    argv = [sys.executable, "-m", "gateway.probe_phone", "--call", opts.uri, "--play", str(wav),
            "--user", opts.user, "--bind", opts.bind_address or default_bind(opts),
            "--timeout-s", f"{opts.timeout_s + 10}",
            "--header", f"{PROBE_HEADER}: {opts.probe_id}"]
    for flag, value in (("--registrar", opts.registrar), ("--domain", opts.domain),
                        ("--password-env", opts.password_env)):
        if value:
            argv += [flag, value]
    for header in opts.headers:
        argv += ["--header", header]
    if record is not None:
        argv += ["--record", str(record)]
    return argv


class PhoneProcess:
    """``python -m gateway.probe_phone``: JSON events in, ``hangup`` out."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @classmethod
    async def start(cls, argv: Sequence[str], log_path: Path) -> PhoneProcess:
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=log, start_new_session=True)
        return cls(proc, log_path)

    async def read_into(self, inbox: asyncio.Queue[tuple[str, Json]]) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    await inbox.put(("phone", event))
        await inbox.put(("phone_exit", {"code": await self.proc.wait()}))

    def hangup(self) -> None:
        if self.proc.stdin is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(OSError, RuntimeError):
            self.proc.stdin.write(b"hangup\n")

    async def close(self) -> None:
        self.hangup()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), _PHONE_EXIT_WAIT_S)
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), _PHONE_EXIT_WAIT_S)
                return

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------ the gateway's events

async def connect_events(session: aiohttp.ClientSession, opts: ProbeOptions
                         ) -> aiohttp.ClientWebSocketResponse:
    url = opts.events_url.rstrip("/") + "/v1/events"
    headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else {}
    try:
        return await session.ws_connect(url, params={"types": EVENT_TYPES}, headers=headers,
                                        timeout=aiohttp.ClientWSTimeout(ws_close=5))
    except aiohttp.WSServerHandshakeError as exc:
        hint = " (wrong or missing token: --token-env)" if exc.status in (401, 403) else ""
        raise GatewayUnreachableError(f"{url}: HTTP {exc.status}{hint}") from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise GatewayUnreachableError(f"gateway unreachable at {url}: {exc}") from exc


async def _read_events(ws: aiohttp.ClientWebSocketResponse,
                       inbox: asyncio.Queue[tuple[str, Json]]) -> None:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        with contextlib.suppress(ValueError):
            event = json.loads(msg.data)
            if isinstance(event, dict):
                await inbox.put(("gateway", event))
    await inbox.put(("gateway_closed", {}))


# ------------------------------------------------------------------ the probe

class Printer:
    """Live lines for people (nothing with --json): the call once matched, each final."""

    def __init__(self, out: TextIO, enabled: bool) -> None:
        self.out, self.enabled = out, enabled
        self._call_shown = False
        self._finals_shown = 0
        self._replies_shown: set[str] = set()

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.out, flush=True)

    def progress(self, tracker: ProbeTracker) -> None:
        if tracker.call_id and not self._call_shown:
            self._call_shown = True
            self.line(f"call_id {tracker.call_id} (SIP Call-ID {tracker.sip_call_id})")
        for heard in tracker.heard[self._finals_shown:]:
            self.line(format_final(heard.channel, heard.text, tracker.rtt_s(heard)))
        self._finals_shown = len(tracker.heard)
        for reply in tracker.replies:
            if reply.outcome != "playing" and reply.reply_id not in self._replies_shown:
                self._replies_shown.add(reply.reply_id)
                self.line(f"reply [{_reply_state(reply)}]: {reply.text}")


def format_final(channel: str, text: str, rtt_s: float | None) -> str:
    when = "while playing" if rtt_s is None or rtt_s < 0 else f"rtt {rtt_s:.2f} s"
    return f"final [{channel}] ({when}): {text}"


async def _follow(tracker: ProbeTracker, phone: PhoneProcess,
                  inbox: asyncio.Queue[tuple[str, Json]], printer: Printer) -> None:
    while (action := tracker.next_action(time.monotonic())) is not Action.DONE:
        if action is Action.HANGUP:
            phone.hangup()
        try:
            source, event = await asyncio.wait_for(inbox.get(), _TICK_S)
        except TimeoutError:
            continue
        now = time.monotonic()
        if source == "phone":
            tracker.on_phone(event, now)
        elif source == "phone_exit":
            tracker.on_phone_exit(int(event["code"]))
        elif source == "gateway":
            tracker.on_gateway(event, now)
        printer.progress(tracker)


async def probe(opts: ProbeOptions, wav: Path, workdir: Path, printer: Printer) -> ProbeReport:
    inbox: asyncio.Queue[tuple[str, Json]] = asyncio.Queue()
    async with aiohttp.ClientSession() as session:
        ws = await connect_events(session, opts)
        recording = workdir / "heard.wav"
        phone = await PhoneProcess.start(phone_argv(opts, wav, recording), workdir / "phone.log")
        tracker = ProbeTracker(now=time.monotonic(), timeout_s=opts.timeout_s,
                               probe_id=opts.probe_id)
        tasks = [asyncio.create_task(_read_events(ws, inbox)),
                 asyncio.create_task(phone.read_into(inbox))]
        try:
            await _follow(tracker, phone, inbox, printer)
        finally:
            await phone.close()
            await ws.close()
            for task in tasks:
                task.cancel()
    report = tracker.report(opts.uri, opts.events_url)
    if report.exit_code == EXIT_SETUP and not tracker.answered and not tracker.disconnected:
        printer.line(f"--- phone log tail:\n{phone.log_tail()}")
    return with_reply_audio(report, read_received(recording) if tracker.answered else None)


def read_received(path: Path) -> ReceivedAudio | None:
    """The phone's recording (8 kHz mono 16-bit), or None when there is none to read."""
    try:
        with wave.open(str(path)) as w:
            rate_hz, frames = w.getframerate(), w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error):
        return None
    return received_audio(np.frombuffer(frames, dtype="<i2"), rate_hz)


def prepare_audio(opts: ProbeOptions, workdir: Path) -> Path:
    if opts.wav is not None:
        pcm = load_wav(opts.wav)
    else:
        assert opts.say is not None
        pcm = synthesize(opts.say, opts.triton_url, opts.tts_model, min(opts.timeout_s, 60.0))
    return write_phone_wav(workdir / "probe.wav", pcm)


def check_options(opts: ProbeOptions) -> None:
    if not opts.uri.startswith(("sip:", "sips:")):
        raise ProbeSetupError(f"{opts.uri!r} is not a SIP URI (sip:user@host[:port])")
    if (opts.say is None) == (opts.wav is None):
        raise ProbeSetupError("give exactly one of --say TEXT or --wav FILE")
    if opts.timeout_s <= 0:
        raise ProbeSetupError(f"--timeout-s must be positive, got {opts.timeout_s}")
    if opts.password_env and opts.password_env not in os.environ:
        raise ProbeSetupError(f"--password-env {opts.password_env}: the variable is not set")
    for header in opts.headers:
        name, sep, _ = header.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise ProbeSetupError(f"--header {header!r}: expected 'Name: value'")
    if not pjsua2_available():
        raise ProbeSetupError(f"the probe needs pjsua2: {PJSUA2_HINT}")


def run(opts: ProbeOptions, out: TextIO = sys.stdout) -> int:
    printer = Printer(out, not opts.json_output)
    try:
        check_options(opts)
        with tempfile.TemporaryDirectory(prefix="asr-probe-") as tmp:
            wav = prepare_audio(opts, Path(tmp))
            printer.line(f"probe: calling {opts.uri} with {_wav_seconds(wav):.2f} s of audio; "
                         f"events from {opts.events_url}")
            report = asyncio.run(probe(opts, wav, Path(tmp), printer))
    except ProbeSetupError as exc:
        report = ProbeReport(exit_code=EXIT_SETUP, message=str(exc), uri=opts.uri)
    except KeyboardInterrupt:
        return 130
    _print_report(report, opts, out)
    return report.exit_code


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return float(w.getnframes() / w.getframerate())


def _print_report(report: ProbeReport, opts: ProbeOptions, out: TextIO) -> None:
    if opts.json_output:
        print(report.to_json(), file=out, flush=True)
        if report.exit_code == EXIT_SETUP:
            print(f"probe: {report.message}", file=sys.stderr)
        return
    if report.exit_code == EXIT_SETUP:
        print(f"probe: {report.message}", file=sys.stderr)
        return
    print(f"summary: {report.message}", file=out, flush=True)
