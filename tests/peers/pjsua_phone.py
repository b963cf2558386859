"""A pjsua2 softphone for integration tests, run as a SUBPROCESS.

pjsua2 (PyPI ``pjsua2-python``) starts C threads and aborts the process when a
Python thread it does not know touches it, so tests never import this module:
``tests/peers/softphone.py`` runs it with ``python -m tests.peers.pjsua_phone``
(or as a file) and reads its events.

Events: one JSON object per line on stdout, e.g. ``{"event": "registered",
"code": 200}``; pjsua's own log goes to stderr. Exit status: 0 on success paths,
2 call failed, 3 registration failed, 4 time limit, 5 internal error.

All SIP work happens on the main thread (``threadCnt = 0`` and
``libHandleEvents`` polling); pjmedia's clock thread only runs C code (WAV
player and recorder), so no Python callback runs on a foreign thread.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, TypeVar

import pjsua2 as pj  # type: ignore[import-untyped]

EXIT_OK = 0
EXIT_CALL_FAILED = 2
EXIT_REG_FAILED = 3
EXIT_TIMEOUT = 4
EXIT_INTERNAL = 5
CLOCK_RATE_HZ = 8000
LOOPBACK = "127.0.0.1"
_POLL_MS = 20
_STATS_PERIOD_S = 0.2
_SHUTDOWN_PUMP_S = 0.5
_INV_STATES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
_CODECS = {"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1"}

F = TypeVar("F", bound=Callable[..., None])


class EventSink:
    """Writes one JSON object per line to the events stream."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._t0 = time.monotonic()

    def emit(self, event: str, **fields: object) -> None:
        record = {"event": event, "t": round(time.monotonic() - self._t0, 3), **fields}
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--registrar", help="e.g. sip:127.0.0.1:5070 (also the outbound proxy)")
    p.add_argument("--user", default="pjsua")
    p.add_argument("--password", default="")
    p.add_argument("--domain", default=LOOPBACK)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--call", metavar="SIP_URI")
    mode.add_argument("--answer", action="store_true", help="auto-answer one incoming call")
    mode.add_argument("--register-only", action="store_true", help="register, then exit")
    p.add_argument("--answer-code", type=int, default=200, help="final response to an INVITE")
    p.add_argument("--answer-after-s", type=float, default=0.0, help="ring this long first")
    p.add_argument("--play", metavar="WAV", help="8 kHz mono 16-bit WAV played once")
    p.add_argument("--record", metavar="WAV", help="what the phone hears")
    p.add_argument("--duration-s", type=float, default=0.0, help="0: wait for remote BYE")
    p.add_argument("--codec", choices=sorted(_CODECS), help="offer/accept only this codec")
    p.add_argument("--vad", action="store_true",
                   help="silence suppression: send no RTP while silent (pjmedia VAD)")
    p.add_argument("--local-port", type=int, default=0, help="SIP UDP port (0: any)")
    p.add_argument("--rtp-port", type=int, default=0, help="first RTP port (0: pjsua default)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="hard cap for the process")
    p.add_argument("--headers", action="append", default=[], metavar="'Name: value'")
    p.add_argument("--log-level", type=int, default=3)
    return p.parse_args(argv)


def guarded(method: F) -> F:
    """pjsua2 callbacks must never raise into C: report and mark the phone failed."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:  # noqa: BLE001 - must not cross into C
            self.phone.fail(f"{method.__qualname__}: {exc!r}")

    return wrapper  # type: ignore[return-value]


class PhoneAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.phone = phone

    @guarded
    def onRegState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 name
        self.phone.on_reg_state(int(prm.code), str(prm.reason), int(prm.expiration))

    @guarded
    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        self.phone.on_incoming_call(PhoneCall(self.phone, self, prm.callId), prm.rdata.wholeMsg)


class PhoneCall(pj.Call):  # type: ignore[misc]
    def __init__(self, phone: Phone, account: PhoneAccount, call_id: int = -1) -> None:
        super().__init__(account, call_id)
        self.phone = phone

    @guarded
    def onCallState(self, prm: Any) -> None:  # noqa: N802
        self.phone.on_call_state(self, self.getInfo())

    @guarded
    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        self.phone.on_media_state(self, self.getInfo())


class WavPlayer(pj.AudioMediaPlayer):  # type: ignore[misc]
    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.phone = phone

    @guarded
    def onEof2(self) -> None:  # noqa: N802
        self.phone.on_play_done()


def _headers(raw: Sequence[str]) -> Any:
    vector = pj.SipHeaderVector()
    for line in raw:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"--headers {line!r}: expected 'Name: value'")
        header = pj.SipHeader()
        header.hName, header.hValue = name.strip(), value.strip()
        vector.append(header)
    return vector


def _x_headers(whole_msg: str) -> dict[str, str]:
    """The X- headers of a raw SIP message (for tests that check them)."""
    head = whole_msg.split("\r\n\r\n", 1)[0]
    pairs = (line.partition(":") for line in head.splitlines()[1:])
    return {k.strip(): v.strip() for k, _, v in pairs if k.strip().lower().startswith("x-")}


class Phone:
    """One pjsua2 endpoint, one account, at most one call."""

    def __init__(self, args: argparse.Namespace, sink: EventSink) -> None:
        self.args = args
        self.sink = sink
        self.ep = pj.Endpoint()
        self.account: PhoneAccount | None = None
        self.call: PhoneCall | None = None
        self.player: WavPlayer | None = None
        self.recorder: Any = None
        self.exit_code: int | None = None
        self.registered = not args.registrar
        self.call_started = False
        self.confirmed_at: float | None = None
        self.local_hangup = False
        self.call_ended = False
        self.answer_at: float | None = None
        self.stats: dict[str, int] = {}
        self._stats_at = 0.0
        self._audio_index = -1

    # ------------------------------------------------------------ setup
    def start(self) -> None:
        self.ep.libCreate()
        self.ep.libInit(self._ep_config())
        self.ep.audDevManager().setNullDev()
        tcfg = pj.TransportConfig()
        tcfg.port = self.args.local_port
        tcfg.boundAddress = LOOPBACK
        tid = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        port = self.ep.transportGetInfo(tid).localName
        self.ep.libStart()
        self._select_codec()
        self.account = PhoneAccount(self)
        self.account.create(self._account_config(tid), True)
        self.sink.emit("started", sip_address=str(port), user=self.args.user)

    def _ep_config(self) -> Any:
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = 4
        cfg.uaConfig.userAgent = "pjsua-test-phone"
        cfg.logConfig.level = self.args.log_level
        cfg.logConfig.consoleLevel = self.args.log_level
        med = cfg.medConfig
        med.clockRate = med.sndClockRate = CLOCK_RATE_HZ
        med.channelCount = 1
        med.noVad = not self.args.vad
        med.ecTailLen = 0
        return cfg

    def _select_codec(self) -> None:
        if not self.args.codec:
            return
        wanted = _CODECS[self.args.codec]
        for info in self.ep.codecEnum2():
            self.ep.codecSetPriority(info.codecId, 255 if info.codecId == wanted else 0)

    def _account_config(self, transport_id: int) -> Any:
        a = self.args
        acfg = pj.AccountConfig()
        acfg.sipConfig.transportId = transport_id
        acfg.mediaConfig.transportConfig.boundAddress = LOOPBACK
        if a.rtp_port:
            acfg.mediaConfig.transportConfig.port = a.rtp_port
        if a.registrar:
            acfg.idUri = f"sip:{a.user}@{a.domain}"
            acfg.regConfig.registrarUri = a.registrar
            acfg.regConfig.retryIntervalSec = 0
            acfg.regConfig.timeoutSec = 300
            acfg.sipConfig.proxies.append(f"{a.registrar};lr")
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", a.user, 0, a.password))
        else:
            acfg.idUri = f"sip:{a.user}@{LOOPBACK}"
            acfg.regConfig.registerOnAdd = False
        return acfg

    # ------------------------------------------------------------ callbacks
    def fail(self, why: str, code: int = EXIT_INTERNAL) -> None:
        self.sink.emit("error", error=why)
        if self.exit_code is None:
            self.exit_code = code

    def on_reg_state(self, code: int, reason: str, expiration: int) -> None:
        if 200 <= code < 300 and expiration > 0:
            self.registered = True
            self.sink.emit("registered", code=code, expires_s=expiration)
            if self.args.register_only:
                self.exit_code = EXIT_OK
        elif 200 <= code < 300:
            self.sink.emit("unregistered", code=code)
        else:
            self.sink.emit("reg_failed", code=code, reason=reason)
            self.exit_code = EXIT_REG_FAILED

    def on_incoming_call(self, call: PhoneCall, whole_msg: str) -> None:
        info = call.getInfo()
        self.sink.emit("incoming", remote_uri=info.remoteUri, headers=_x_headers(whole_msg))
        prm = pj.CallOpParam()
        if self.call is not None or not self.args.answer:
            prm.statusCode = 486
            call.hangup(prm)
            return
        self.call = call
        prm.statusCode = 180
        call.answer(prm)
        self.answer_at = time.monotonic() + self.args.answer_after_s

    def _answer(self) -> None:
        self.answer_at = None
        if self.call is None or self.call_ended:
            return
        prm = pj.CallOpParam()
        prm.statusCode = self.args.answer_code
        self.sink.emit("answering", code=self.args.answer_code)
        self.call.answer(prm)

    def on_call_state(self, call: PhoneCall, info: Any) -> None:
        if call is not self.call:
            return
        state = _INV_STATES.get(info.state, str(info.state))
        self.sink.emit("call_state", state=state, code=int(info.lastStatusCode))
        if state == "CONFIRMED" and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
        if state == "DISCONNECTED":
            self._on_disconnected(info)

    def _on_disconnected(self, info: Any) -> None:
        by = "local" if self.local_hangup else "remote"
        self.sink.emit(
            "call_disconnected",
            code=int(info.lastStatusCode),
            reason=str(info.lastReason),
            by=by,
            connected=self.confirmed_at is not None,
            **self.stats,
        )
        self.call_ended = True
        # Success: the call was answered, or we were told to reject it.
        ok = self.confirmed_at is not None or (self.args.answer and self.args.answer_code >= 300)
        self.exit_code = EXIT_OK if ok else EXIT_CALL_FAILED
        self._release_media()

    def on_media_state(self, call: PhoneCall, info: Any) -> None:
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self._audio_index = media.index
                self._connect_audio(call.getAudioMedia(media.index))
                stream = call.getStreamInfo(media.index)
                self.sink.emit(
                    "media_active",
                    codec=str(stream.codecName),
                    remote_rtp=str(stream.remoteRtpAddress),
                )

    def _connect_audio(self, audio: Any) -> None:
        if self.args.record and self.recorder is None:
            self.recorder = pj.AudioMediaRecorder()
            self.recorder.createRecorder(self.args.record)
            audio.startTransmit(self.recorder)
        if self.args.play and self.player is None:
            self.player = WavPlayer(self)
            self.player.createPlayer(self.args.play, pj.PJMEDIA_FILE_NO_LOOP)
            self.player.startTransmit(audio)

    def on_play_done(self) -> None:
        self.sink.emit("play_done")

    def _release_media(self) -> None:
        # Dropping the recorder finalises the WAV header.
        self.player = None
        self.recorder = None

    # ------------------------------------------------------------ main loop
    def tick(self, now: float) -> None:
        if self.answer_at is not None and now >= self.answer_at:
            self._answer()
        if self.args.call and self.registered and not self.call_started:
            self._make_call()
        if self.confirmed_at is not None and not self.local_hangup and self.args.duration_s > 0:
            if now >= self.confirmed_at + self.args.duration_s:
                self.hangup()
        if self.call is not None and self.confirmed_at is not None and now >= self._stats_at:
            self._stats_at = now + _STATS_PERIOD_S
            self._sample_stats()

    def _make_call(self) -> None:
        self.call_started = True
        assert self.account is not None
        self.call = PhoneCall(self, self.account)
        prm = pj.CallOpParam(True)
        prm.txOption.headers = _headers(self.args.headers)
        self.sink.emit("calling", uri=self.args.call)
        self.call.makeCall(self.args.call, prm)

    def _sample_stats(self) -> None:
        if self._audio_index < 0 or self.call is None or not self.call.isActive():
            return
        try:
            rtcp = self.call.getStreamStat(self._audio_index).rtcp
        except pj.Error:
            return
        self.stats = {"rx_packets": int(rtcp.rxStat.pkt), "tx_packets": int(rtcp.txStat.pkt)}

    def hangup(self) -> None:
        if self.call is None or self.local_hangup or self.call_ended:
            return
        self._sample_stats()
        self.local_hangup = True
        self.sink.emit("hangup")
        prm = pj.CallOpParam()
        prm.statusCode = 603 if self.confirmed_at is None else 200
        try:
            self.call.hangup(prm)
        except pj.Error as exc:
            self.sink.emit("error", error=f"hangup: {exc.info()}")

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.ep.libHandleEvents(_POLL_MS)

    def shutdown(self) -> None:
        """FINDINGS order: hang up, pump, drop references, account, library."""
        try:
            self.ep.hangupAllCalls()
            self.pump(_SHUTDOWN_PUMP_S)
        finally:
            self._release_media()
            self.call = None
            if self.account is not None:
                self.account.shutdown()
                self.account = None
            self.ep.libDestroy()


class _Stop:
    requested = False


def _install_signal_handlers(hard_cap_s: float) -> None:
    def on_term(signum: int, frame: object) -> None:
        _Stop.requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    # Last resort if pjsua2 wedges: SIGALRM's default action ends the process.
    signal.alarm(int(hard_cap_s) + 5)


def _events_stream() -> IO[str]:
    """Keep the real stdout for events; send everything else (pjsua's C logs) to stderr."""
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", buffering=1)


def run(args: argparse.Namespace, sink: EventSink) -> int:
    deadline = time.monotonic() + args.timeout_s
    phone = Phone(args, sink)
    try:
        phone.start()
        while phone.exit_code is None and not _Stop.requested:
            now = time.monotonic()
            if now >= deadline:
                sink.emit("timeout", after_s=args.timeout_s)
                phone.exit_code = EXIT_TIMEOUT
                break
            phone.ep.libHandleEvents(_POLL_MS)
            phone.tick(now)
        phone.hangup()
        return EXIT_OK if phone.exit_code is None else phone.exit_code
    except pj.Error as exc:
        sink.emit("error", error=str(exc.info()))
        return EXIT_INTERNAL
    finally:
        phone.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.register_only and not args.registrar:
        raise SystemExit("--register-only needs --registrar")
    sink = EventSink(_events_stream())
    _install_signal_handlers(args.timeout_s)
    code = run(args, sink)
    sink.emit("done", exit_code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())
