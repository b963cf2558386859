"""SIPREC recording sessions end to end: sipp as the recording client (signalling), the test
streaming both participants' RTP, the gateway mapping streams to agent/customer."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.triton_launcher import TritonProcess
from tests.conftest import GatewayFactory
from tests.integration.conftest import require_binary
from tests.media_tools import (
    FRAME,
    RATE,
    best_lag,
    g711_roundtrip,
    packets,
    read_wav,
    window_correlations,
)
from tests.peers.ports import LOOPBACK, free_udp_port
from tests.peers.sipp import SCENARIO_DIR, SippBackground
from tests.rawsip import UdpPeer, request
from tests.speech import piper_wavs, read_pcm, word_error_rate

pytestmark = pytest.mark.slow
AGENT_RULE = {"match": "siprec_participant", "pattern": r"^1\d{3}$", "channel": "agent"}


def _stream_both(targets: list[tuple[str, int]], sources: list[np.ndarray[Any, Any]]) -> None:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in targets]
    streams = [packets(src, "PCMU", ssrc=100 + i) for i, src in enumerate(sources)]
    start = time.monotonic()
    for i in range(max(len(s) for s in streams)):
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for sock, stream, target in zip(socks, streams, targets, strict=True):
            if i < len(stream):
                sock.sendto(stream[i], target)
    for sock in socks:
        sock.close()


CUSTOMER_TEXT = "I am calling about my last bill, it looks too high."
AGENT_TEXT = "Let me check that for you, one moment please."


def test_siprec_session_maps_participants_and_records_both_streams(
        gateway_factory: GatewayFactory, triton: TritonProcess, tmp_path: Path) -> None:
    require_binary("sipp")
    gw = gateway_factory({"triton": {"url": triton.grpc_url, "asr_model": "asr_cpu_default"},
                          "tts": {"enabled": False}, "storage": {"record": True},
                          "channels": {"rules": [AGENT_RULE]}})
    customer_wav, agent_wav = piper_wavs([CUSTOMER_TEXT, AGENT_TEXT], tmp_path / "piper")
    pause = np.zeros(8000, np.int16)
    customer_src = np.concatenate([read_pcm(customer_wav), pause])
    agent_src = np.concatenate([pause, read_pcm(agent_wav)])
    sipp = SippBackground(SCENARIO_DIR / "siprec_uac.xml", f"{LOOPBACK}:{gw.sip_port}",
                          local_port=free_udp_port(), timeout_s=40,
                          keys={"rtp_a": str(free_udp_port()), "rtp_b": str(free_udp_port())})
    with sipp:
        answered = gw.wait_log("call.answered", 10)
        offered = gw.wait_log("call.offered", 1)
        assert offered["siprec"] is True and offered["channels"] == ["customer", "agent"]
        assert [p["name"] for p in offered["participants"]] == ["Pat Customer", "Alice Agent"]
        ports = answered["ports"]
        sender = threading.Thread(target=_stream_both, args=(
            [(LOOPBACK, ports[0]), (LOOPBACK, ports[1])], [customer_src, agent_src]))
        sender.start()
        sender.join(30)
        updated = gw.wait_log("siprec.metadata_updated", 15)
        result = sipp.wait()
    assert result.ok, result.describe()
    assert [p["name"] for p in updated["participants"]] == ["Pat Customer", "Bob Agent"]
    ended = gw.wait_log("call.ended", 10)
    assert ended["channels"] == ["customer", "agent"] and ended["asr_finals_flushed"]
    finals = [e for e in gw.events("transcript.final") if e["call_id"] == ended["call_id"]]
    said = {ch: " ".join(e["text"] for e in finals if e["channel"] == ch)
            for ch in ("agent", "customer")}
    assert word_error_rate(AGENT_TEXT, said["agent"]) <= 0.2, said
    assert word_error_rate(CUSTOMER_TEXT, said["customer"]) <= 0.2, said
    assert word_error_rate(AGENT_TEXT, said["customer"]) > 0.8, said      # no cross-talk
    agent_finals = [e for e in finals if e["channel"] == "agent"]
    assert agent_finals[0]["participant"]["aor"] in ("sip:1001@pbx.example.com",
                                                     "sip:1002@pbx.example.com")
    path = Path(ended["recording"])
    _rate, _n, frames = read_wav(path)
    for index, src in ((0, agent_src), (1, customer_src)):
        expected = g711_roundtrip(src[: len(src) // FRAME * FRAME], "PCMU")
        lag = best_lag(expected, frames[:, index], RATE)
        scores = window_correlations(expected, frames[lag:, index])
        assert len(scores) >= 3 and min(scores) > 0.95, (index, scores)


@pytest.mark.parametrize(("corpus", "required", "status"), [
    ("billion_laughs.xml", True, 400), ("malformed.xml", True, 400),
    ("billion_laughs.xml", False, 200), ("xxe_external_entity.xml", False, 200)])
def test_hostile_or_broken_metadata(gateway_factory: GatewayFactory, corpus: str,
                                    required: bool, status: int) -> None:
    gw = gateway_factory({"triton": {"asr_enabled": False},
                          "siprec": {"metadata_required": required}})
    xml = (Path(__file__).parents[1] / "siprec_corpus" / corpus).read_bytes()
    peer = UdpPeer()
    sdp = (f"v=0\r\no=SRC 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {peer.port + 2} RTP/AVP 0\r\na=label:1\r\na=sendonly\r\n"
           f"m=audio {peer.port + 4} RTP/AVP 0\r\na=label:2\r\na=sendonly\r\n").encode()
    body = (b"--b1\r\nContent-Type: application/sdp\r\n\r\n" + sdp +
            b"--b1\r\nContent-Type: application/rs-metadata+xml\r\n"
            b"Content-Disposition: recording-session\r\n\r\n" + xml + b"\r\n--b1--\r\n")

    peer.send(request("INVITE", gw.sip_port, local_port=peer.port,
                      headers="Require: siprec\r\nContent-Type: multipart/mixed;boundary=b1",
                      body=body), gw.sip_port)
    final = peer.replies()[-1]
    assert final.status == status, final.raw
    if status == 200:
        assert final.body.count(b"a=recvonly") == 2 and b"sendrecv" not in final.body
        warning = gw.wait_log("siprec.mapping_warning", 5)
        assert "forbidden XML construct" in warning["warning"] or corpus == "malformed.xml"
    else:
        assert "SIPREC metadata" in final.reason
    status_code, _ = gw.http("/healthz")
    assert status_code == 200                     # daemon unaffected


def test_broadworks_recorded_user_on_label_1_is_the_agent(gateway_factory: GatewayFactory) -> None:
    """Issue 13 item 18 through the daemon: the metadata ties the recorded user (the callee of
    a terminating call, the agent) to the stream labelled 1; label conventions said customer.
    The roles and their evidence are in the siprec.roles log line."""
    gw = gateway_factory({"triton": {"asr_enabled": False}})
    xml = (Path(__file__).parents[1] / "siprec_corpus" / "broadworks_terminating.xml").read_bytes()
    peer = UdpPeer()
    sdp = (f"v=0\r\no=BroadWorks 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {peer.port + 2} RTP/AVP 0\r\na=label:1\r\na=sendonly\r\n"
           f"m=audio {peer.port + 4} RTP/AVP 0\r\na=label:2\r\na=sendonly\r\n").encode()
    body = (b"--bw\r\nContent-Type: application/sdp\r\n\r\n" + sdp +
            b"--bw\r\nContent-Type: application/rs-metadata+xml\r\n"
            b"Content-Disposition: recording-session\r\n\r\n" + xml + b"\r\n--bw--\r\n")
    call_id = "bw-terminating-1"
    peer.send(request("INVITE", gw.sip_port, local_port=peer.port, call_id=call_id,
                      headers="Require: siprec\r\nContent-Type: multipart/mixed;boundary=bw",
                      body=body), gw.sip_port)
    final = peer.replies(timeout_s=15.0)[-1]
    assert final.status == 200, "".join(gw.raw[-30:])
    roles = gw.wait_log("siprec.roles", 5)
    assert roles["channels"] == ["agent", "customer"]
    outcomes = {e["source"]: e["outcome"] for e in roles["evidence"]
                if e["outcome"] != "binding"}
    assert outcomes["metadata recorded party"] == "decided", roles["evidence"]
    assert outcomes["label conventions"] == "disagrees"
    assert any(e["outcome"] == "binding" and e["says"].startswith("label 1 is sent by")
               for e in roles["evidence"])
    offered = gw.wait_log("call.offered", 5)
    assert offered["channels"] == ["agent", "customer"]
    assert [p["name"] for p in offered["participants"]] == ["Rita Ortiz", "SAM BROOKS"]
    to_tag = re.search(r"tag=([^;>\s]+)", final.header("To") or "")
    assert to_tag is not None
    for method, cseq in (("ACK", 1), ("BYE", 2)):
        peer.send(request(method, gw.sip_port, local_port=peer.port, call_id=call_id,
                          to_tag=to_tag.group(1), cseq=cseq), gw.sip_port)
    assert peer.replies()[-1].status == 200
    gw.wait_log("call.ended", 10)
