"""The gateway against real SIP peers: Kamailio (registrar/proxy), pjsua2 and sipp."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess
from tests.integration.conftest import TEST_USERS, require_binary
from tests.media_tools import (
    FRAME,
    RATE,
    best_lag,
    g711_decode,
    read_wav,
    window_correlations,
)
from tests.media_tools import encode as g711_encode
from tests.peers.audio_match import assert_follows
from tests.peers.kamailio import Kamailio
from tests.peers.ports import LOOPBACK, free_udp_port
from tests.peers.sipp import SCENARIO_DIR, SippBackground, SippResult, run_sipp
from tests.peers.softphone import PhoneOptions, Softphone, read_wav_pcm16
from tests.rawsip import UdpPeer, request, sdp_offer

pytestmark = pytest.mark.slow
PASSWORDS = {u.user: u.password for u in TEST_USERS}
SIPP_RATE = 50.0
NO_ASR: dict[str, Any] = {"triton": {"asr_enabled": False, "required_for_ready": False},
                          "tts": {"enabled": False}}


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_binary("sipp")
    require_binary("kamailio")


def _account(kamailio: Kamailio, password: str) -> dict[str, Any]:
    return {"sip": {"accounts": [{
        "name": "kam", "user": "gateway", "domain": LOOPBACK, "password": password,
        "registrars": [kamailio.uri], "expires_s": 60}]}}


def _with(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = {**out.get(key, {}), **value}
    return out


def _sipp(gw: GatewayProcess, scenario: str, media: Path | None = None, **kw: Any) -> SippResult:
    return run_sipp(SCENARIO_DIR / scenario, f"{LOOPBACK}:{gw.sip_port}",
                    local_port=free_udp_port(), rate=kw.pop("rate", SIPP_RATE),
                    timeout_s=kw.pop("timeout_s", 30), media_file=media, **kw)


# ---------------------------------------------------------- registration + calls via Kamailio

def test_registers_and_answers_a_softphone_through_kamailio(
        kamailio: Kamailio, gateway_factory: GatewayFactory, speech_wav: Path,
        tmp_path: Path) -> None:
    gw = gateway_factory(_with(NO_ASR, _account(kamailio, PASSWORDS["gateway"]),
                               {"storage": {"record": True}}))
    registered = gw.wait_log("sip.registered", 15)
    assert registered["account"] == "kam" and registered["code"] == 200
    status, body = gw.http("/readyz")
    assert status == 200 and json.loads(body)["checks"]["registrations"] == {"kam": True}
    phone = Softphone(PhoneOptions(registrar=kamailio.uri, user="alice",
                                   password=PASSWORDS["alice"], call=kamailio.aor("gateway"),
                                   play=speech_wav, duration_s=6.0, timeout_s=30),
                      workdir=tmp_path / "alice")
    with phone:
        phone.wait_for("call_state", 15, state="CONFIRMED")
        answered = gw.wait_log("call.answered", 10)
        phone.wait_for("call_disconnected", 20)
    ended = gw.wait_log("call.ended", 15)
    assert ended["call_id"] == answered["call_id"] and ended["by"] == "remote"
    leg = ended["legs"][0]
    assert leg["received"] > 200 and leg["lost"] == 0, leg
    _rate, played = read_wav_pcm16(speech_wav)
    recording = read_wav(Path(ended["recording"]))[2][:, 1]
    assert_follows(played, recording, phone.report())
    expected = g711_decode(g711_encode(played, "PCMU"), "PCMU")
    lag = best_lag(expected, recording, RATE)
    scores = window_correlations(expected, recording[lag:])
    assert len(scores) >= 4 and min(scores) > 0.95, scores


def test_wrong_password_is_a_clear_failure_not_a_loop(
        kamailio: Kamailio, gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(_with(NO_ASR, _account(kamailio, "not-the-password")))
    failed = gw.wait_log("sip.failed", 15)
    assert "authentication rejected" in failed["reason"] and failed["code"] in (401, 403)
    time.sleep(4)
    attempts = [x for x in gw.lines if x.get("event") in ("sip.failed", "sip.registered")]
    assert len(attempts) == 1, attempts              # no retry storm
    status, body = gw.http("/readyz")
    assert status == 503 and json.loads(body)["checks"]["registrations"] == {"kam": False}
    assert "not-the-password" not in "".join(gw.raw)


def test_gateway_hangs_up_through_kamailio_and_unregisters_on_shutdown(
        kamailio: Kamailio, gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    gw = gateway_factory(_with(NO_ASR, _account(kamailio, PASSWORDS["gateway"]),
                               {"http": {"token": "t0ken"}}))
    gw.wait_log("sip.registered", 15)
    phone = Softphone(PhoneOptions(registrar=kamailio.uri, user="bob",
                                   password=PASSWORDS["bob"], call=kamailio.aor("gateway"),
                                   duration_s=0, timeout_s=30), workdir=tmp_path / "bob")
    with phone:
        phone.wait_for("call_state", 15, state="CONFIRMED")
        call_id = gw.wait_log("call.answered", 10)["call_id"]
        status, _ = gw.http(f"/v1/calls/{call_id}/hangup", method="POST", token="t0ken")
        assert status == 202
        gone = phone.wait_for("call_disconnected", 10)
        assert gone["by"] == "remote"
    assert gw.wait_log("call.ended", 10)["by"] == "local"
    gw.signal(signal.SIGTERM)
    assert gw.wait(20) == 0
    gw.wait_log("sip.unregistered", 1)
    late = Softphone(PhoneOptions(registrar=kamailio.uri, user="alice",
                                  password=PASSWORDS["alice"], call=kamailio.aor("gateway"),
                                  timeout_s=15), workdir=tmp_path / "late")
    with late:
        refused = late.wait_for("call_disconnected", 10)
    assert refused["code"] in (404, 480), refused      # the binding is gone from Kamailio


# ------------------------------------------------------------------ sipp scenarios

@pytest.mark.parametrize(("scenario", "codec"), [("uac_basic.xml", "PCMU"),
                                                 ("uac_basic_pcma.xml", "PCMA")])
def test_sipp_basic_call_with_media(gateway_factory: GatewayFactory, ulaw_media: Path,
                                    alaw_media: Path, scenario: str, codec: str) -> None:
    gw = gateway_factory(_with(NO_ASR, {"storage": {"record": True}}))
    media = ulaw_media if codec == "PCMU" else alaw_media
    result = _sipp(gw, scenario, media, extra=["-d", "3000"])
    assert result.ok and result.successful_calls == 1, result.describe()
    ended = gw.wait_log("call.ended", 10)
    leg = ended["legs"][0]
    assert leg["codec"] == codec and leg["received"] > 100 and leg["lost"] == 0, leg
    source = g711_decode(media.read_bytes(), codec)[: leg["received"] * FRAME]
    recorded = read_wav(Path(ended["recording"]))[2][:, 1]
    lag = best_lag(source, recorded, RATE)
    scores = window_correlations(source, recorded[lag:])
    assert len(scores) >= 3 and min(scores) > 0.95, scores


def test_sipp_cancel_gets_487(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(_with(NO_ASR, {"sip": {"answer_delay_ms": 3000}}))
    result = _sipp(gw, "uac_cancel.xml")
    assert result.ok, result.describe()
    ended = gw.wait_log("call.ended", 10)
    assert ended["reason"] == "cancelled" and ended["answered"] is False


def test_sipp_hold_and_resume(gateway_factory: GatewayFactory, ulaw_media: Path) -> None:
    gw = gateway_factory(NO_ASR)
    result = _sipp(gw, "uac_hold.xml", ulaw_media)
    assert result.ok, result.describe()
    states = [e["state"] for e in gw.events("call.media_changed")]
    assert states == ["held", "confirmed"], states


def test_sipp_unknown_codec_gets_488(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(NO_ASR)
    result = _sipp(gw, "uac_488.xml")
    assert result.ok, result.describe()
    assert gw.wait_log("call.rejected", 5)["status"] == 488


def test_sipp_options_200_then_503_at_capacity(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(_with(NO_ASR, {"sip": {"max_calls": 1}}))
    assert _sipp(gw, "uac_options.xml").ok
    holder = UdpPeer()
    holder.send(request("INVITE", gw.sip_port, local_port=holder.port, call_id="holder",
                        headers="Content-Type: application/sdp", body=sdp_offer(holder.port)),
                gw.sip_port)
    assert holder.replies()[-1].status == 200
    result = _sipp(gw, "uac_options_503.xml")
    assert result.ok, result.describe()


def test_sipp_twenty_concurrent_calls(gateway_factory: GatewayFactory,
                                      ulaw_media: Path) -> None:
    gw = gateway_factory(_with(NO_ASR, {"sip": {"invite_rate_per_s": 100.0}}))
    result = _sipp(gw, "uac_basic.xml", ulaw_media, calls=20, concurrent=20, rate=20,
                   extra=["-d", "4000"], timeout_s=60)
    assert result.ok and result.successful_calls == 20, result.describe()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(gw.events("call.ended")) < 20:
        time.sleep(0.2)
    ended = gw.events("call.ended")
    assert len(ended) == 20 and all(e["legs"][0]["received"] > 100 for e in ended)
    assert len({e["call_id"] for e in ended}) == 20


def test_sipp_retransmissions_are_absorbed(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(NO_ASR)
    result = _sipp(gw, "uac_retrans.xml")
    assert result.ok, result.describe()
    time.sleep(0.5)
    assert len(gw.events("call.offered")) == 1 and len(gw.events("call.ended")) == 1


def test_sipp_gets_the_gateways_bye(gateway_factory: GatewayFactory, ulaw_media: Path) -> None:
    gw = gateway_factory(_with(NO_ASR, {"http": {"token": "t0ken"}}))
    sipp = SippBackground(SCENARIO_DIR / "uac_wait_bye.xml", f"{LOOPBACK}:{gw.sip_port}",
                          local_port=free_udp_port(), timeout_s=20, media_file=ulaw_media)
    with sipp:
        call_id = gw.wait_log("call.answered", 10)["call_id"]
        time.sleep(1.0)
        assert gw.http(f"/v1/calls/{call_id}/hangup", method="POST", token="t0ken")[0] == 202
        result = sipp.wait()
    assert result.ok, result.describe()
    ended = gw.wait_log("call.ended", 5)
    assert ended["reason"] == "api" and ended["by"] == "local"
    assert ended["legs"][0]["received"] > 30


def test_sipp_call_over_tcp(gateway_factory: GatewayFactory, ulaw_media: Path) -> None:
    gw = gateway_factory(NO_ASR)
    result = _sipp(gw, "uac_basic.xml", ulaw_media, extra=["-t", "t1", "-d", "2000"])
    assert result.ok and result.successful_calls == 1, result.describe()
    offered = gw.wait_log("call.offered", 5)
    assert offered["transport"] == "tcp"
    assert gw.wait_log("call.ended", 10)["legs"][0]["received"] > 50


def test_ipv6_call(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(_with(NO_ASR, {"sip": {"bind_address": "::1"},
                                        "rtp": {"bind_address": "::1"}}))
    peer = UdpPeer("::1")
    offer = sdp_offer(peer.port + 2).replace(b"IN IP4 127.0.0.1", b"IN IP6 ::1")
    peer.send(request("INVITE", gw.sip_port, local_port=peer.port, call_id="v6-call",
                      host="[::1]", headers="Content-Type: application/sdp", body=offer),
              gw.sip_port)
    final = peer.replies()[-1]
    assert final.status == 200, final.raw
    assert b"c=IN IP6 ::1" in final.body and "[::1]" in (final.header("Contact") or "")
    assert "received" not in (final.header("Via") or "").split("rport")[0]
    assert gw.wait_log("call.offered", 5)["remote"].startswith("::1:")


def test_sighup_adds_and_removes_an_account(kamailio: Kamailio,
                                            gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(NO_ASR)
    account = (f'\n[[sip.accounts]]\nname = "kam"\nuser = "gateway"\ndomain = "{LOOPBACK}"\n'
               f'password = "{PASSWORDS["gateway"]}"\nregistrars = ["{kamailio.uri}"]\n'
               'expires_s = 60\n')
    original = gw.config_path.read_text()
    gw.config_path.write_text(original + account)
    gw.signal(signal.SIGHUP)
    assert "sip.accounts" in gw.wait_log("config.reloaded", 10)["changed"]
    gw.wait_log("sip.registered", 15)
    gw.config_path.write_text(original)
    gw.signal(signal.SIGHUP)
    gw.wait_log("sip.unregistered", 15)
    assert PASSWORDS["gateway"] not in "".join(gw.raw)
