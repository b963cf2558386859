"""``bench tts_latency``: ``POST /v1/calls/{id}/say`` -> first RTP packet of the reply.

One call (hand-written SIP, a silence-sending RTP socket like a phone's). Replies are
posted one at a time, each after the previous one finished, so no reply waits in the
queue. Two figures per reply: the gateway's ``tts.started`` ``latency_s`` (text
received -> first packet sent) and, on the bench's side, POST sent -> first RTP packet
received. A first warm-up reply is not counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import report, stack
from bench.corpus import SENTENCES
from bench.figures import median, percentile, rounded
from bench.rtpcall import PTIME_S, RawCall, rtp_packets
from tests.gateway_proc import GatewayProcess

NAME = "tts_latency"
TTS_MODEL = "tts_cpu_default"
REPLY_TIMEOUT_S = 30.0
PAUSE_S = 0.3
WARMUP_TEXT = "Thank you for calling, one moment please."


@dataclass(frozen=True, slots=True)
class TtsParams:
    replies: int = 20


class _Phone:
    """The caller's RTP: sends 20 ms of silence on schedule, stamps every packet received."""

    def __init__(self, call: RawCall, limit_s: float) -> None:
        self.call = call
        self.arrivals: list[float] = []
        self._stop = threading.Event()
        self._limit_s = limit_s
        silence = rtp_packets(np.zeros(160, np.int16), ssrc=0x7777)[0]
        self._silence = silence
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._receive, daemon=True)]

    def __enter__(self) -> _Phone:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2.0)

    def _send(self) -> None:
        start, seq = time.monotonic(), 0
        header, payload = bytearray(self._silence[:12]), self._silence[12:]
        while not self._stop.is_set() and time.monotonic() - start < self._limit_s:
            header[2:4] = (seq & 0xFFFF).to_bytes(2, "big")
            header[4:8] = ((seq * 160) & 0xFFFFFFFF).to_bytes(4, "big")
            if self.call.remote_rtp is not None:
                self.call.rtp.sendto(bytes(header) + payload, self.call.remote_rtp)
            seq += 1
            self._stop.wait(max(0.0, start + seq * PTIME_S - time.monotonic()))

    def _receive(self) -> None:
        self.call.rtp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                self.call.rtp.recvfrom(2048)
            except OSError:
                continue
            self.arrivals.append(time.time())

    def first_after(self, t: float) -> float | None:
        return next((a for a in self.arrivals if a >= t), None)


def _say(gw: GatewayProcess, call_id: str, text: str) -> str:
    status, body = gw.http(f"/v1/calls/{call_id}/say", method="POST",
                           token=stack.BENCH_TOKEN, body=json.dumps({"text": text}).encode())
    if status != 202:
        raise stack.BenchSetupError(f"/say answered {status}: {body[:200]!r}")
    return str(json.loads(body)["reply_id"])


def _one_reply(gw: GatewayProcess, phone: _Phone, call_id: str, text: str) -> dict[str, Any]:
    posted = time.time()
    reply_id = _say(gw, call_id, text)
    def mine(e: dict[str, Any]) -> bool:
        return e.get("reply_id") == reply_id
    started = gw.wait_log("tts.started", REPLY_TIMEOUT_S, mine)
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while time.monotonic() < deadline and not any(
            mine(e) for kind in ("tts.finished", "tts.interrupted", "tts.failed")
            for e in gw.events(kind)):
        time.sleep(0.05)
    first = phone.first_after(posted)
    return {"text": text, "gateway_latency_s": started.get("latency_s"),
            "client_latency_s": None if first is None else round(first - posted, 4)}


def measure(server_url: str, params: TtsParams, workdir: Path) -> list[dict[str, Any]]:
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(params.replies)]
    extra = {"tts": {"enabled": True}}
    with stack.gateway(workdir / "gw-tts", server_url, max_calls=5, extra=extra) as gw:
        call = RawCall(gw.sip_port)
        call.setup()
        call_id = str(gw.wait_log("call.answered", 10)["call_id"])
        try:
            with _Phone(call, limit_s=REPLY_TIMEOUT_S * (params.replies + 2)) as phone:
                _one_reply(gw, phone, call_id, WARMUP_TEXT)
                rows = []
                for text in texts:
                    time.sleep(PAUSE_S)
                    rows.append(_one_reply(gw, phone, call_id, text))
            call.hangup()
        finally:
            call.close()
    return rows


def _figures(values: Sequence[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    return {"p50": rounded(median(present), 4), "p95": rounded(percentile(present, 0.95), 4),
            "max": rounded(max(present), 4) if present else None, "count": len(present)}


def run(params: TtsParams, workdir: Path, results_dir: Path) -> dict[str, Any]:
    started_at, t0 = report.now_iso(), time.monotonic()
    with stack.triton(["asr_ack", TTS_MODEL], workdir / "triton") as server:
        env = report.environment(server.http_url)
        rows = measure(server.grpc_url, params, workdir)
    gateway = _figures([r["gateway_latency_s"] for r in rows])
    client = _figures([r["client_latency_s"] for r in rows])
    document = {
        "benchmark": NAME, "started_at": started_at,
        "duration_s": round(time.monotonic() - t0, 1), "environment": env,
        "parameters": {"replies": params.replies, "tts_model": TTS_MODEL, "warmup_replies": 1},
        "results": {"gateway_text_to_first_packet_s": gateway,
                    "client_post_to_first_packet_s": client, "replies": rows},
    }
    report.write_result(NAME, document, results_dir)
    report.show("tts_latency (tts_cpu_default, one call)", [
        {"measured": "gateway tts.started latency_s", **gateway},
        {"measured": "client POST -> first RTP packet", **client}],
        ("measured", "p50", "p95", "max", "count"))
    return document
