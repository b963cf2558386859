"""Live transcripts end to end: a softphone (or an RTP sender) -> the gateway -> a real Triton
serving the repository's models -> transcript events."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.triton_launcher import TritonProcess
from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess
from tests.media_tools import packets
from tests.peers.softphone import PhoneOptions, Softphone
from tests.rawsip import UdpPeer, request, sdp_offer
from tests.speech import piper_wavs, read_pcm, word_error_rate, write_wav
from tests.triton.fixtures import private_triton

pytestmark = pytest.mark.slow
SENTENCES = [
    "Hello, I would like to check the status of my order please.",
    "My account number is four two seven nine one.",
    "Yes, please send the invoice to my email address.",
]
SILENCE = np.zeros(8000 * 2, dtype=np.int16)


@pytest.fixture(scope="module")
def sentences_8k(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return piper_wavs(SENTENCES, tmp_path_factory.mktemp("piper"))


def _asr_gateway(factory: GatewayFactory, url: str, model: str = "asr_cpu_default",
                 **triton: Any) -> GatewayProcess:
    return factory({"triton": {"url": url, "asr_model": model, "buffer_s": 60.0, **triton},
                    "tts": {"enabled": False}})


def _finals(gw: GatewayProcess, call_id: str) -> list[dict[str, Any]]:
    return [e for e in gw.events("transcript.final") if e["call_id"] == call_id]


def _play_call(gw: GatewayProcess, wav: Path, seconds: float, workdir: Path,
               timeout_s: float) -> dict[str, Any]:
    """A softphone calls the gateway, plays `wav` for `seconds`, hangs up; call.ended."""
    phone = Softphone(PhoneOptions(call=f"sip:asr@127.0.0.1:{gw.sip_port}", play=wav,
                                   duration_s=seconds, timeout_s=timeout_s), workdir=workdir)
    with phone:
        phone.wait_for("call_disconnected", timeout_s)
    return gw.wait_log("call.ended", 30)


def test_softphone_call_gives_live_transcripts(triton: TritonProcess,
                                               gateway_factory: GatewayFactory,
                                               sentences_8k: list[Path], tmp_path: Path) -> None:
    gw = _asr_gateway(gateway_factory, triton.grpc_url)
    gw.wait_log("triton.ready", 20)
    speech = np.concatenate([x for p in sentences_8k for x in (read_pcm(p), SILENCE)])
    wav = write_wav(tmp_path / "call.wav", speech)
    ended = _play_call(gw, wav, len(speech) / 8000 + 0.5, tmp_path / "phone", 60)
    assert ended["asr_finals_flushed"] is True
    finals = _finals(gw, ended["call_id"])
    text = " ".join(f["text"] for f in finals)
    wer = word_error_rate(" ".join(SENTENCES), text)
    assert wer <= 0.10, (wer, text)
    assert all(f["channel"] == "customer" for f in finals)
    words = [w for f in finals for w in f["words"]]
    starts = [w["start_s"] for w in words]
    assert words and starts == sorted(starts)
    assert words[-1]["end_s"] <= len(speech) / 8000 + 1.0
    assert gw.events("transcript.partial"), "no partial transcripts while speaking"


def test_hangup_right_after_the_last_word_keeps_its_transcript(
        triton: TritonProcess, gateway_factory: GatewayFactory, sentences_8k: list[Path],
        tmp_path: Path) -> None:
    gw = _asr_gateway(gateway_factory, triton.grpc_url)
    gw.wait_log("triton.ready", 20)
    speech = read_pcm(sentences_8k[1])
    ended = _play_call(gw, sentences_8k[1], len(speech) / 8000 + 0.1, tmp_path / "phone", 40)
    finals = _finals(gw, ended["call_id"])
    # the final is emitted before call.ended: it is already in the log when call.ended is
    assert finals and gw.lines.index(finals[-1]) < gw.lines.index(ended)
    assert word_error_rate(SENTENCES[1], " ".join(f["text"] for f in finals)) <= 0.2


def test_nemo_model_gets_the_digits(triton: TritonProcess, gateway_factory: GatewayFactory,
                                    sentences_8k: list[Path], tmp_path: Path) -> None:
    """The small NeMo checkpoint through the whole path: every digit, in order, once."""
    gw = _asr_gateway(gateway_factory, triton.grpc_url, model="asr_streaming_nemo")
    gw.wait_log("triton.ready", 20)
    speech = np.concatenate([read_pcm(sentences_8k[1]), SILENCE])
    wav = write_wav(tmp_path / "digits.wav", speech)
    ended = _play_call(gw, wav, len(speech) / 8000 + 0.3, tmp_path / "phone", 40)
    assert ended["asr_finals_flushed"] is True
    text = " ".join(f["text"] for f in _finals(gw, ended["call_id"]))
    assert "four two seven nine one" in text, text


# ------------------------------------------------------------------ Triton outage mid-call

@pytest.fixture
def own_triton(tmp_path: Path) -> Iterator[TritonProcess]:
    """A Triton of this test's own (it gets killed); the session one stays untouched."""
    with private_triton(tmp_path, ["asr_cpu_default"]) as server:
        yield server


def _restart(server: TritonProcess) -> None:
    server.start(180)


def test_triton_killed_mid_call_loses_no_words(own_triton: TritonProcess,
                                               gateway_factory: GatewayFactory,
                                               sentences_8k: list[Path]) -> None:
    gw = _asr_gateway(gateway_factory, own_triton.grpc_url, health_interval_s=0.5)
    gw.wait_log("triton.ready", 20)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    sip = UdpPeer()
    sip.send(request("INVITE", gw.sip_port, local_port=sip.port, call_id="outage",
                     headers="Content-Type: application/sdp",
                     body=sdp_offer(rtp.getsockname()[1], "0")), gw.sip_port)
    final = sip.replies()[-1]
    assert final.status == 200
    to_tag = (final.header("To") or "").split("tag=")[1]
    port = int(final.body.split(b"m=audio ")[1].split(b" ")[0])
    sip.send(request("ACK", gw.sip_port, local_port=sip.port, call_id="outage", to_tag=to_tag),
             gw.sip_port)
    call_id = gw.wait_log("call.answered", 5)["call_id"]
    parts = [np.concatenate([read_pcm(p), SILENCE]) for p in sentences_8k[:2]]
    seq = [0]

    def send(pcm: np.ndarray[Any, Any]) -> None:
        stream = packets(pcm, "PCMU", seq0=1000 + seq[0], ts0=5000 + seq[0] * 160)
        start = time.monotonic()
        for i, data in enumerate(stream):
            delay = start + i * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            rtp.sendto(data, ("127.0.0.1", port))
        seq[0] += len(stream)

    send(parts[0])
    gw.wait_log("transcript.final", 30, lambda e: e["call_id"] == call_id)
    own_triton.stop()                                    # Triton gone mid-call
    gw.wait_log("asr.stream_lost", 10)
    talker = threading.Thread(target=send, args=(parts[1],))   # words spoken during the outage
    talker.start()
    talker.join(30)
    before = len(_finals(gw, call_id))
    restarter = threading.Thread(target=_restart, args=(own_triton,))
    restarter.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(_finals(gw, call_id)) == before:
        send(np.zeros(8000, np.int16))                   # the call stays up meanwhile
    restarter.join(60)
    late = " ".join(e["text"] for e in _finals(gw, call_id)[before:])
    assert word_error_rate(SENTENCES[1], late) <= 0.3, late      # the outage's words
    assert not gw.events("call.ended"), "the call must survive the outage"
    sip.send(request("BYE", gw.sip_port, local_port=sip.port, call_id="outage", to_tag=to_tag,
                     cseq=2), gw.sip_port)
    ended = gw.wait_log("call.ended", 30)
    assert ended["by"] == "remote"
