"""Issue 13, media plane, end to end: real UDP RTP into the running daemon.

* garbage RTP mixed into a live call (foreign SSRC, oversized, stray old sequence numbers, bad
  versions, unknown payload types, telephone events outside the answered list, another source
  address) leaves its transcript as it is without the garbage, and every packet is counted by
  reason in ``gateway_rtp_dropped_total`` on /metrics;
* a call whose RTP stops after speech (the call stays up) gets its final within 1.5 s, with and
  without an RFC 3389 comfort-noise packet at the start of the silence;
* the RTP timeout is logged once while the gateway's BYE is being retransmitted.

The transcript tests run against the real Triton serving asr_cpu_default.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gateway.triton_launcher import TritonProcess
from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess
from tests.media_tools import (
    FRAME,
    RATE,
    best_lag,
    g711_roundtrip,
    packets,
    read_wav,
    rtp_packet,
    send_paced,
    speech_8k,
    window_correlations,
)
from tests.peers.softphone import PhoneOptions, Softphone
from tests.rawsip import UdpPeer, request, response_to
from tests.speech import piper_wavs, read_pcm, word_error_rate, write_wav

pytestmark = pytest.mark.slow

SENTENCE = "I would like to change the delivery address of my order please."
SSRC = 0x1234
# The mechanism, not the speed: without the clock fill no final comes before hangup (raw RTP)
# or the phone's next keep-alive (5.7 s). Measured here on an idle 2-core machine the final
# comes 1.1-1.4 s after RTP stops (Whisper's 600 ms endpoint + decode); the decode time grows
# with load on a shared CI machine (1.94 s seen with other suites running), so the bound is
# generous and the figure itself is for measuring, not asserting (non-negotiable 4).
FINAL_WITHIN_S = 3.0
PJMEDIA_VAD_HANGOVER_S = 0.4  # pjmedia's silence detector sends 400 ms of silence before it stops


def _offer(rtp_port: int) -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio {rtp_port} RTP/AVP 0 101 13", "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=rtpmap:13 CN/8000",
             "a=ptime:20", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()


class Caller:
    """A raw SIP caller offering PCMU, telephone-event 0-15 and comfort noise."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.gw = gw
        self.sip = UdpPeer()
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.call_id = f"hardening-{time.monotonic_ns()}"
        self.sip.send(request("INVITE", gw.sip_port, local_port=self.sip.port,
                              call_id=self.call_id, body=_offer(self.rtp.getsockname()[1]),
                              headers="Content-Type: application/sdp"), gw.sip_port)
        final = self.sip.replies()[-1]
        assert final.status == 200, (final.raw, [line.get("error") for line in gw.lines
                                                 if line.get("event") == "rtp.ports_exhausted"])
        self.answer = final.body
        self.to_tag = (final.header("To") or "").split("tag=")[1]
        port = re.search(rb"m=audio (\d+)", final.body)
        assert port is not None
        self.gw_rtp = ("127.0.0.1", int(port.group(1)))
        self.sip.send(request("ACK", gw.sip_port, local_port=self.sip.port,
                              call_id=self.call_id, to_tag=self.to_tag), gw.sip_port)

    def bye(self) -> None:
        self.sip.send(request("BYE", self.gw.sip_port, local_port=self.sip.port,
                              call_id=self.call_id, to_tag=self.to_tag, cseq=2),
                      self.gw.sip_port)
        assert self.sip.replies()[-1].status == 200

    def ended(self, timeout_s: float = 30) -> dict[str, Any]:
        return self.gw.wait_log("call.ended", timeout_s,
                                lambda e: e.get("sip_call_id") == self.call_id)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> npt.NDArray[np.int16]:
    """The sentence, its trailing quiet cut off: the last packet is the end of speech."""
    pcm = read_pcm(piper_wavs([SENTENCE], tmp_path_factory.mktemp("piper"))[0])
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 500)
    return pcm[: int(loud[-1]) + 80]


def _asr_gateway(factory: GatewayFactory, triton: TritonProcess) -> GatewayProcess:
    gw = factory({"triton": {"url": triton.grpc_url, "asr_model": "asr_cpu_default",
                             "buffer_s": 60.0}, "tts": {"enabled": False}})
    gw.wait_log("triton.ready", 30)
    return gw


def _call_id(gw: GatewayProcess, caller: Caller) -> str:
    answered = gw.wait_log("call.answered", 10, lambda e: e.get("sip_call_id") == caller.call_id)
    return str(answered["call_id"])


def _finals(gw: GatewayProcess, call_id: str) -> list[dict[str, Any]]:
    return [e for e in gw.events("transcript.final") if e["call_id"] == call_id]


def _dropped(gw: GatewayProcess) -> dict[str, float]:
    """gateway_rtp_dropped_total by reason, read from /metrics."""
    status, body = gw.http("/metrics")
    assert status == 200
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^gateway_rtp_dropped_total\{reason="(\w+)"\} (\S+)$', body.decode(), re.M)}


# ------------------------------------------------------------------ garbage mixed into a call


def _garbage_between(clean: list[bytes], rng: np.random.Generator
                     ) -> tuple[list[list[bytes]], dict[str, int]]:
    """Per clean packet, the garbage sent right after it (same source), and what it counts as."""
    def noise(n: int) -> bytes:
        return rng.integers(0, 256, n, dtype=np.uint8).tobytes()

    extra: list[list[bytes]] = [[] for _ in clean]
    counts = {"ssrc": 0, "oversized": 0, "sequence": 0, "malformed": 0, "payload_type": 0,
              "dtmf_event": 0}
    for i in range(5, len(clean) - 5, 3):
        seq, ts = 1000 + i, 5000 + i * FRAME
        kind = (i // 3) % 6
        if kind == 0:                                         # another SSRC, right sequence
            data = rtp_packet(seq + 1, ts + FRAME, 0xBAD00000 + i, 0, noise(FRAME))
            counts["ssrc"] += 1
        elif kind == 1:                                       # 65 kB of "PCMU"
            data = rtp_packet(seq + 1, ts + FRAME, SSRC, 0, noise(65000))
            counts["oversized"] += 1
        elif kind == 2:                                       # a stray old sequence number
            data = rtp_packet(seq - 5000 - 17 * i, ts - 999 * FRAME, SSRC, 0, noise(FRAME))
            counts["sequence"] += 1
        elif kind == 3:                                       # RTP version 1
            data = bytes([0x40]) + rtp_packet(seq + 1, ts, SSRC, 0, noise(FRAME))[1:]
            counts["malformed"] += 1
        elif kind == 4:                                       # G.729, never negotiated
            data = rtp_packet(seq + 1, ts + FRAME, SSRC, 18, noise(20))
            counts["payload_type"] += 1
        else:                                                 # event 159 / flash, offered 0-15
            code = 159 if i % 2 else 16
            data = rtp_packet(seq + 1, ts, SSRC, 101, struct.pack("!BBH", code, 0x8A, 800))
            counts["dtmf_event"] += 1
        extra[i].append(data)
    return extra, counts


def _send_with_garbage(caller: Caller, clean: list[bytes], extra: list[list[bytes]],
                       intruder: socket.socket) -> int:
    """Paced like a phone; garbage right after its clean packet; one packet in 10 from another
    address as well. Returns how many came from the other address."""
    start, foreign = time.monotonic(), 0
    for i, data in enumerate(clean):
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        caller.rtp.sendto(data, caller.gw_rtp)
        for junk in extra[i]:
            caller.rtp.sendto(junk, caller.gw_rtp)
        if i % 10 == 5:
            intruder.sendto(data, caller.gw_rtp)
            foreign += 1
    return foreign


def _transcribe(gw: GatewayProcess, stream: list[bytes], extra: list[list[bytes]] | None,
                tail_s: float = 2.0) -> tuple[str, dict[str, Any], int]:
    """One call: speech (+ garbage), 2 s of silence packets, the final, BYE.
    (transcript, call.ended, packets sent from another address)"""
    caller = Caller(gw)
    call_id = _call_id(gw, caller)
    silence = packets(np.zeros(int(8000 * tail_s), dtype=np.int16), "PCMU", seq0=1000 + len(stream),
                      ts0=5000 + len(stream) * FRAME)
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind(("127.0.0.1", 0))
    foreign = 0
    if extra is None:
        send_paced(caller.rtp, stream + silence, caller.gw_rtp)
    else:
        foreign = _send_with_garbage(caller, stream + silence, extra + [[] for _ in silence],
                                     intruder)
    gw.wait_log("transcript.final", 30, lambda e: e["call_id"] == call_id)
    caller.bye()
    ended = caller.ended()
    return " ".join(f["text"] for f in _finals(gw, call_id)), ended, foreign


def test_garbage_rtp_leaves_the_transcript_unchanged_and_is_counted(
        triton: TritonProcess, gateway_factory: GatewayFactory,
        speech: npt.NDArray[np.int16]) -> None:
    gw = _asr_gateway(gateway_factory, triton)
    stream = packets(speech, "PCMU", ssrc=SSRC)
    clean_text, clean_end, _ = _transcribe(gw, stream, None)
    assert word_error_rate(SENTENCE, clean_text) <= 0.25, clean_text
    before = _dropped(gw)
    extra, expected = _garbage_between(stream, np.random.default_rng(13))
    dirty_text, dirty_end, expected["source"] = _transcribe(gw, stream, extra)
    assert dirty_text == clean_text
    leg = dirty_end["legs"][0]
    assert leg["jitter_buffer"]["restarts"] == 0
    # each 65 kB packet decoded would have been 8 s of noise
    assert leg["audio_s"] <= clean_end["legs"][0]["audio_s"] + 2.0
    assert not [e for e in gw.events("dtmf") if e["call_id"] == dirty_end["call_id"]]
    # logging.level is debug in tests: foreign SSRCs that never became the stream log nothing
    assert not [e for e in gw.events("rtp.ssrc_changed")
                if e.get("call_id") == dirty_end["call_id"]]
    after = _dropped(gw)
    grown = {reason: after.get(reason, 0) - before.get(reason, 0) for reason in after}
    assert {r: n for r, n in grown.items() if n} == expected, (grown, expected)
    assert {r: n for r, n in leg["dropped"].items()} == expected


# ------------------------------------------------------------------ RTP stops after speech


@pytest.mark.parametrize("comfort_noise", [False, True], ids=["stops", "cn_then_stops"])
def test_final_comes_soon_after_rtp_stops(triton: TritonProcess,
                                          gateway_factory: GatewayFactory,
                                          speech: npt.NDArray[np.int16],
                                          comfort_noise: bool) -> None:
    """Silence suppression: the phone stops sending after speech and keeps the call up."""
    gw = _asr_gateway(gateway_factory, triton)
    caller = Caller(gw)
    assert b"a=rtpmap:13 CN/8000" in caller.answer and b"a=fmtp:101 0-15" in caller.answer
    call_id = _call_id(gw, caller)
    stream = packets(speech, "PCMU", ssrc=SSRC)
    if comfort_noise:
        stream.append(rtp_packet(1000 + len(stream), 5000 + len(stream) * FRAME, SSRC, 13,
                                 b"\x40"))
    send_paced(caller.rtp, stream, caller.gw_rtp)
    stopped = time.monotonic()
    final = gw.wait_log("transcript.final", 8, lambda e: e["call_id"] == call_id and e["text"])
    waited = time.monotonic() - stopped
    assert waited <= FINAL_WITHIN_S, f"final {waited:.2f} s after RTP stopped"
    assert word_error_rate(SENTENCE, final["text"]) <= 0.25, final["text"]
    assert not gw.events("call.ended"), "the call must still be up"
    caller.bye()
    leg = caller.ended()["legs"][0]
    assert leg["filled_ms"] > 0 and leg["dropped"] == {}


def test_final_comes_soon_after_a_silence_suppressing_phone_goes_quiet(
        triton: TritonProcess, gateway_factory: GatewayFactory,
        speech: npt.NDArray[np.int16], tmp_path: Path) -> None:
    """pjsua with VAD: it stops sending RTP 0.4 s after its file ends (pjmedia's hangover),
    and keeps the call up. Measured from the file's end, so the bound adds that hangover."""
    gw = _asr_gateway(gateway_factory, triton)
    wav = write_wav(tmp_path / "speech.wav", speech)
    up_s = len(speech) / RATE + 10.0
    phone = Softphone(PhoneOptions(call=f"sip:asr@127.0.0.1:{gw.sip_port}", play=wav, vad=True,
                                   duration_s=up_s, timeout_s=up_s + 20), workdir=tmp_path / "p")
    with phone:
        phone.wait_for("play_done", 30)
        quiet = time.monotonic()
        final = gw.wait_log("transcript.final", 8, lambda e: bool(e["text"]))
        waited = time.monotonic() - quiet
        assert not gw.events("call.ended"), "the call must still be up"
        phone.wait_for("call_disconnected", up_s + 10)
    ended = gw.wait_log("call.ended", 30)
    assert waited <= FINAL_WITHIN_S + PJMEDIA_VAD_HANGOVER_S, (
        f"final {waited:.2f} s after the phone's file ended")
    assert word_error_rate(SENTENCE, final["text"]) <= 0.25, final["text"]
    # the phone did stop sending: most of the quiet call was filled by the gateway's clock
    assert ended["legs"][0]["filled_ms"] >= 5000, ended["legs"][0]


# ------------------------------------------------------------------ a real new stream


def test_a_real_ssrc_change_mid_call_restarts_once_and_keeps_its_audio(
        gateway_factory: GatewayFactory) -> None:
    """A PBX transfer / SBC re-anchoring: new SSRC, sequence and timestamp base, same source.
    The jitter buffer restarts once and the recording holds both parts, contiguous."""
    gw = gateway_factory({"storage": {"record": True}, "triton": {"asr_enabled": False}})
    first, second = speech_8k("One two three four five."), speech_8k("Six seven eight nine.")
    first, second = first[: len(first) // FRAME * FRAME], second[: len(second) // FRAME * FRAME]
    caller = Caller(gw)
    stream = packets(first, "PCMU", ssrc=SSRC) + packets(second, "PCMU", ssrc=0xBEEF,
                                                         seq0=40000, ts0=77_777)
    send_paced(caller.rtp, stream, caller.gw_rtp)
    time.sleep(0.3)
    caller.bye()
    ended = caller.ended()
    leg = ended["legs"][0]
    assert leg["jitter_buffer"]["restarts"] == 1 and leg["jitter_buffer"]["lost"] == 0
    assert leg["dropped"] == {} and leg["ssrc"] == 0xBEEF
    rate, _channels, frames = read_wav(Path(ended["recording"]))
    recorded = frames[:, 1]                                   # customer = right
    expected = g711_roundtrip(np.concatenate([first, second]), "PCMU")
    lag = best_lag(expected, recorded, RATE)
    scores = window_correlations(expected, recorded[lag:])
    assert rate == RATE and len(scores) >= 6 and min(scores) > 0.95, scores


# ------------------------------------------------------------------ RTP timeout, logged once


def test_rtp_timeout_is_logged_once_while_the_bye_is_retried(
        gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory({"rtp": {"timeout_s": 1.0}, "triton": {"asr_enabled": False}})
    caller = Caller(gw)
    send_paced(caller.rtp, packets(np.zeros(FRAME * 5, dtype=np.int16), "PCMU"), caller.gw_rtp)
    byes: list[bytes] = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and len(byes) < 3:   # the BYE, then 2 retransmissions
        data = caller.sip.recv(timeout_s=max(0.1, deadline - time.monotonic()))
        if data is not None and data.startswith(b"BYE "):
            byes.append(data)
    assert len(byes) == 3, "the gateway should retransmit its unanswered BYE"
    time.sleep(0.5)
    timeouts = gw.events("rtp.timeout")
    assert len(timeouts) == 1, f"{len(timeouts)} rtp.timeout lines while the BYE was retried"
    caller.sip.send(response_to(byes[-1]), gw.sip_port)
    ended = caller.ended()
    assert ended["by"] == "local" and "rtp timeout" in ended["reason"]
    assert len(gw.events("rtp.timeout")) == 1
