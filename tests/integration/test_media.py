"""The media plane end to end: real UDP RTP into the running daemon, checked through its
recording, its call.ended statistics and its events."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess
from tests.media_tools import (
    FRAME,
    RATE,
    best_lag,
    dtmf_packets,
    g711_roundtrip,
    packets,
    read_wav,
    reorder_pairs,
    send_paced,
    speech_8k,
    window_correlations,
)
from tests.rawsip import UdpPeer, request, response_to, sdp_offer

pytestmark = pytest.mark.slow


class Caller:
    """A SIP caller (raw UDP) with its own RTP socket."""

    def __init__(self, gw: GatewayProcess, codec: str = "PCMU", headers: str = "") -> None:
        self.gw = gw
        self.sip = UdpPeer()
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.call_id = f"media-{time.monotonic_ns()}"
        codecs = "0 101" if codec == "PCMU" else "8 101"
        offer = sdp_offer(self.rtp.getsockname()[1], codecs)
        self.sip.send(request("INVITE", gw.sip_port, local_port=self.sip.port,
                              call_id=self.call_id, body=offer,
                              headers="Content-Type: application/sdp\r\n" + headers),
                      gw.sip_port)
        final = self.sip.replies()[-1]
        assert final.status == 200, final.raw
        self.to_tag = (final.header("To") or "").split("tag=")[1]
        self.gw_rtp = ("127.0.0.1", int(re.search(rb"m=audio (\d+)", final.body).group(1)))
        self.sip.send(request("ACK", gw.sip_port, local_port=self.sip.port,
                              call_id=self.call_id, to_tag=self.to_tag), gw.sip_port)

    def bye(self) -> None:
        self.sip.send(request("BYE", self.gw.sip_port, local_port=self.sip.port,
                              call_id=self.call_id, to_tag=self.to_tag, cseq=2),
                      self.gw.sip_port)
        assert self.sip.replies()[-1].status == 200

    def ended(self, timeout_s: float = 15) -> dict[str, Any]:
        return self.gw.wait_log("call.ended", timeout_s,
                                lambda e: e.get("sip_call_id") == self.call_id)


def _recording_gateway(factory: GatewayFactory, **extra: Any) -> GatewayProcess:
    cfg: dict[str, Any] = {"storage": {"record": True}, "triton": {"asr_enabled": False}}
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return factory(cfg)


def _channel(path: Path, index: int) -> np.ndarray[Any, Any]:
    rate, channels, frames = read_wav(path)
    assert rate == RATE and channels == 2
    return frames[:, index]


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_decoded_audio_matches_the_source(gateway_factory: GatewayFactory, codec: str) -> None:
    gw = _recording_gateway(gateway_factory)
    source = speech_8k()
    caller = Caller(gw, codec, headers="X-Leg: customer")
    send_paced(caller.rtp, packets(source, codec), caller.gw_rtp)
    time.sleep(0.3)
    caller.bye()
    ended = caller.ended()
    leg = ended["legs"][0]
    assert leg["codec"] == codec and leg["received"] == len(source) // FRAME
    assert leg["lost"] == 0 and leg["jitter_buffer"]["lost"] == 0
    recorded = _channel(Path(ended["recording"]), 1)          # customer = right
    expected = g711_roundtrip(source[: len(source) // FRAME * FRAME], codec)
    lag = best_lag(expected, recorded, RATE)
    scores = window_correlations(expected, recorded[lag:])
    assert len(scores) >= 4 and min(scores) > 0.95, scores
    assert np.abs(_channel(Path(ended["recording"]), 0)).max() == 0    # agent side silent


def test_impairments_are_counted_and_concealed(gateway_factory: GatewayFactory) -> None:
    gw = _recording_gateway(gateway_factory, rtp={"jitter_depth_ms": 60})
    source = speech_8k()
    caller = Caller(gw)
    stream = packets(source, "PCMU")
    dropped = {20, 21, 22, 60, 97}                      # a burst of 3 and two single losses
    impaired = [p for i, p in enumerate(stream) if i not in dropped]
    impaired = reorder_pairs(impaired, [40, 80])        # two swapped pairs (within the depth)
    impaired.insert(110, impaired[109])                 # one duplicate
    impaired.append(b"\x00garbage")                     # and a datagram that is not RTP
    send_paced(caller.rtp, impaired, caller.gw_rtp)
    time.sleep(0.3)
    caller.bye()
    leg = caller.ended()["legs"][0]
    jb = leg["jitter_buffer"]
    assert jb["lost"] == len(dropped)
    assert leg["lost"] == len(dropped) - 1      # RFC 3550 A.3: the duplicate counts as received
    assert jb["concealed_frames"] == len(dropped)
    assert jb["duplicated"] == 1 and jb["reordered"] == 2 and jb["late"] == 0
    assert leg["dropped_malformed"] == 1
    assert leg["concealed_ms"] == len(dropped) * 20


def test_dtmf_events(gateway_factory: GatewayFactory) -> None:
    gw = _recording_gateway(gateway_factory)
    caller = Caller(gw)
    voice = packets(np.zeros(FRAME * 10, dtype=np.int16), "PCMU")
    events = dtmf_packets(4, seq0=1010, ts=5000 + FRAME * 10, ssrc=0x1234) + dtmf_packets(
        11, seq0=1018, ts=5000 + FRAME * 20, ssrc=0x1234)          # '4' then '#'
    send_paced(caller.rtp, voice + events, caller.gw_rtp)
    digits = [gw.wait_log("dtmf", 5)]
    digits.append(gw.wait_log("dtmf", 5, lambda e: e is not digits[0] and e["digit"] == "#"))
    assert [d["digit"] for d in digits] == ["4", "#"]
    assert digits[0]["duration_ms"] == 100 and len(gw.events("dtmf")) == 2
    caller.bye()


def test_rtp_timeout_hangs_up(gateway_factory: GatewayFactory) -> None:
    gw = _recording_gateway(gateway_factory, rtp={"timeout_s": 1.0})
    caller = Caller(gw)
    send_paced(caller.rtp, packets(np.zeros(FRAME * 5, dtype=np.int16), "PCMU"), caller.gw_rtp)
    bye = caller.sip.recv(timeout_s=6)
    assert bye is not None and bye.startswith(b"BYE "), bye
    caller.sip.send(response_to(bye), gw.sip_port)
    ended = caller.ended()
    assert ended["by"] == "local" and "rtp timeout" in ended["reason"]


def test_hold_suspends_the_rtp_timeout(gateway_factory: GatewayFactory) -> None:
    gw = _recording_gateway(gateway_factory, rtp={"timeout_s": 1.0})
    caller = Caller(gw)
    offer = sdp_offer(caller.rtp.getsockname()[1], "0 101", direction="sendonly")
    caller.sip.send(request("INVITE", gw.sip_port, local_port=caller.sip.port,
                            call_id=caller.call_id, to_tag=caller.to_tag, cseq=2, body=offer,
                            headers="Content-Type: application/sdp"), gw.sip_port)
    reply = caller.sip.replies()[-1]
    assert reply.status == 200 and b"a=recvonly" in reply.body
    caller.sip.send(request("ACK", gw.sip_port, local_port=caller.sip.port,
                            call_id=caller.call_id, to_tag=caller.to_tag, cseq=2), gw.sip_port)
    gw.wait_log("call.media_changed")
    assert caller.sip.recv(timeout_s=2.5) is None          # no BYE while held
    caller.sip.send(request("BYE", gw.sip_port, local_port=caller.sip.port,
                            call_id=caller.call_id, to_tag=caller.to_tag, cseq=3), gw.sip_port)
    assert caller.sip.replies()[-1].status == 200
    assert caller.ended()["by"] == "remote"


def test_two_correlated_calls_make_one_stereo_recording(gateway_factory: GatewayFactory) -> None:
    gw = _recording_gateway(gateway_factory, channels={"rules": [
        {"match": "header", "header": "X-Leg", "pattern": "^agent$", "channel": "agent"}]})
    agent_src = speech_8k("Thank you for calling, how can I help you today?")
    customer_src = speech_8k("I would like to check the status of my order please.")
    agent = Caller(gw, headers="X-Leg: agent\r\nX-Conversation-Id: conv-77")
    customer = Caller(gw, headers="X-Leg: customer\r\nX-Conversation-Id: conv-77")
    both = [x for pair in zip(packets(agent_src, "PCMU", ssrc=1),
                              packets(customer_src, "PCMU", ssrc=2), strict=False) for x in pair]
    start = time.monotonic()
    for i, data in enumerate(both):          # interleaved: one packet per leg every 20 ms
        delay = start + (i // 2) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        agent.rtp.sendto(data, agent.gw_rtp) if i % 2 == 0 else customer.rtp.sendto(
            data, customer.gw_rtp)
    time.sleep(0.3)
    agent.bye()
    customer.bye()
    first, second = agent.ended(), customer.ended()
    assert first["conversation_id"] == second["conversation_id"]
    assert first["channels"] == ["agent"] and second["channels"] == ["customer"]
    path = Path(second["recording"] or first["recording"])
    for index, src in ((0, agent_src), (1, customer_src)):
        expected = g711_roundtrip(src[: len(src) // FRAME * FRAME], "PCMU")
        recorded = _channel(path, index)
        lag = best_lag(expected, recorded, RATE)
        scores = window_correlations(expected, recorded[lag:])
        assert len(scores) >= 4 and min(scores) > 0.95, (index, scores)


def test_rtcp_receiver_reports_reach_the_sender(gateway_factory: GatewayFactory) -> None:
    from aiortc.rtp import RtcpPacket, RtcpRrPacket

    gw = _recording_gateway(gateway_factory)
    caller = Caller(gw)
    rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp.bind(("127.0.0.1", caller.rtp.getsockname()[1] + 1))
    rtcp.settimeout(8)
    stream = packets(np.zeros(FRAME * 300, dtype=np.int16), "PCMU", ssrc=0xABCD)
    dropped = set(range(50, 60))                        # 10 of the first 100 packets lost
    sender = threading.Thread(target=send_paced, args=(
        caller.rtp, [p for i, p in enumerate(stream) if i not in dropped], caller.gw_rtp))
    sender.start()
    data, _addr = rtcp.recvfrom(2048)                   # first report after about 2.5 s
    sender.join(10)
    reports = [p for p in RtcpPacket.parse(data) if isinstance(p, RtcpRrPacket)]
    assert reports, data
    block = reports[0].reports[0]
    assert block.ssrc == 0xABCD and block.packets_lost == len(dropped)
    assert block.highest_sequence >= 1000 + 60
    caller.bye()


def test_rtp_port_exhaustion_is_a_503_not_a_crash(gateway_factory: GatewayFactory) -> None:
    base = 39990
    gw = _recording_gateway(gateway_factory, rtp={"port_min": base, "port_max": base + 2})
    first = Caller(gw)                                    # takes the only RTP port pair
    second = UdpPeer()
    second.send(request("INVITE", gw.sip_port, local_port=second.port, call_id="no-port",
                        headers="Content-Type: application/sdp", body=sdp_offer(second.port)),
                gw.sip_port)
    final = second.replies()[-1]
    assert final.status == 503 and "RTP port" in final.reason, final.raw
    first.bye()
    first.ended()
    third = Caller(gw)                                    # the port came back
    assert third.gw_rtp[1] == base
    third.bye()
