"""``asr-gateway probe`` end to end: the real command, a real gateway, a real Triton.

The probe runs as its own process (it starts a pjsua2 phone subprocess); what it
reports is checked against the gateway's own log (call_id, SIP Call-ID, finals) and
against the text that was spoken (word error rate).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.triton_launcher import TritonProcess
from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess
from tests.integration.conftest import TEST_USERS, require_binary
from tests.peers.kamailio import Kamailio
from tests.peers.ports import free_tcp_port
from tests.speech import piper_wavs, word_error_rate

pytestmark = pytest.mark.slow
TOKEN = "probe-test-token"
TOKEN_ENV = "PROBE_TEST_HTTP_TOKEN"
SENTENCE = "Hello, I would like to check the status of my order please."
# 13 words: the 0.2 WER bound allows two misheard words (Whisper tiny hears the TTS voice's
# "invoice" as "end voice" now and then: two errors, which failed a 9-word sentence)
SAY = "Please send the invoice for my last order to my email address today."
PASSWORDS = {u.user: u.password for u in TEST_USERS}


@pytest.fixture(scope="module")
def piper_22k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SENTENCE from piper at its own 22.05 kHz: the probe must resample it itself."""
    out = tmp_path_factory.mktemp("piper")
    piper_wavs([SENTENCE], out)
    raw = out / "raw-0.wav"          # piper_wavs keeps the voice's original file
    assert raw.exists()
    return raw


def _gateway(factory: GatewayFactory, triton_url: str, **extra: Any) -> GatewayProcess:
    cfg: dict[str, Any] = {
        "triton": {"url": triton_url, "asr_model": "asr_cpu_default", "buffer_s": 60.0},
        "tts": {"enabled": False}, "http": {"token": TOKEN}}
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return factory(cfg)


def _probe(args: Sequence[str], timeout_s: float = 120, prelude: str = "",
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = f"import sys\n{prelude}\nfrom gateway.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = {**os.environ, TOKEN_ENV: TOKEN, **(env or {})}
    return subprocess.run([sys.executable, "-c", code, "probe", *args], env=env, text=True,
                          capture_output=True, timeout=timeout_s)


def _args(gw: GatewayProcess, *extra: str, uri: str | None = None) -> list[str]:
    return [uri or f"sip:asr@127.0.0.1:{gw.sip_port}",
            "--events-url", f"http://127.0.0.1:{gw.http_port}", "--token-env", TOKEN_ENV,
            *extra]


def _why(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def _finals(gw: GatewayProcess, call_id: str) -> list[str]:
    return [e["text"] for e in gw.events("transcript.final") if e["call_id"] == call_id]


# ------------------------------------------------------------------ transcripts come back

def test_wav_probe_reports_the_gateways_call_and_transcript(
        triton: TritonProcess, gateway_factory: GatewayFactory, piper_22k: Path) -> None:
    gw = _gateway(gateway_factory, triton.grpc_url)
    gw.wait_log("triton.ready", 20)
    result = _probe(_args(gw, "--wav", str(piper_22k), "--json", "--timeout-s", "60"))
    assert result.returncode == 0, _why(result)
    report = json.loads(result.stdout)
    ended = gw.wait_log("call.ended", 15)
    assert report["ok"] is True
    assert report["call_id"] == ended["call_id"], _why(result)
    assert report["sip_call_id"] == ended["sip_call_id"], _why(result)
    texts = [f["text"] for f in report["finals"]]
    assert texts == _finals(gw, ended["call_id"]), _why(result)   # nothing lost, nothing made up
    assert all(f["channel"] == "customer" for f in report["finals"])
    assert report["finals"][-1]["rtt_s"] is not None
    assert word_error_rate(SENTENCE, " ".join(texts)) <= 0.2, texts


def test_say_probe_speaks_through_triton_tts(tts_loaded: str, gateway_factory: GatewayFactory
                                             ) -> None:
    gw = _gateway(gateway_factory, tts_loaded)
    gw.wait_log("triton.ready", 20)
    result = _probe(_args(gw, "--say", SAY, "--triton-url", tts_loaded, "--timeout-s", "60",
                          "--header", "X-Leg: customer"))
    assert result.returncode == 0, _why(result)
    ended = gw.wait_log("call.ended", 15)
    offered = gw.wait_log("call.offered", 1, lambda e: e["call_id"] == ended["call_id"])
    assert offered["headers"].get("X-Leg") == "customer", offered
    lines = result.stdout.splitlines()
    assert f"call_id {ended['call_id']} (SIP Call-ID {ended['sip_call_id']})" in lines
    heard = " ".join(line.split("): ", 1)[1] for line in lines if line.startswith("final ["))
    # Piper samples its prosody noise per run (noise inside the ONNX graph, not seedable), so
    # the spoken audio differs each time and Whisper tiny sometimes mishears a word or two
    # ('the invoice' -> 'you and voice', 0.23); 0.35 still fails on anything but this sentence.
    assert word_error_rate(SAY, heard) <= 0.35, _why(result)
    assert lines[-1].startswith("summary: OK"), _why(result)


NOTICE = "This call is recorded for quality purposes."


def test_probe_reports_the_spoken_reply_and_the_audio_it_heard(
        tts_loaded: str, gateway_factory: GatewayFactory, piper_22k: Path) -> None:
    """A call with a spoken reply (the recording notice, which caller speech cannot cut):
    the summary says what the gateway spoke and how much of it the phone heard."""
    gw = _gateway(gateway_factory, tts_loaded, tts={"enabled": True, "recording_notice": NOTICE})
    gw.wait_log("triton.ready", 20)
    result = _probe(_args(gw, "--wav", str(piper_22k), "--json", "--timeout-s", "60"))
    assert result.returncode == 0, _why(result)
    report = json.loads(result.stdout)
    finished = gw.wait_log("tts.finished", 5)
    played_s = finished["played_ms"] / 1000
    assert report["replies"] == [{"reply_id": finished["reply_id"], "source": "recording_notice",
                                  "text": NOTICE, "outcome": "finished", "played_s": played_s,
                                  "detail": ""}], _why(result)
    heard = report["reply_audio"]
    assert heard is not None and heard["recorded_s"] >= played_s, heard
    assert 0.3 * played_s <= heard["sound_s"] <= played_s + 0.5, (heard, played_s)
    message = report["message"]
    assert "1 spoken reply (recording_notice, finished, " in message, message
    assert "reply audio received: " in message and "trailing final" not in message, message


def test_probe_registers_and_calls_through_kamailio(
        triton: TritonProcess, gateway_factory: GatewayFactory, kamailio: Kamailio,
        piper_22k: Path) -> None:
    require_binary("kamailio")
    gw = _gateway(gateway_factory, triton.grpc_url, sip={"accounts": [{
        "name": "kam", "user": "gateway", "domain": "127.0.0.1",
        "password": PASSWORDS["gateway"], "registrars": [kamailio.uri], "expires_s": 60}]})
    gw.wait_log("sip.registered", 15)
    gw.wait_log("triton.ready", 20)
    result = _probe(_args(gw, "--wav", str(piper_22k), "--registrar", kamailio.uri,
                          "--user", "alice", "--password-env", "PROBE_TEST_SIP_PASSWORD",
                          "--domain", kamailio.domain, "--json", uri=kamailio.aor("gateway")),
                    env={"PROBE_TEST_SIP_PASSWORD": PASSWORDS["alice"]})
    assert result.returncode == 0, _why(result) + kamailio.log_tail()
    report = json.loads(result.stdout)
    ended = gw.wait_log("call.ended", 15)
    assert report["call_id"] == ended["call_id"]
    assert "sip:alice@" in gw.wait_log("call.offered", 1)["from"]
    assert word_error_rate(SENTENCE, " ".join(f["text"] for f in report["finals"])) <= 0.2


# ------------------------------------------------------------------ no transcript: exit 1

def test_gateway_without_triton_gives_no_transcript(gateway_factory: GatewayFactory,
                                                    piper_22k: Path) -> None:
    gw = _gateway(gateway_factory, f"127.0.0.1:{free_tcp_port()}",
                  triton={"asr_enabled": True, "required_for_ready": False})
    result = _probe(_args(gw, "--wav", str(piper_22k), "--timeout-s", "12"), timeout_s=60)
    assert result.returncode == 1, _why(result)
    assert "no transcript" in result.stdout, _why(result)
    answered = gw.wait_log("call.answered", 1)
    assert f"call_id {answered['call_id']}" in result.stdout, _why(result)


# ------------------------------------------------------------------ setup errors: exit 2

def test_refused_call_prints_the_sip_status(gateway_factory: GatewayFactory,
                                            piper_22k: Path) -> None:
    gw = _gateway(gateway_factory, "127.0.0.1:9", sip={"trunk_allow": ["192.0.2.0/24"]})
    result = _probe(_args(gw, "--wav", str(piper_22k), "--timeout-s", "20"))
    assert result.returncode == 2, _why(result)
    assert "call refused: SIP 403" in result.stderr, _why(result)


@pytest.mark.parametrize(("uri", "expected"), [
    ("sip:asr@127.0.0.1:{port};transport=tcp", "SIP 503"),       # nothing listens there
    ("sip:asr@", "invalid SIP URI"),
])
def test_unreachable_or_bad_uri_is_a_setup_error(gateway_factory: GatewayFactory,
                                                 piper_22k: Path, uri: str,
                                                 expected: str) -> None:
    gw = _gateway(gateway_factory, "127.0.0.1:9")
    target = uri.format(port=free_tcp_port())
    result = _probe(_args(gw, "--wav", str(piper_22k), "--timeout-s", "20", uri=target))
    assert result.returncode == 2, _why(result)
    assert expected in result.stderr, _why(result)
    assert not gw.events("call.offered")


def test_unreachable_gateway_is_a_setup_error(piper_22k: Path) -> None:
    port = free_tcp_port()
    result = _probe([f"sip:asr@127.0.0.1:{port}", "--wav", str(piper_22k),
                     "--events-url", f"http://127.0.0.1:{port}", "--json"])
    assert result.returncode == 2, _why(result)
    report = json.loads(result.stdout)
    assert report["ok"] is False and "gateway unreachable" in report["message"]


def test_wrong_token_is_a_setup_error(gateway_factory: GatewayFactory, piper_22k: Path) -> None:
    gw = _gateway(gateway_factory, "127.0.0.1:9", http={"token": "another-token"})
    result = _probe(_args(gw, "--wav", str(piper_22k)))
    assert result.returncode == 2, _why(result)
    assert "HTTP 401" in result.stderr, _why(result)
    assert not gw.events("call.offered"), "no call may be placed without the event stream"


def test_missing_pjsua2_names_the_extra(piper_22k: Path) -> None:
    result = _probe(["sip:asr@127.0.0.1:5060", "--wav", str(piper_22k)],
                    prelude="sys.modules['pjsua2'] = None  # as if not installed")
    assert result.returncode == 2, _why(result)
    assert "pip install pjsua2-python (asr-gateway[probe])" in result.stderr, _why(result)


def test_say_without_tts_model_is_a_setup_error(triton: TritonProcess, piper_22k: Path) -> None:
    result = _probe(["sip:asr@127.0.0.1:5060", "--say", "hello", "--triton-url",
                     triton.grpc_url, "--tts-model", "no_such_tts"])
    assert result.returncode == 2, _why(result)
    assert "no_such_tts is not ready" in result.stderr, _why(result)
