"""``logging.level = "debug"`` shows the media (issue 13 item 8): stream opened with its codec,
first packet latched, SSRC change, jitter-buffer restart; switched live by SIGHUP."""

from __future__ import annotations

import re
import signal
import socket
from typing import Any

import numpy as np

from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess, to_toml
from tests.media_tools import packets, send_paced
from tests.rawsip import UdpPeer, request, response_to, sdp_offer

NO_ASR: dict[str, Any] = {"triton": {"asr_enabled": False, "required_for_ready": False},
                          "tts": {"enabled": False}, "logging": {"level": "info"}}
DEBUG_EVENTS = ("rtp.stream_opened", "rtp.stream_started", "rtp.ssrc_changed",
                "rtp.jitter_restart")


def _call(gw: GatewayProcess, call_id: str) -> None:
    """A call whose sender changes SSRC halfway (a new stream from the same source)."""
    peer, rtp = UdpPeer(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rtp.bind(("127.0.0.1", 0))
        peer.send(request("INVITE", gw.sip_port, local_port=peer.port, call_id=call_id,
                          headers="Content-Type: application/sdp",
                          body=sdp_offer(rtp.getsockname()[1])), gw.sip_port)
        final = peer.replies(timeout_s=10.0)[-1]
        assert final.status == 200, final.raw
        to_tag = (final.header("To") or "").split("tag=")[1]
        peer.send(request("ACK", gw.sip_port, local_port=peer.port, call_id=call_id,
                          to_tag=to_tag), gw.sip_port)
        match = re.search(rb"m=audio (\d+)", final.body)
        assert match is not None
        t = np.arange(8000 // 2) / 8000
        tone = (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        stream = (packets(tone, "PCMU", ssrc=0x1111, seq0=100, ts0=1000)
                  + packets(tone, "PCMU", ssrc=0x2222, seq0=40000, ts0=900000))
        send_paced(rtp, stream, ("127.0.0.1", int(match.group(1))))
        peer.send(request("BYE", gw.sip_port, local_port=peer.port, call_id=call_id,
                          to_tag=to_tag, cseq=2), gw.sip_port)
        for reply in peer.replies(timeout_s=5.0):
            if not reply.raw.startswith(b"SIP/2.0"):
                peer.send(response_to(reply.raw), gw.sip_port)
        gw.wait_log("call.ended", 10.0, where=lambda x: x.get("sip_call_id") == call_id
                    or call_id in str(x))
    finally:
        peer.close()
        rtp.close()


def _media_debug(gw: GatewayProcess, since: int) -> dict[str, list[dict[str, Any]]]:
    return {e: [x for x in gw.lines[since:] if x.get("event") == e] for e in DEBUG_EVENTS}


def test_media_debug_events_follow_the_live_log_level(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(NO_ASR)
    _call(gw, "at-info")
    quiet = _media_debug(gw, 0)
    assert all(not v for v in quiet.values()), quiet
    gw.config_path.write_text(to_toml({**gw.config, "logging": {"level": "debug",
                                                               "format": "json"}}))
    mark = len(gw.lines)
    gw.signal(signal.SIGHUP)
    gw.wait_log("config.reloaded", where=lambda x: "logging.level" in x.get("changed", []))
    _call(gw, "at-debug")
    seen = _media_debug(gw, mark)
    (opened,) = seen["rtp.stream_opened"]
    assert opened["codec"] == "PCMU" and opened["payload_type"] == 0
    assert opened["ptime_ms"] == 20 and opened["call_id"]
    (started,) = seen["rtp.stream_started"]
    assert started["ssrc"] == 0x1111 and started["source"].startswith("127.0.0.1:")
    (changed,) = seen["rtp.ssrc_changed"]
    assert (changed["previous"], changed["ssrc"]) == (0x1111, 0x2222)
    assert len(seen["rtp.jitter_restart"]) == 1
    assert gw.stop() == 0
