"""Reference receiver for ``bench capacity``: a pjsua2 process that answers up to 4 calls.

Run as a subprocess (pjsua2 must own its process, see gateway/pjsua_agent.py):
``python bench/pjsua_sink.py --port P --timeout-s T``. It uses the null audio device,
answers every INVITE and hands every decoded 20 ms frame of each call to a bridge port
that reads it. Events are JSON lines on stdout: ``started`` (SIP port), ``answered``,
``ended`` (frames read), ``error``, ``done``.
The bench offers it ``a=sendonly`` so it answers ``a=recvonly`` and sends no RTP, like
the gateway (which sends none without TTS).

The endpoint, transport, frame port and shutdown order are the probe phone's
(:mod:`gateway.pjsua_agent`): the pjsua2 calling code exists once outside tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from gateway.pjsua_agent import (
    LIVE_MEDIA,
    POLL_MS,
    Agent,
    Events,
    FrameReader,
    StopFlag,
    audio_indexes,
    ep_config,
    events_stream,
    guarded,
    pj,
)

MAX_CALLS = 4
LOOPBACK = "127.0.0.1"


class SinkCall(pj.Call):  # type: ignore[misc]
    def __init__(self, sink: Sink, account: SinkAccount, call_id: int) -> None:
        super().__init__(account, call_id)
        self.owner = sink
        self.reader: FrameReader | None = None
        self.ended = False

    @guarded
    def onCallState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 name
        if self.getInfo().state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            self.ended = True
            frames = self.reader.frames if self.reader is not None else 0
            self.owner.events.emit("ended", frames=frames)

    @guarded
    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        for index in audio_indexes(self.getInfo(), LIVE_MEDIA):
            if self.reader is None:
                self.reader = FrameReader(f"reader{len(self.owner.calls)}")
            self.getAudioMedia(index).startTransmit(self.reader)


class SinkAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.owner = sink

    @guarded
    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        self.owner.incoming(SinkCall(self.owner, self, prm.callId))


class Sink:
    def __init__(self, port: int, events: Events) -> None:
        self.port = port
        self.events = events
        self.agent = Agent()
        self.calls: list[SinkCall] = []

    def start(self) -> None:
        self.agent.start(ep_config(max_calls=MAX_CALLS, log_level=1))
        tid = self.agent.open(("udp",), bind=LOOPBACK, port=self.port)
        self.agent.only_codec("PCMU/8000/1")
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:sink@{LOOPBACK}"
        acfg.regConfig.registerOnAdd = False
        acfg.sipConfig.transportId = tid
        acfg.mediaConfig.transportConfig.boundAddress = LOOPBACK
        self.agent.add_account(SinkAccount(self), acfg)
        self.events.emit("started", port=self.port)

    def fail(self, why: str) -> None:
        self.events.emit("error", error=why)

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
        self.events.emit("answered", calls=len(live) + 1)

    def shutdown(self) -> None:
        self.agent.shutdown(self.calls.clear)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pjsua2 reference receiver for bench")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    events = Events(events_stream(), clock_key="t")
    StopFlag.install(args.timeout_s)
    sink = Sink(args.port, events)
    deadline = time.monotonic() + args.timeout_s
    try:
        sink.start()
        while not StopFlag.requested and time.monotonic() < deadline:
            sink.agent.pump(POLL_MS)
    finally:
        sink.shutdown()
    events.emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
