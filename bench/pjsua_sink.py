"""Reference receiver for ``bench capacity``: a pjsua2 process that answers up to 4 calls.

Run as a subprocess (pjsua2 must own its process, see tests/peers/pjsua_phone.py):
``python bench/pjsua_sink.py --port P --timeout-s T``. It uses the null audio device,
answers every INVITE and hands every
decoded 20 ms frame of each call to a Python frame callback that reads it. Events are
JSON lines on stdout: ``started`` (SIP port), ``answered``, ``ended`` (frames read).
The bench offers it ``a=sendonly`` so it answers ``a=recvonly`` and sends no RTP, like
the gateway (which sends none without TTS).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

import pjsua2 as pj  # type: ignore[import-untyped]

MAX_CALLS = 4
CLOCK_RATE_HZ = 8000
LOOPBACK = "127.0.0.1"
POLL_MS = 20
_LIVE = (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD)


class _Events:
    stream: IO[str] = sys.stdout


def emit(event: str, **fields: object) -> None:
    _Events.stream.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
    _Events.stream.flush()


def _events_stream() -> IO[str]:
    """Keep the real stdout for events; pjlib's C logging goes to stderr."""
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", buffering=1)


class FrameReader(pj.AudioMediaPort):  # type: ignore[misc]
    """A conference-bridge port that reads every frame the bridge gives it."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0
        self.bytes = 0

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802 - pjsua2 name
        data = frame.buf
        self.frames += 1
        self.bytes += len(data)


class SinkCall(pj.Call):  # type: ignore[misc]
    def __init__(self, sink: Sink, account: pj.Account, call_id: int) -> None:
        super().__init__(account, call_id)
        self.sink = sink
        self.reader: FrameReader | None = None
        self.ended = False

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        if self.getInfo().state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            self.ended = True
            frames = self.reader.frames if self.reader is not None else 0
            emit("ended", frames=frames)

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        info = self.getInfo()
        for media in info.media:
            # a sendonly offer (receive-only answer) shows as REMOTE_HOLD: audio still flows
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status in _LIVE:
                if self.reader is None:
                    self.reader = self.sink.new_reader()
                self.getAudioMedia(media.index).startTransmit(self.reader)


class SinkAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.sink = sink

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        self.sink.incoming(SinkCall(self.sink, self, prm.callId))


class Sink:
    def __init__(self, port: int) -> None:
        self.port = port
        self.ep = pj.Endpoint()
        self.account: SinkAccount | None = None
        self.calls: list[SinkCall] = []

    def start(self) -> None:
        self.ep.libCreate()
        self.ep.libInit(_ep_config())
        self.ep.audDevManager().setNullDev()
        tcfg = pj.TransportConfig()
        tcfg.port = self.port
        tcfg.boundAddress = LOOPBACK
        tid = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        self.ep.libStart()
        for info in self.ep.codecEnum2():
            self.ep.codecSetPriority(info.codecId, 255 if info.codecId == "PCMU/8000/1" else 0)
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:sink@{LOOPBACK}"
        acfg.regConfig.registerOnAdd = False
        acfg.sipConfig.transportId = tid
        acfg.mediaConfig.transportConfig.boundAddress = LOOPBACK
        self.account = SinkAccount(self)
        self.account.create(acfg, True)
        emit("started", port=self.port)

    def new_reader(self) -> FrameReader:
        reader = FrameReader()
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = CLOCK_RATE_HZ
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = 20000
        reader.createPort(f"reader{len(self.calls)}", fmt)
        return reader

    def incoming(self, call: SinkCall) -> None:
        prm = pj.CallOpParam()
        live = [c for c in self.calls if not c.ended]
        if len(live) >= MAX_CALLS:
            prm.statusCode = 486
            call.hangup(prm)
            return
        self.calls.append(call)
        prm.statusCode = 200
        call.answer(prm)
        emit("answered", calls=len(live) + 1)

    def shutdown(self) -> None:
        self.ep.hangupAllCalls()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            self.ep.libHandleEvents(POLL_MS)
        self.calls.clear()
        if self.account is not None:
            self.account.shutdown()
        self.ep.libDestroy()


def _ep_config() -> Any:
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = False
    cfg.uaConfig.maxCalls = MAX_CALLS
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    med = cfg.medConfig
    med.clockRate = med.sndClockRate = CLOCK_RATE_HZ
    med.channelCount = 1
    med.noVad = True
    med.ecTailLen = 0
    return cfg


class _Stop:
    requested = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pjsua2 reference receiver for bench")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    _Events.stream = _events_stream()

    def on_term(_signum: int, _frame: object) -> None:
        _Stop.requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.alarm(int(args.timeout_s) + 10)
    sink = Sink(args.port)
    deadline = time.monotonic() + args.timeout_s
    try:
        sink.start()
        while not _Stop.requested and time.monotonic() < deadline:
            sink.ep.libHandleEvents(POLL_MS)
    finally:
        sink.shutdown()
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
