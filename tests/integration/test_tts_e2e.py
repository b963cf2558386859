"""Spoken replies end to end: POST /say, barge-in and the bot webhook, heard by a softphone
and checked by transcribing what it recorded with the ASR model."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from aiohttp import web

from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess
from tests.peers.ports import free_tcp_port
from tests.peers.softphone import PhoneOptions, Softphone
from tests.speech import piper_wavs, read_pcm, word_error_rate, write_wav
from tests.triton.fixtures import AsrStream

pytestmark = pytest.mark.slow
TOKEN = "tts-test-token"
REPLY = "Your order has been shipped today and it will arrive on Thursday."
LONG_REPLY = " ".join(["Thank you for calling the support line of our company."] * 6)
CUSTOMER = "Hello, where is my parcel?"
BOT_SECRET = "bot-secret-1"


def _gateway(factory: GatewayFactory, url: str, **extra: Any) -> GatewayProcess:
    cfg: dict[str, Any] = {"triton": {"url": url, "asr_model": "asr_cpu_default"},
                           "http": {"token": TOKEN}}
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return factory(cfg)


def _transcribe(url: str, wav: Path) -> str:
    pcm = read_pcm(wav).astype(np.float32) / 32768
    audio = np.concatenate([soxr.resample(pcm, 8000, 16000), np.zeros(16000)]).astype(
        np.float32)
    stream = AsrStream(url, "asr_cpu_default")
    try:
        results = stream.stream(int(time.time_ns() % 10**12), audio)
    finally:
        stream.close()
    return " ".join(r["text"] for r in results if r["type"] == "final")


def _say(gw: GatewayProcess, call_id: str, body: Any, token: str | None = TOKEN
         ) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, data = gw.http(f"/v1/calls/{call_id}/say", method="POST", token=token, body=raw)
    return status, json.loads(data) if data else {}


def _frames_rms(pcm: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    frames = pcm[: len(pcm) // 160 * 160].astype(np.float64).reshape(-1, 160)
    return np.sqrt((frames ** 2).mean(axis=1))


def test_say_is_heard_by_the_caller(tts_loaded: str, gateway_factory: GatewayFactory,
                                    tmp_path: Path) -> None:
    gw = _gateway(gateway_factory, tts_loaded)
    rec = tmp_path / "heard.wav"
    phone = Softphone(PhoneOptions(call=f"sip:asr@127.0.0.1:{gw.sip_port}", record=rec,
                                   duration_s=9, timeout_s=40), workdir=tmp_path / "phone")
    with phone:
        phone.wait_for("call_state", 15, state="CONFIRMED")
        call_id = gw.wait_log("call.answered", 5)["call_id"]
        status, body = _say(gw, call_id, {"text": REPLY})
        assert status == 202 and body["reply_id"]
        started = gw.wait_log("tts.started", 20)
        assert started["reply_id"] == body["reply_id"] and started["latency_s"] < 10
        gw.wait_log("tts.finished", 20)
        phone.wait_for("call_disconnected", 20)
    text = _transcribe(tts_loaded, rec)
    # piper samples prosody noise per run, so the reply differs each time: allow a misheard word
    assert word_error_rate(REPLY, text) <= 0.25, text


def test_barge_in_stops_the_reply(tts_loaded: str, gateway_factory: GatewayFactory,
                                  tmp_path: Path) -> None:
    gw = _gateway(gateway_factory, tts_loaded, tts={"barge_in_ms": 200})
    (customer,) = piper_wavs([CUSTOMER], tmp_path / "piper")
    lead_s = 4.0                                       # the caller starts talking at 4 s
    speech = np.concatenate([np.zeros(int(8000 * lead_s), np.int16), read_pcm(customer)])
    rec = tmp_path / "heard.wav"
    phone = Softphone(PhoneOptions(call=f"sip:asr@127.0.0.1:{gw.sip_port}", record=rec,
                                   play=write_wav(tmp_path / "talk.wav", speech),
                                   duration_s=14, timeout_s=40), workdir=tmp_path / "phone")
    with phone:
        phone.wait_for("call_state", 15, state="CONFIRMED")
        call_id = gw.wait_log("call.answered", 5)["call_id"]
        assert _say(gw, call_id, {"text": LONG_REPLY, "barge_in": True})[0] == 202
        interrupted = gw.wait_log("tts.interrupted", 20)
        phone.wait_for("call_disconnected", 25)
    assert interrupted["reason"].startswith("barge-in")
    assert 0 < interrupted["played_ms"] < 12000
    loud = np.nonzero(_frames_rms(read_pcm(rec)) > 300)[0]
    assert loud.size and loud[0] * 0.02 < lead_s, "the reply was never heard"
    # without barge-in the reply would be loud for ~20 s; it must stop soon after 4 s
    assert loud[-1] * 0.02 < lead_s + 3.0, loud[-1] * 0.02
    assert not gw.events("tts.finished")


def test_not_interruptible_reply_plays_through(tts_loaded: str, gateway_factory: GatewayFactory,
                                               tmp_path: Path) -> None:
    gw = _gateway(gateway_factory, tts_loaded)
    (customer,) = piper_wavs([CUSTOMER], tmp_path / "piper")
    speech = np.concatenate([np.zeros(8000, np.int16), read_pcm(customer)])
    phone = Softphone(PhoneOptions(call=f"sip:asr@127.0.0.1:{gw.sip_port}",
                                   play=write_wav(tmp_path / "talk.wav", speech),
                                   duration_s=10, timeout_s=40), workdir=tmp_path / "phone")
    with phone:
        phone.wait_for("call_state", 15, state="CONFIRMED")
        call_id = gw.wait_log("call.answered", 5)["call_id"]
        assert _say(gw, call_id, {"text": REPLY, "barge_in": False})[0] == 202
        gw.wait_log("tts.finished", 25)
        phone.wait_for("call_disconnected", 20)
    assert not gw.events("tts.interrupted")


class BotServer:
    """The operator's bot: verifies the signature and answers with a reply."""

    def __init__(self) -> None:
        self.port = free_tcp_port()
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(BOT_SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Gateway-Signature", ""), expected):
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        self.received.append(json.loads(body))
        return web.json_response({"say": REPLY, "hangup": False})

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> BotServer:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def test_bot_webhook_reply_is_spoken(tts_loaded: str, gateway_factory: GatewayFactory,
                                     tmp_path: Path) -> None:
    (customer,) = piper_wavs([CUSTOMER], tmp_path / "piper")
    with BotServer() as bot:
        gw = _gateway(gateway_factory, tts_loaded,
                      bot={"webhook_url": f"http://127.0.0.1:{bot.port}/hook",
                           "secret": BOT_SECRET})
        rec = tmp_path / "heard.wav"
        phone = Softphone(PhoneOptions(call=f"sip:asr@127.0.0.1:{gw.sip_port}", record=rec,
                                       play=customer, duration_s=16, timeout_s=40),
                          workdir=tmp_path / "phone")
        with phone:
            phone.wait_for("call_state", 15, state="CONFIRMED")
            started = gw.wait_log("tts.started", 25)
            assert started["source"] == "bot"
            gw.wait_log("tts.finished", 25)
            phone.wait_for("call_disconnected", 25)
        assert bot.bad_signatures == 0 and bot.received
        assert "parcel" in bot.received[0]["text"].lower()
        assert bot.received[0]["channel"] == "customer"
    heard = _transcribe(tts_loaded, rec)
    assert word_error_rate(REPLY, heard) <= 0.3, heard


def test_control_api_errors(tts_loaded: str, gateway_factory: GatewayFactory,
                            tmp_path: Path) -> None:
    gw = _gateway(gateway_factory, tts_loaded, tts={"max_text_chars": 50})
    phone = Softphone(PhoneOptions(call=f"sip:asr@127.0.0.1:{gw.sip_port}", duration_s=4,
                                   timeout_s=30), workdir=tmp_path / "phone")
    with phone:
        phone.wait_for("call_state", 15, state="CONFIRMED")
        call_id = gw.wait_log("call.answered", 5)["call_id"]
        assert _say(gw, call_id, b"{not json")[0] == 400
        assert _say(gw, call_id, ["text"])[0] == 400
        assert _say(gw, call_id, {"text": "   "})[0] == 400
        assert _say(gw, call_id, {"text": "hi", "barge_in": "yes"})[0] == 400
        assert _say(gw, call_id, {"text": "x" * 51})[0] == 413
        assert _say(gw, "c-unknown", {"text": "hi"})[0] == 404
        assert _say(gw, call_id, {"text": "hi"}, token=None)[0] == 401
        assert _say(gw, call_id, {"text": "hi"}, token="wrong")[0] == 401
        status, body = gw.http(f"/v1/calls/{call_id}", token=TOKEN)
        assert status == 200 and json.loads(body)["state"] in ("confirmed", "answered")
        phone.wait_for("call_disconnected", 15)


def test_greeting_and_recording_notice_on_answer(tts_loaded: str,
                                                 gateway_factory: GatewayFactory,
                                                 tmp_path: Path) -> None:
    gw = _gateway(gateway_factory, tts_loaded,
                  tts={"recording_notice": "This call is recorded.",
                       "greeting": "Hello, how can I help?"})
    rec = tmp_path / "heard.wav"
    phone = Softphone(PhoneOptions(call=f"sip:asr@127.0.0.1:{gw.sip_port}", record=rec,
                                   duration_s=8, timeout_s=30), workdir=tmp_path / "phone")
    with phone:
        phone.wait_for("call_disconnected", 30)
    started = gw.events("tts.started")
    assert [(e["source"], e["barge_in"]) for e in started] == [
        ("recording_notice", False), ("greeting", True)]
    heard = _transcribe(tts_loaded, rec)
    assert word_error_rate("This call is recorded. Hello, how can I help?", heard) <= 0.3, heard
