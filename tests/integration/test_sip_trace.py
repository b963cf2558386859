"""The live-switchable SIP message trace (issue 13 item 8) on the real daemon: off by default,
switched on and off again by SIGHUP, one masked ``sip.trace`` line per message in and out."""

from __future__ import annotations

import signal
from typing import Any

from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess, to_toml
from tests.rawsip import UdpPeer, request

RESPONSE = "6629fae49393a05397450978507c4ef1"
AUTH = (f'Authorization: Digest username="alice", realm="gw", nonce="n0nce42", '
        f'uri="sip:gw@127.0.0.1", response="{RESPONSE}"')
NO_ASR: dict[str, Any] = {"triton": {"asr_enabled": False, "required_for_ready": False},
                          "tts": {"enabled": False}}


def _options(gw: GatewayProcess, peer: UdpPeer, call_id: str) -> None:
    peer.send(request("OPTIONS", gw.sip_port, local_port=peer.port, call_id=call_id,
                      headers=AUTH), gw.sip_port)
    assert peer.replies()[-1].status == 200


def _traces(gw: GatewayProcess, call_id: str) -> list[dict[str, Any]]:
    return [x for x in gw.events("sip.trace") if f"Call-ID: {call_id}" in x.get("message", "")]


def _reload(gw: GatewayProcess, sip_trace: bool, count: int) -> None:
    cfg = {**gw.config, "logging": {**gw.config["logging"], "sip_trace": sip_trace}}
    gw.config_path.write_text(to_toml(cfg))
    gw.signal(signal.SIGHUP)
    reloaded = gw.wait_log("config.reloaded",
                           where=lambda x: len(gw.events("config.reloaded")) >= count)
    assert "logging.sip_trace" in reloaded["changed"]


def test_sip_trace_switches_live_and_masks_credentials(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(NO_ASR)
    peer = UdpPeer()
    try:
        _options(gw, peer, "trace-off-1")
        _reload(gw, True, 1)
        _options(gw, peer, "trace-on-1")
        _reload(gw, False, 2)
        _options(gw, peer, "trace-off-2")
    finally:
        peer.close()
    assert gw.stop() == 0
    assert _traces(gw, "trace-off-1") == [] and _traces(gw, "trace-off-2") == []
    lines = _traces(gw, "trace-on-1")
    assert [x["direction"] for x in lines] == ["in", "out"]
    inbound, outbound = lines
    assert inbound["transport"] == "udp" and inbound["level"] == "info"
    assert inbound["remote"] == f"127.0.0.1:{peer.port}"
    assert inbound["local"] == f"127.0.0.1:{gw.sip_port}"
    assert inbound["first_line"].startswith("OPTIONS sip:gw@127.0.0.1")
    assert outbound["first_line"] == "SIP/2.0 200 OK"
    assert outbound["remote"] == inbound["remote"] and outbound["local"] == inbound["local"]
    assert 'username="alice"' in inbound["message"]
    assert RESPONSE not in inbound["message"] and "n0nce42" not in inbound["message"]
    assert all(RESPONSE not in line for line in gw.raw)
