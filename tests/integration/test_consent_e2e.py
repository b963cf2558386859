"""Consent end to end (issue 19): real calls into the daemon (raw SIP and RTP from this test).

- an ``X-Consent: yes`` INVITE: ``consent.granted`` (source ``header:X-Consent``), the call's
  ``GET /v1/calls/{id}`` shows it, and the store (opened beside the running daemon) says the
  customer channel is exportable;
- no header: no ``consent.*`` event and nothing exportable (the default);
- the keypad question: ``consent.ivr_prompt`` spoken by the real Triton TTS at answer
  (``tts.started``/``tts.finished`` with source ``consent_prompt``), an RFC 4733 ``1`` from
  the caller's RTP grants (source ``ivr_dtmf``); no answer declines after the timeout;
- the control API: a grant during the call, bad bodies, unknown ids;
- withdrawal after the call ended, over HTTP (``consent.withdrawn``) and with
  ``asr-gateway consent withdraw`` while the daemon runs; both survive a restart of the
  daemon on the same state_dir, and nothing of the conversation is exportable any more.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.consent import ConsentStore
from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess
from tests.integration.test_media import Caller
from tests.media_tools import FRAME, dtmf_packets, packets

TOKEN = "consent-e2e-token"
PURPOSE = "asr_training"
PROMPT = "Press one to allow this call to improve our speech recognition, or two to refuse."


def _gateway(factory: GatewayFactory, *, consent: dict[str, Any] | None = None,
             triton_url: str | None = None, state_dir: Path | None = None) -> GatewayProcess:
    cfg: dict[str, Any] = {"http": {"token": TOKEN}, "triton": {"asr_enabled": False},
                           "tts": {"enabled": False}}
    if triton_url is not None:
        cfg["triton"] = {"url": triton_url, "asr_enabled": False}
        cfg["tts"] = {"enabled": True}
    if consent is not None:
        cfg["consent"] = consent
    if state_dir is not None:
        cfg["storage"] = {"state_dir": str(state_dir)}
    return factory(cfg)


def _state_dir(gw: GatewayProcess) -> Path:
    return Path(gw.config["storage"]["state_dir"])


def _answered(gw: GatewayProcess, caller: Caller) -> dict[str, Any]:
    return gw.wait_log("call.answered", 5, lambda e: e["sip_call_id"] == caller.call_id)


def _get(gw: GatewayProcess, path: str) -> tuple[int, dict[str, Any]]:
    status, body = gw.http(path, token=TOKEN)
    return status, json.loads(body)


def _post(gw: GatewayProcess, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, data = gw.http(path, "POST", token=TOKEN, body=raw)
    return status, json.loads(data)


def _silence_packets(seconds: float, ssrc: int = 0xC0) -> list[bytes]:
    return packets(np.zeros(round(seconds * 8000), dtype=np.int16), "PCMU", ssrc=ssrc)


def _send(caller: Caller, items: list[bytes]) -> None:
    start = time.monotonic()
    for i, item in enumerate(items):
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        caller.rtp.sendto(item, caller.gw_rtp)


def _consent_events(gw: GatewayProcess) -> list[dict[str, Any]]:
    return [e for e in gw.lines if str(e.get("event", "")).startswith("consent.")]


def _cli(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "consent", args[0], "--config",
                           str(gw.config_path), *args[1:]], capture_output=True, text=True,
                          timeout=60)


# ------------------------------------------------------------------ header and default

def test_header_grant_is_an_event_in_the_call_view_and_in_the_store(
        gateway_factory: GatewayFactory) -> None:
    gw = _gateway(gateway_factory)
    caller = Caller(gw, headers="X-Consent: yes\r\n")
    answered = _answered(gw, caller)
    call_id, conv = answered["call_id"], answered["conversation_id"]
    granted = gw.wait_log("consent.granted", 5, lambda e: e["call_id"] == call_id)
    assert (granted["channel"], granted["source"], granted["purpose"]) == (
        "customer", "header:X-Consent", PURPOSE)
    assert granted["conversation_id"] == conv and granted["policy_version"] == "1"
    assert granted["evidence"] == "X-Consent: yes"
    status, view = _get(gw, f"/v1/calls/{call_id}")
    assert status == 200
    assert view["consent"]["customer"]["granted"] is True
    assert view["consent"]["customer"]["source"] == "header:X-Consent"
    _send(caller, _silence_packets(0.4))
    caller.bye()
    caller.ended()
    store = ConsentStore.for_state_dir(_state_dir(gw))       # beside the running daemon
    try:
        assert store.exportable_channels(conv, purpose=PURPOSE) == {"customer"}
        (rec,) = store.status(conv)
        assert (rec.call_id, rec.source, rec.granted) == (call_id, "header:X-Consent", True)
    finally:
        store.close()


def test_no_header_no_consent_nothing_exportable(gateway_factory: GatewayFactory) -> None:
    gw = _gateway(gateway_factory)
    caller = Caller(gw, headers="X-Leg: customer\r\n")
    answered = _answered(gw, caller)
    status, view = _get(gw, f"/v1/calls/{answered['call_id']}")
    assert status == 200
    assert view["consent"] == {"customer": {"granted": False, "source": None,
                                            "pending_ivr": False, "withdrawn": False}}
    _send(caller, _silence_packets(0.3))
    caller.bye()
    caller.ended()
    assert _consent_events(gw) == []
    store = ConsentStore.for_state_dir(_state_dir(gw))
    try:
        assert store.exportable_channels(answered["conversation_id"], purpose=PURPOSE) \
            == frozenset()
    finally:
        store.close()
    status, body = _get(gw, f"/v1/conversations/{answered['conversation_id']}/consent")
    assert status == 404 and "unknown conversation" in body["error"]


def test_header_denial_declines(gateway_factory: GatewayFactory) -> None:
    gw = _gateway(gateway_factory)
    caller = Caller(gw, headers="X-Consent: opt-out\r\n")
    call_id = _answered(gw, caller)["call_id"]
    declined = gw.wait_log("consent.declined", 5, lambda e: e["call_id"] == call_id)
    assert declined["source"] == "header:X-Consent"
    caller.bye()
    caller.ended()


# ------------------------------------------------------------------ the keypad question

@pytest.mark.slow
def test_ivr_prompt_is_spoken_and_the_keypad_answer_grants(
        tts_loaded: str, gateway_factory: GatewayFactory) -> None:
    gw = _gateway(gateway_factory, triton_url=tts_loaded,
                  consent={"ivr_prompt": PROMPT, "ivr_timeout_s": 30})
    gw.wait_log("triton.ready", 30)
    caller = Caller(gw)
    call_id = _answered(gw, caller)["call_id"]
    stream = _silence_packets(12.0)
    started = None
    start = time.monotonic()
    for i, item in enumerate(stream):      # silence until the prompt has been played
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        caller.rtp.sendto(item, caller.gw_rtp)
        if started is None:
            started = next((e for e in gw.events("tts.started")
                            if e["call_id"] == call_id), None)
        if started is not None and any(e["reply_id"] == started["reply_id"]
                                       for e in gw.events("tts.finished")):
            break
    assert started is not None, [e for e in gw.lines if "tts" in str(e.get("event"))]
    assert started["source"] == "consent_prompt"
    assert started["text"] == PROMPT and started["barge_in"] is False
    status, view = _get(gw, f"/v1/calls/{call_id}")
    assert view["consent"]["customer"]["pending_ivr"] is True
    k = i + 1
    _send(caller, dtmf_packets(1, seq0=1000 + k, ts=5000 + k * FRAME, ssrc=0xC0))
    granted = gw.wait_log("consent.granted", 5, lambda e: e["call_id"] == call_id)
    assert (granted["channel"], granted["source"]) == ("customer", "ivr_dtmf")
    assert granted["evidence"] == "keypad 1 after the consent prompt"
    status, view = _get(gw, f"/v1/calls/{call_id}")
    assert view["consent"]["customer"]["granted"] is True
    assert view["consent"]["customer"]["pending_ivr"] is False
    caller.bye()
    ended = caller.ended()
    store = ConsentStore.for_state_dir(_state_dir(gw))
    try:
        assert store.exportable_channels(ended["conversation_id"], purpose=PURPOSE) \
            == {"customer"}
    finally:
        store.close()


def test_ivr_without_answer_declines_after_the_timeout(gateway_factory: GatewayFactory) -> None:
    """TTS on but Triton unreachable: the prompt fails (``tts.failed``), the question still
    stands for ``ivr_timeout_s``; a digit other than 1 or 2 is no answer."""
    gw = _gateway(gateway_factory, triton_url="127.0.0.1:9",
                  consent={"ivr_prompt": PROMPT, "ivr_timeout_s": 1.5})
    caller = Caller(gw)
    call_id = _answered(gw, caller)["call_id"]
    _send(caller, _silence_packets(0.2) + dtmf_packets(5, seq0=1010, ts=5000 + 10 * FRAME,
                                                        ssrc=0xC0))
    declined = gw.wait_log("consent.declined", 10, lambda e: e["call_id"] == call_id)
    assert declined["source"] == "ivr_dtmf" and "no keypad answer" in declined["evidence"]
    assert gw.events("consent.granted") == []
    caller.bye()
    caller.ended()


# ------------------------------------------------------------------ control API, withdrawal

def test_api_grant_then_withdraw_over_http_and_cli_survive_a_restart(
        gateway_factory: GatewayFactory) -> None:
    gw = _gateway(gateway_factory)
    caller = Caller(gw)
    answered = _answered(gw, caller)
    call_id, conv = answered["call_id"], answered["conversation_id"]
    path = f"/v1/calls/{call_id}/consent"
    assert _post(gw, path, b"not json") == (400, {"error": "body must be JSON"})
    assert _post(gw, path, {"channels": ["customer"]})[0] == 400      # no "granted"
    status, body = _post(gw, path, {"granted": True, "channels": ["bot"]})
    assert status == 400 and "unknown channel 'bot'" in body["error"]
    status, body = _post(gw, path, {"granted": True, "channels": ["agent"]})
    assert status == 400 and "no agent channel" in body["error"]
    assert _post(gw, "/v1/calls/c-0000000000000000/consent", {"granted": True})[0] == 404
    status, body = _post(gw, path, {"granted": True, "channels": ["customer"]})
    assert status == 200, body
    (rec,) = body["records"]
    assert (rec["channel"], rec["granted"], rec["source"]) == ("customer", True, "api")
    assert gw.wait_log("consent.granted", 5)["source"] == "api"
    _send(caller, _silence_packets(0.3))
    caller.bye()
    caller.ended()

    # after the call: the store answers
    status, view = _get(gw, f"/v1/conversations/{conv}/consent")
    assert status == 200 and view["exportable_channels"] == ["customer"]
    wd = f"/v1/conversations/{conv}/consent/withdraw"
    assert _post(gw, wd, {})[0] == 400
    assert _post(gw, "/v1/conversations/nope/consent/withdraw", {"reason": "x"})[0] == 404
    status, body = _post(gw, wd, {"reason": "the caller asked"})
    assert status == 200 and body["grants_withdrawn"] == 1 and body["channels"] == ["customer"]
    withdrawn = gw.wait_log("consent.withdrawn", 5)
    assert withdrawn["call_id"] is None and withdrawn["conversation_id"] == conv
    assert withdrawn["reason"] == "the caller asked" and withdrawn["grants_withdrawn"] == 1

    # the CLI, with the daemon running: a batch recording granted elsewhere, then withdrawn
    batch = "batch-recording-1"
    assert _cli(gw, "show", batch).returncode == 1
    done = _cli(gw, "grant", batch, "--channel", "customer", "--channel", "agent",
                "--basis", "signed form 2026-11")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["exportable_channels"] == ["agent", "customer"]
    done = _cli(gw, "withdraw", batch, "--reason", "customer e-mail")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["grants_withdrawn"] == 2
    refused = _cli(gw, "grant", batch, "--basis", "again")
    assert refused.returncode == 1 and "withdrawn" in refused.stderr
    status, view = _get(gw, f"/v1/conversations/{batch}/consent")
    assert status == 200 and view["withdrawn"] is True and view["exportable_channels"] == []
    assert gw.stop() == 0

    # a restart on the same state_dir: everything is still there
    again = _gateway(gateway_factory, state_dir=_state_dir(gw))
    for conversation, reason in ((conv, "the caller asked"), (batch, "customer e-mail")):
        status, view = _get(again, f"/v1/conversations/{conversation}/consent")
        assert status == 200 and view["withdrawn"] is True, view
        assert view["exportable_channels"] == []
        assert [w["reason"] for w in view["withdrawals"]] == [reason]
    shown = _cli(again, "show", conv)
    assert shown.returncode == 0 and json.loads(shown.stdout)["records"][0]["source"] == "api"
    store = ConsentStore.for_state_dir(_state_dir(gw))
    try:
        assert store.exportable_channels(conv, purpose=PURPOSE) == frozenset()
        assert store.exportable_channels(batch, purpose=PURPOSE) == frozenset()
    finally:
        store.close()
