"""The calling side of ``asr-gateway probe``: a pjsua2 phone run as a SUBPROCESS.

pjsua2 (PyPI ``pjsua2-python``, the ``probe`` extra) aborts the process when a Python
thread it does not know touches it, so the probe never imports this module: it runs
``python -m gateway.probe_phone`` and talks to it over pipes.

- stdout: one JSON object per line (``{"event": "calling", "sip_call_id": ...}``);
  pjsua's own log goes to stderr.
- stdin: ``hangup`` (one line) ends the call; end of input does the same.

Events: ``started``, ``registered`` / ``reg_failed``, ``calling`` (with the SIP
Call-ID), ``call_state``, ``media_active``, ``play_started`` / ``play_done`` (the
audio's first and last frame handed to the call), ``record_started`` (with
``--record``: what the phone hears goes to that WAV, finished when the call ends),
``call_disconnected`` (final SIP status, reason, who hung up, whether it was
answered), ``error``, ``done``.
Exit status: 0 answered call, 2 call failed, 3 registration failed, 4 time limit,
5 internal error.

All SIP work runs on the main thread (``threadCnt = 0``, ``libHandleEvents``
polling); no Python callback is installed on pjmedia's clock thread (the end of the
audio is known from its length), so no Python code runs on a thread pjsua2 does not
know. The endpoint, transports, media ports and shutdown order are
:mod:`gateway.pjsua_agent`'s, shared with the bench's reference receiver.

Layer: shell.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
import wave
from collections.abc import Sequence
from typing import Any

from gateway.pjsua_agent import (
    POLL_MS,
    Agent,
    Events,
    StopFlag,
    ep_config,
    events_stream,
    guarded,
    pj,
    start_player,
    start_recorder,
)

EXIT_OK = 0
EXIT_CALL_FAILED = 2
EXIT_REG_FAILED = 3
EXIT_TIMEOUT = 4
EXIT_INTERNAL = 5
_STATES = {
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gateway.probe_phone")
    p.add_argument("--call", required=True, metavar="SIP_URI")
    p.add_argument("--play", required=True, metavar="WAV", help="8 kHz mono 16-bit WAV")
    p.add_argument("--record", default=None, metavar="WAV",
                   help="record what the phone hears (8 kHz mono 16-bit WAV)")
    p.add_argument("--registrar", default=None, help="sip:host:port, also the outbound proxy")
    p.add_argument("--user", default="probe")
    p.add_argument("--password-env", default=None, help="variable holding the SIP password")
    p.add_argument("--domain", default=None)
    p.add_argument("--bind", default="0.0.0.0", help="local SIP/RTP address")
    p.add_argument("--header", action="append", default=[], metavar="'Name: value'")
    p.add_argument("--timeout-s", type=float, default=60.0)
    p.add_argument("--log-level", type=int, default=3)
    return p.parse_args(argv)


def wav_seconds(path: str) -> float:
    with wave.open(path) as w:
        return float(w.getnframes() / w.getframerate())


class ProbeAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.owner = phone

    @guarded
    def onRegState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 name
        self.owner.on_reg_state(int(prm.code), str(prm.reason), int(prm.expiration))


class ProbeCall(pj.Call):  # type: ignore[misc]
    def __init__(self, phone: Phone, account: ProbeAccount) -> None:
        super().__init__(account)
        self.owner = phone

    @guarded
    def onCallState(self, prm: Any) -> None:  # noqa: N802
        self.owner.on_call_state(self.getInfo())

    @guarded
    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        self.owner.on_media_state(self, self.getInfo())


def sip_headers(raw: Sequence[str]) -> Any:
    vector = pj.SipHeaderVector()
    for line in raw:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"--header {line!r}: expected 'Name: value'")
        header = pj.SipHeader()
        header.hName, header.hValue = name.strip(), value.strip()
        vector.append(header)
    return vector


class Phone:
    """One endpoint, one account, one outgoing call that plays one WAV file."""

    def __init__(self, args: argparse.Namespace, events: Events) -> None:
        self.args = args
        self.events = events
        self.agent = Agent()
        self.ep = self.agent.ep
        self.account: ProbeAccount | None = None
        self.call: ProbeCall | None = None
        self.player: Any = None
        self.recorder: Any = None
        self.play_s = wav_seconds(args.play)
        self.play_ends_at: float | None = None
        self.registered = not args.registrar
        self.call_started = False
        self.answered = False
        self.hangup_sent = False
        self.exit_code: int | None = None

    def start(self) -> bool:
        """Start the library and the account; False (reported) when a URI is invalid."""
        self.agent.start(ep_config(max_calls=2, log_level=self.args.log_level,
                                   user_agent="asr-gateway-probe"))
        for uri in (self.args.call, self.args.registrar):
            if uri and not self.agent.valid_uri(uri):
                self.events.emit("call_disconnected", code=0, reason=f"invalid SIP URI {uri!r}",
                                 answered=False, by="local")
                self.exit_code = EXIT_CALL_FAILED
                return False
        udp = self.agent.open(("udp", "tcp"), bind=self.args.bind)
        self.account = ProbeAccount(self)
        self.agent.add_account(self.account, self._account_config())
        self.events.emit("started", sip_address=self.agent.local_name(udp))
        return True

    def _account_config(self) -> Any:
        a = self.args
        acfg = pj.AccountConfig()
        if a.bind != "0.0.0.0":
            acfg.mediaConfig.transportConfig.boundAddress = a.bind
        domain = a.domain or _host_of(a.registrar or a.call)
        acfg.idUri = f"sip:{a.user}@{domain}"
        if a.registrar:
            acfg.regConfig.registrarUri = a.registrar
            acfg.regConfig.retryIntervalSec = 0
            acfg.sipConfig.proxies.append(f"{a.registrar};lr")
        else:
            acfg.regConfig.registerOnAdd = False
        if a.password_env:
            password = os.environ.get(a.password_env, "")
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", a.user, 0, password))
        return acfg

    # ------------------------------------------------------------ callbacks
    def fail(self, why: str, code: int = EXIT_INTERNAL) -> None:
        self.events.emit("error", error=why)
        if self.exit_code is None:
            self.exit_code = code

    def on_reg_state(self, code: int, reason: str, expiration: int) -> None:
        if 200 <= code < 300 and expiration > 0:
            if not self.registered:
                self.events.emit("registered", code=code, expires_s=expiration)
            self.registered = True
        elif not 200 <= code < 300 and not self.call_started:
            self.events.emit("reg_failed", code=code, reason=reason)
            self.exit_code = EXIT_REG_FAILED

    def on_call_state(self, info: Any) -> None:
        state = _STATES.get(info.state)
        if state is None:
            return
        self.events.emit("call_state", state=state, code=int(info.lastStatusCode),
                         reason=str(info.lastReason))
        if state == "CONFIRMED":
            self.answered = True
        if state == "DISCONNECTED":
            self.events.emit("call_disconnected", code=int(info.lastStatusCode),
                             reason=str(info.lastReason), answered=self.answered,
                             by="local" if self.hangup_sent else "remote")
            self.player = None
            self.recorder = None          # dropping it finalises the WAV header
            self.exit_code = EXIT_OK if self.answered else EXIT_CALL_FAILED

    def on_media_state(self, call: ProbeCall, info: Any) -> None:
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if media.status != pj.PJSUA_CALL_MEDIA_ACTIVE or self.player is not None:
                continue
            stream = call.getStreamInfo(media.index)
            self.events.emit("media_active", codec=str(stream.codecName),
                             remote_rtp=str(stream.remoteRtpAddress))
            if self.args.record and self.recorder is None:
                self.recorder = start_recorder(self.args.record,
                                               call.getAudioMedia(media.index))
                self.events.emit("record_started", path=self.args.record)
            self.player = start_player(self.args.play, call.getAudioMedia(media.index))
            self.play_ends_at = time.monotonic() + self.play_s
            self.events.emit("play_started", audio_s=round(self.play_s, 3))

    # ------------------------------------------------------------ main loop
    def tick(self, now: float) -> None:
        if self.registered and not self.call_started:
            self._make_call()
        if self.play_ends_at is not None and now >= self.play_ends_at:
            self.play_ends_at = None
            self.events.emit("play_done")

    def _make_call(self) -> None:
        self.call_started = True
        assert self.account is not None
        self.call = ProbeCall(self, self.account)
        prm = pj.CallOpParam(True)
        prm.txOption.headers = sip_headers(self.args.header)
        try:
            self.call.makeCall(self.args.call, prm)
        except pj.Error as exc:
            self.events.emit("call_disconnected", code=0, reason=str(exc.info()).strip(),
                             answered=False, by="local")
            self.exit_code = EXIT_CALL_FAILED
            return
        self.events.emit("calling", uri=self.args.call,
                         sip_call_id=str(self.call.getInfo().callIdString))

    def hangup(self) -> None:
        if self.call is None or self.hangup_sent or self.exit_code is not None:
            return
        self.hangup_sent = True
        self.events.emit("hangup")
        prm = pj.CallOpParam()
        try:
            self.call.hangup(prm)
        except pj.Error as exc:
            self.events.emit("error", error=f"hangup: {str(exc.info()).strip()}")

    def shutdown(self) -> None:
        """Hang up, pump, drop references, account, library (FINDINGS order)."""
        self.agent.shutdown(self._drop_refs)
        self.account = None

    def _drop_refs(self) -> None:
        self.player = None
        self.recorder = None
        self.call = None


def _host_of(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    host = rest.rsplit("@", 1)[-1].split(";", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _Control:
    """Commands from the probe on stdin (read without blocking the SIP loop)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._open = True

    def hangup_requested(self) -> bool:
        if not self._open:
            return True
        while select.select([sys.stdin], [], [], 0)[0]:
            chunk = os.read(sys.stdin.fileno(), 4096)
            if not chunk:
                self._open = False
                return True
            self._buffer += chunk
        return b"hangup" in self._buffer or StopFlag.requested


def run(args: argparse.Namespace, events: Events) -> int:
    deadline = time.monotonic() + args.timeout_s
    phone = Phone(args, events)
    control = _Control()
    try:
        if not phone.start():
            return EXIT_CALL_FAILED
        while phone.exit_code is None:
            now = time.monotonic()
            if now >= deadline:
                events.emit("timeout", after_s=args.timeout_s)
                phone.hangup()
                phone.exit_code = EXIT_TIMEOUT
                break
            phone.agent.pump(POLL_MS)
            phone.tick(now)
            if control.hangup_requested():
                phone.hangup()
        return phone.exit_code
    except pj.Error as exc:
        events.emit("error", error=str(exc.info()).strip())
        return EXIT_INTERNAL
    finally:
        phone.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    events = Events(events_stream())
    StopFlag.install(args.timeout_s)
    code = run(args, events)
    events.emit("done", exit_code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())
