"""pjsua2 plumbing shared by the probe phone and the bench's reference receiver.

``gateway/probe_phone.py`` (``asr-gateway probe``'s calling side) and
``bench/pjsua_sink.py`` (``bench capacity``'s reference receiver) are both a pjsua2
process run as a subprocess that reports JSON lines on stdout. What they share lives
here, once: the events stream, the endpoint configuration (8 kHz mono, no VAD, no echo
canceller, no worker threads: every SIP callback runs on the main thread under
``libHandleEvents``), the transports, the callback guard, the media ports (player,
recorder, a frame-reading bridge port) and the shutdown order from FINDINGS (hang up,
pump, drop every media/call reference, shut the account down, destroy the library).

pjsua2 aborts a process in which a Python thread it does not know touches it, so only
those two subprocesses import this module; the test softphone
(tests/peers/pjsua_phone.py) stays independent on purpose.

Layer: shell.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, TypeVar

pj: Any = importlib.import_module("pjsua2")

CLOCK_RATE_HZ = 8000
FRAME_USEC = 20_000
POLL_MS = 20
SHUTDOWN_PUMP_S = 0.5
# a sendonly offer (receive-only answer) shows as REMOTE_HOLD: audio still flows
LIVE_MEDIA = (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD)

F = TypeVar("F", bound=Callable[..., None])


class Events:
    """One JSON object per line on the events stream, stamped with the monotonic clock."""

    def __init__(self, stream: IO[str], clock_key: str = "mono_s") -> None:
        self._stream = stream
        self._clock_key = clock_key

    def emit(self, event: str, **fields: object) -> None:
        record = {"event": event, self._clock_key: time.monotonic(), **fields}
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()


def events_stream() -> IO[str]:
    """Keep the real stdout for events; pjsua's C log (and print) go to stderr."""
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", buffering=1)


class StopFlag:
    """SIGTERM/SIGINT ask the main loop to stop; SIGALRM is the last resort."""

    requested = False

    @classmethod
    def install(cls, hard_cap_s: float) -> None:
        def on_term(_signum: int, _frame: object) -> None:
            cls.requested = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.alarm(int(hard_cap_s) + 10)      # if pjsua2 wedges


def guarded(method: F) -> F:
    """pjsua2 callbacks must never raise into C: ``self.owner.fail(why)`` instead."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:  # noqa: BLE001 - must not cross into C
            self.owner.fail(f"{method.__qualname__}: {exc!r}")

    return wrapper  # type: ignore[return-value]


def ep_config(*, max_calls: int, log_level: int, user_agent: str | None = None) -> Any:
    """8 kHz mono media, no VAD/EC, SIP on the main thread (``threadCnt = 0``)."""
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = False
    cfg.uaConfig.maxCalls = max_calls
    if user_agent:
        cfg.uaConfig.userAgent = user_agent
    cfg.logConfig.level = cfg.logConfig.consoleLevel = log_level
    med = cfg.medConfig
    med.clockRate = med.sndClockRate = CLOCK_RATE_HZ
    med.channelCount = 1
    med.noVad = True
    med.ecTailLen = 0
    return cfg


def bound_address(bind: str) -> str:
    """pjsua's spelling of 'any address' is the empty string."""
    return "" if bind == "0.0.0.0" else bind


class Agent:
    """One pjsua2 endpoint with its transports and (at most) one account.

    ``start`` creates the library; ``open`` adds the null audio device and transports
    and starts it; ``add_account``; ``pump``; ``shutdown`` in the order that does not
    crash pjsua2 on exit.
    """

    def __init__(self) -> None:
        self.ep = pj.Endpoint()
        self.account: Any = None
        self._created = False

    def start(self, cfg: Any) -> None:
        self.ep.libCreate()
        self._created = True
        self.ep.libInit(cfg)

    def valid_uri(self, uri: str) -> bool:
        return bool(self.ep.utilVerifySipUri(uri) == 0)

    def open(self, kinds: Sequence[str] = ("udp",), bind: str = "0.0.0.0",
             port: int = 0) -> int:
        """Null audio device, one transport per kind, library started; the first's id."""
        self.ep.audDevManager().setNullDev()
        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = bound_address(bind)
        ids = [self.ep.transportCreate(_TRANSPORTS[kind], tcfg) for kind in kinds]
        self.ep.libStart()
        return int(ids[0])

    def local_name(self, transport_id: int) -> str:
        return str(self.ep.transportGetInfo(transport_id).localName)

    def only_codec(self, codec_id: str) -> None:
        for info in self.ep.codecEnum2():
            self.ep.codecSetPriority(info.codecId, 255 if info.codecId == codec_id else 0)

    def add_account(self, account: Any, acfg: Any) -> None:
        self.account = account
        account.create(acfg, True)

    def pump(self, ms: int = POLL_MS) -> None:
        self.ep.libHandleEvents(ms)

    def shutdown(self, drop_refs: Callable[[], None]) -> None:
        """Hang up, pump, ``drop_refs()`` (media, calls), account, library."""
        if not self._created:
            return
        try:
            self.ep.hangupAllCalls()
            deadline = time.monotonic() + SHUTDOWN_PUMP_S
            while time.monotonic() < deadline:
                self.ep.libHandleEvents(POLL_MS)
        finally:
            drop_refs()
            if self.account is not None:
                self.account.shutdown()
                self.account = None
            self.ep.libDestroy()
            self._created = False


_TRANSPORTS = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP}


def start_player(path: str, to: Any) -> Any:
    """Play a WAV file once into ``to`` (a call's audio media); keep the result alive."""
    player = pj.AudioMediaPlayer()
    player.createPlayer(path, pj.PJMEDIA_FILE_NO_LOOP)
    player.startTransmit(to)
    return player


def start_recorder(path: str, source: Any) -> Any:
    """Record ``source`` into a WAV file; dropping the result finalises the header."""
    recorder = pj.AudioMediaRecorder()
    recorder.createRecorder(path)
    source.startTransmit(recorder)
    return recorder


def frame_format() -> Any:
    """The bridge's frame: 8 kHz mono 16-bit, 20 ms."""
    fmt = pj.MediaFormatAudio()
    fmt.type = pj.PJMEDIA_TYPE_AUDIO
    fmt.clockRate = CLOCK_RATE_HZ
    fmt.channelCount = 1
    fmt.bitsPerSample = 16
    fmt.frameTimeUsec = FRAME_USEC
    return fmt


class FrameReader(pj.AudioMediaPort):  # type: ignore[misc]
    """A conference-bridge port that reads (counts) every frame the bridge gives it.

    pjmedia calls ``onFrameReceived`` on its clock thread: it only counts, it never
    calls back into pjsua2.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.frames = 0
        self.bytes = 0
        self.createPort(name, frame_format())

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802 - pjsua2 name
        data = frame.buf
        self.frames += 1
        self.bytes += len(data)


def audio_indexes(info: Any, statuses: Sequence[int] = (pj.PJSUA_CALL_MEDIA_ACTIVE,)
                  ) -> list[int]:
    """Indexes of the audio media in a ``CallInfo`` whose status is one of ``statuses``."""
    return [int(m.index) for m in info.media
            if m.type == pj.PJMEDIA_TYPE_AUDIO and m.status in statuses]
