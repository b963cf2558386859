"""PII redaction end to end (issue 16): one real two-leg call into the daemon, Whisper
(``asr_cpu_default``) on the shared Triton, a piper voice for both sides.

The agent leg (``X-Leg: agent``, same ``X-Conversation-Id``) asks for a card number, an SSN
and an e-mail address; the customer leg reads a Luhn-valid test PAN digit by digit, an SSN
and ``john dot smith at example dot com``, then a PII-free goodbye, then presses four keys
(RFC 4733), ``POST /v1/calls/{id}/secure`` coming after the first. The gateway writes to
every output it has: the log (stdout), a JSONL sink, a webhook (a local aiohttp server here),
the WebSocket events endpoint (a client here), the per-call files and a WAV recording with
``[redaction] audio = "tone"``; one more JSONL sink has ``raw = true``.

Afterwards (one call, module-scoped; a test per check):

1. the raw sink has the events unredacted, and shows Whisper really heard the values (most
   of the digits, in order): the rest is not vacuous;
2. no surface form of any value (digits with any separators, spoken digits, the spoken
   address: ``tests.redaction_corpus.leaks``) is in any file the gateway wrote, its log, any
   WebSocket message or webhook body, or ``/metrics`` (the raw sink's file excepted);
3. the redacted finals carry ``redaction`` blocks with their tags, the goodbye none, and
   ``redaction.applied`` events exist; keys after secure mode are ``[DTMF]``;
4. in the recording, each redacted span of the customer channel (right) and most of its
   padding is a 1 kHz tone at the masker's level, every number word Whisper heard lies under
   it, and the other speech of both channels is not tone;
5. ``gateway_redactions_total{entity="card"}`` is above 0.

Digits of the gateway's own (ids, timestamps, paths, measurements, metric values) are
scrubbed before the any-form check, which would otherwise find four digits of a card in a
random call id; the whole number is looked for everywhere, those included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
import soxr
from aiohttp import web

from gateway.triton_launcher import TritonProcess
from tests.conftest import GatewayFactory
from tests.event_files import schema_errors
from tests.gateway_proc import GatewayProcess, base_config, merge
from tests.integration.test_media import Caller
from tests.media_tools import FRAME, RATE, dtmf_packets, packets, read_wav
from tests.peers.ports import free_tcp_port
from tests.redaction_corpus.leaks import digit_runs, leaks
from tests.speech import piper_wavs, read_pcm
from tests.triton.fixtures import AsrStream

pytestmark = pytest.mark.slow

CARD = "4539148803436467"          # Visa test PAN, Luhn-valid
SSN = "536228714"
EMAIL = "john.smith@example.com"
VALUES = (CARD, SSN, EMAIL)
TURNS = (
    ("Thank you for calling. Can I have your card number, please?",
     "Sure. It is four five three nine, one four eight eight, zero three four three, "
     "six four six seven."),
    ("Thank you. And what is your social security number?",
     "My social security number is five three six, two two, eight seven one four."),
    ("Great. What email address should we send the receipt to?",
     "My email is john dot smith at example dot com."),
    ("You are all set. Is there anything else I can do for you?",
     "No, that is all. Thank you very much for your help today."),
)
CLOSING = "thank you very much for your help today"   # PII-free: left as it is
TOKEN = "redaction-e2e-token"
RTP_RANGE = (51200, 51298)  # outside the ranges tests/conftest.py hands out
GAP_S = 1.5                 # silence after each utterance (the ASR ends the utterance)
TRAILING_S = 3.5
KEYS = ((0.4, "5"), (1.4, "7"), (1.9, "3"), (2.4, "7"))   # (s into the trailing silence, key)
SECURE_AT_S = 0.9           # POST /v1/calls/{id}/secure between the first key and the rest
TONE_HZ = 1000.0
TONE_DBFS = -23.0           # the masker's tone: -20 dBFS peak, so about -23 dBFS RMS
WINDOW = RATE // 10         # 100 ms analysis windows
Pcm = npt.NDArray[np.int16]


# ------------------------------------------------------------------ outputs collected here

class WebhookServer:
    """The operator's webhook: records every body (200 to each)."""

    def __init__(self) -> None:
        self.port = free_tcp_port()
        self.bodies: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _hook(self, request: web.Request) -> web.Response:
        self.bodies.append((await request.read()).decode("utf-8", "replace"))
        return web.json_response({})

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/events", self._hook)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        assert self._ready.wait(5), "webhook server did not start"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class EventsClient:
    """A WebSocket client on /v1/events that keeps every message until the gateway closes."""

    def __init__(self, http_port: int) -> None:
        self.url = f"ws://127.0.0.1:{http_port}/v1/events"
        self.messages: list[str] = []
        self.error: BaseException | None = None
        self._connected = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        try:
            async with aiohttp.ClientSession() as session, session.ws_connect(
                    self.url, headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                self._connected.set()
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        self.messages.append(str(msg.data))
        except Exception as exc:    # seen by the test through .error
            self.error = exc
        finally:
            self._connected.set()

    def __enter__(self) -> EventsClient:
        self._thread.start()
        assert self._connected.wait(10) and self.error is None, self.error
        return self

    def __exit__(self, *_exc: object) -> None:
        self._thread.join(10)    # the gateway's shutdown closes the socket (going away)

    def types(self) -> list[str]:
        return [json.loads(m)["type"] for m in self.messages]


# ------------------------------------------------------------------ the conversation

@dataclass(frozen=True, slots=True)
class Conversation:
    agent: Pcm
    customer: Pcm


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Conversation:
    """Both legs' audio on one timeline: question, pause, answer, pause ..."""
    texts = [t for turn in TURNS for t in turn]
    speech = [read_pcm(p) for p in piper_wavs(texts, tmp_path_factory.mktemp("piper"))]
    agent: list[Pcm] = [_silence(0.5)]
    customer: list[Pcm] = [_silence(0.5)]
    for question, answer in zip(speech[::2], speech[1::2], strict=True):
        for talker, other, pcm in ((agent, customer, question), (customer, agent, answer)):
            talker.extend([pcm, _silence(GAP_S)])
            other.append(_silence(len(pcm) / RATE + GAP_S))
    agent.append(_silence(TRAILING_S))
    customer.append(_silence(TRAILING_S))
    return Conversation(np.concatenate(agent), np.concatenate(customer))


def _silence(seconds: float) -> Pcm:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def _customer_packets(conv: Conversation) -> tuple[list[bytes], int]:
    """The customer's RTP with the keypad presses in the trailing silence (RFC 4733 events
    in place of audio packets, as a phone sends them); and the packet index of secure on."""
    stream = packets(conv.customer, "PCMU", ssrc=0xC1)           # seq 1000..., ts 5000...
    tail = len(stream) - round(TRAILING_S / 0.02)
    for at_s, key in KEYS:
        k = tail + round(at_s / 0.02)
        event = dtmf_packets(int(key), seq0=1000 + k, ts=5000 + k * FRAME, ssrc=0xC1)
        stream[k:k + len(event)] = event
    return stream, tail + round(SECURE_AT_S / 0.02)


def _talk(agent: Caller, customer: Caller, streams: tuple[list[bytes], list[bytes]],
          actions: dict[int, Callable[[], None]]) -> None:
    """Both legs' RTP, interleaved and paced like two phones (20 ms each); ``actions[i]``
    runs before the i-th packet pair."""
    start = time.monotonic()
    for i, (a, c) in enumerate(zip(*streams, strict=True)):
        if i in actions:
            actions[i]()
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        agent.rtp.sendto(a, agent.gw_rtp)
        customer.rtp.sendto(c, customer.gw_rtp)


def _redaction_gateway(factory: GatewayFactory, triton_url: str, hook_port: int,
                       sinks_dir: Path) -> GatewayProcess:
    sinks = [{"type": "log"},
             {"type": "jsonl", "path": str(sinks_dir / "events.jsonl")},
             {"type": "jsonl", "path": str(sinks_dir / "raw" / "events-raw.jsonl"), "raw": True},
             {"type": "webhook", "url": f"http://127.0.0.1:{hook_port}/events"}]
    return factory({
        "triton": {"url": triton_url, "asr_model": "asr_cpu_default", "buffer_s": 60.0},
        "tts": {"enabled": False},
        "http": {"token": TOKEN},
        "events": {"sinks": sinks},
        "storage": {"record": True, "recording_format": "wav"},
        "channels": {"rules": [
            {"match": "header", "header": "X-Leg", "pattern": "^agent$", "channel": "agent"}]},
        "redaction": {"enabled": True, "audio": "tone", "secure_dtmf": "never"},
    })


def _call(gw: GatewayProcess, conv: Conversation) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two legs of one conversation talk (the customer's keypad put in secure mode through
    the API midway through its key presses), then hang up; (agent, customer) call.ended."""
    agent = Caller(gw, headers="X-Leg: agent\r\nX-Conversation-Id: redaction-e2e")
    customer = Caller(gw, headers="X-Leg: customer\r\nX-Conversation-Id: redaction-e2e")
    call_id = gw.wait_log("call.answered", 5, lambda e: e["sip_call_id"] == customer.call_id
                          )["call_id"]
    replies: list[tuple[int, bytes]] = []

    def secure() -> None:
        replies.append(gw.http(f"/v1/calls/{call_id}/secure", "POST", token=TOKEN,
                               body=b'{"secure": true}'))

    customer_stream, secure_at = _customer_packets(conv)
    streams = (packets(conv.agent, "PCMU", ssrc=0xA1), customer_stream)
    _talk(agent, customer, streams, {secure_at: secure})
    customer.bye()
    agent.bye()
    assert [status for status, _body in replies] == [200], replies
    return agent.ended(30), customer.ended(30)


def _wait_for(done: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.1)


def _types(messages: Sequence[str]) -> list[str]:
    return [json.loads(m)["type"] for m in messages]


@dataclass
class Outputs:
    """Everything the gateway put out during the call."""

    gw: GatewayProcess
    sinks_dir: Path
    ended: tuple[dict[str, Any], dict[str, Any]]
    ws: list[str]
    webhook: list[str]
    metrics: str

    @property
    def raw_path(self) -> Path:
        return self.sinks_dir / "raw" / "events-raw.jsonl"

    def events(self, path: Path | None = None) -> list[dict[str, Any]]:
        path = path or self.sinks_dir / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def raw_events(self) -> list[dict[str, Any]]:
        return self.events(self.raw_path)


@pytest.fixture(scope="module")
def outputs(triton: TritonProcess, conversation: Conversation,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outputs]:
    """One call through a gateway with every output on; the gateway stopped afterwards (its
    files closed), the WebSocket client closed by the gateway's shutdown."""
    tmp = tmp_path_factory.mktemp("redaction")
    with _module_gateway_factory(tmp) as factory, WebhookServer() as hook:
        gw = _redaction_gateway(factory, triton.grpc_url, hook.port, tmp / "sinks")
        gw.wait_log("triton.ready", 30)
        with EventsClient(gw.http_port) as ws:
            ended = _call(gw, conversation)
            _wait_for(lambda: _types(hook.bodies).count("call.ended") >= 2, 20,
                      "both call.ended at the webhook")
            _wait_for(lambda: ws.types().count("call.ended") >= 2, 10,
                      "both call.ended on the WebSocket")
            status, metrics = gw.http("/metrics")
            assert status == 200
            assert gw.stop() == 0
        assert ws.error is None, ws.error
        out = Outputs(gw, tmp / "sinks", ended, list(ws.messages), list(hook.bodies),
                      metrics.decode())
        _keep_for_debugging(out, tmp / "collected")
        yield out


@contextlib.contextmanager
def _module_gateway_factory(tmp: Path) -> Iterator[GatewayFactory]:
    """tests/conftest.py's gateway_factory for a module-scoped fixture: killed at the end,
    and every event it wrote checked against the schema."""
    started: list[GatewayProcess] = []

    def make(extra: dict[str, Any]) -> GatewayProcess:
        workdir = tmp / f"gw{len(started)}"
        workdir.mkdir()
        gw = GatewayProcess(workdir, merge(base_config(workdir, RTP_RANGE), extra))
        started.append(gw)
        return gw.start()

    try:
        yield make
    finally:
        for gw in started:
            gw.kill()
    errors = [e for gw in started for e in schema_errors(gw.config)[1]]
    assert not errors, "events not matching the schema:\n" + "\n".join(errors)


def _keep_for_debugging(out: Outputs, directory: Path) -> None:
    """The log, WebSocket messages and webhook bodies as files (outside the scanned dirs)."""
    directory.mkdir()
    (directory / "stdout.log").write_text("".join(out.gw.raw))
    (directory / "ws.jsonl").write_text("".join(m + "\n" for m in out.ws))
    (directory / "webhook.jsonl").write_text("".join(b + "\n" for b in out.webhook))
    (directory / "metrics.txt").write_text(out.metrics)


# ------------------------------------------------------------------ leak scanning

_STRUCTURAL = re.compile("|".join((
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?",   # timestamps
    r"(?<![\w.])/[^\s\"',;]+",                                              # file paths
    r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b",                                # IPv4[:port]
    r"\b(?=[\w-]*[a-z])(?=[\w-]*\d)[\w-]+\b",        # ids mixing letters and digits
    r"(?<![\d.])\d+\.\d+(?:e[+-]?\d+)?(?![.\d])",      # one decimal number (a measure)
)), re.IGNORECASE)
_SAMPLE_VALUE = re.compile(r"^([^#\s][^\s]*)\s+\S+(?:\s+\d+)?$", re.MULTILINE)


def _scrub(text: str) -> str:
    """The text without identifiers, timestamps and paths, whose digits are the gateway's
    own (a random call id holds four digits of a card by chance, a PII leak does not)."""
    return _STRUCTURAL.sub(" ", text)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _texts_of(line: str) -> list[str]:
    """What a line says: each string of a JSON line, and all of them joined (the words of a
    transcript are one string each), or the whole line when it is not JSON."""
    try:
        parsed = json.loads(line)
    except ValueError:
        return [_scrub(line)]
    strings = [_scrub(s) for s in _strings(parsed)]
    return [*strings, " ".join(strings)]


def _whole_value(value: str, line: str) -> str | None:
    """The digit run holding the whole number, JSON numbers and identifiers included."""
    runs = digit_runs(line) if value.isdigit() else []
    return next((run for run in runs if value in run), None)


def leaks_in(text: str, values: Sequence[str] = VALUES) -> list[tuple[str, str]]:
    """(value, what holds it) for each value found in any surface form in a line of
    ``text``."""
    found = []
    for line in text.splitlines():
        texts = _texts_of(line)
        for value in values:
            holder = _whole_value(value, line) or next(
                (t for t in texts if leaks(value, t)), None)
            if holder is not None:
                found.append((value, holder[:200]))
    return found


def _written_files(out: Outputs) -> list[Path]:
    """Every file the gateway wrote (its work dir and the sinks), the raw sink excepted (and
    the config the test wrote)."""
    files = [p for root in (out.gw.tmp, out.sinks_dir) for p in sorted(root.rglob("*"))
             if p.is_file()]
    return [p for p in files if p not in (out.raw_path, out.gw.config_path)]


def _sources(out: Outputs) -> dict[str, str]:
    """Name -> text of every output: files, the log, WebSocket messages, webhook bodies."""
    texts = {str(p): p.read_text("utf-8", "replace") for p in _written_files(out)
             if p.suffix != ".wav"}
    texts["stdout/stderr"] = "".join(out.gw.raw)
    texts["websocket"] = "\n".join(out.ws)
    texts["webhook"] = "\n".join(out.webhook)
    texts["/metrics"] = _SAMPLE_VALUE.sub(r"\1", out.metrics)   # names and labels
    return texts


# ------------------------------------------------------------------ the checks

def _customer_finals(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "transcript.final" and e["channel"] == "customer"]


def _common_subsequence(a: str, b: str) -> int:
    """Length of the longest common subsequence of two strings."""
    row = [0] * (len(b) + 1)
    for ch in a:
        prev = 0
        for j, other in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if ch == other else max(row[j], row[j - 1])
    return row[-1]


TAGS = ("[CARD]", "[SSN]", "[EMAIL]", "[DTMF]", "[DIGITS]")


# What the redactor changes; events added after it (analytics: categories, the conversation
# summary) are built from redacted text and reach raw sinks as they are, by design.
REDACTED_TYPES = ("transcript.final", "transcript.partial", "dtmf", "tts.started",
                  "tts.interrupted")


def test_raw_sink_gets_the_events_unredacted(outputs: Outputs) -> None:
    """``raw = true``: every event as it was before redaction (held finals included)."""
    redacted = [(e["type"], e.get("text")) for e in outputs.raw_events()
                if e["type"] in REDACTED_TYPES
                and (e.get("redaction") or any(tag in json.dumps(e) for tag in TAGS))]
    assert not redacted, f"the raw sink got redacted events: {redacted}"


def test_whisper_heard_the_values(outputs: Outputs) -> None:
    """The raw sink (before redaction) has the values: the rest is not vacuous."""
    text = " ".join(e["text"] for e in _customer_finals(outputs.raw_events()))
    digits = "".join(digit_runs(text))
    tagged = [tag for tag in TAGS if tag in text]
    for value, least in ((CARD, 13), (SSN, 7)):
        heard = _common_subsequence(value, digits)
        assert heard >= least, (
            f"Whisper did not recognise {value} well enough for this test to mean anything: "
            f"{heard} of its {len(value)} digits in order in the raw customer text {text!r}"
            + (f" (which holds {tagged}: the raw sink got redacted finals)" if tagged else ""))
    assert "smith" in text.lower() and "example" in text.lower(), (
        f"Whisper did not recognise the e-mail address: {text!r}")
    found = {value for value, _line in leaks_in(outputs.raw_path.read_text())}
    assert found == set(VALUES), f"the leak check misses values in the raw sink: {found}"


def test_no_value_in_any_output(outputs: Outputs) -> None:
    sources = _sources(outputs)
    assert len(list((outputs.gw.tmp / "state" / "calls").glob("*.jsonl"))) == 2
    for name in ("websocket", "webhook", "stdout/stderr"):
        assert "transcript.final" in sources[name], f"{name} got no transcripts"
    leaked = [(name, value, holder) for name, text in sources.items()
              for value, holder in leaks_in(text)]
    assert not leaked, f"{len(leaked)} leaks:\n" + "\n".join(
        f"{name}: {value} in {holder!r}" for name, value, holder in leaked)


def _plain(text: str) -> str:
    return " ".join(re.findall(r"[a-z]+", text.lower()))


def test_redacted_events_say_what_was_removed(outputs: Outputs) -> None:
    finals = _customer_finals(outputs.events())
    removed = {entity for f in finals if f["redaction"] for entity in f["redaction"]["entities"]}
    assert {"card", "ssn", "email"} <= removed, [(f["text"], f["redaction"]) for f in finals]
    text = " ".join(f["text"] for f in finals)
    for tag in ("[CARD]", "[SSN]", "[EMAIL]"):
        assert tag in text, text
    closing = [f for f in finals if CLOSING in _plain(f["text"])]
    assert [f["redaction"] for f in closing] == [None], [(f["text"], f["redaction"])
                                                         for f in finals]
    applied = [e for e in outputs.events() if e["type"] == "redaction.applied"]
    entities = {s["entity"] for e in applied if e["channel"] == "customer" for s in e["spans"]}
    assert {"card", "ssn", "email"} <= entities, applied
    for name, messages in (("websocket", outputs.ws), ("webhook", outputs.webhook)):
        assert "redaction.applied" in _types(messages), name
        blocks = [json.loads(m).get("redaction") for m in messages
                  if json.loads(m)["type"] == "transcript.final"]
        assert any(b and "card" in b["entities"] for b in blocks), name


def _keys(events: Sequence[dict[str, Any]]) -> list[str]:
    return [e["digit"] for e in events if e["type"] == "dtmf" and e["channel"] == "customer"]


def test_keypad_digits_are_masked_in_secure_mode(outputs: Outputs) -> None:
    """Keys pressed after POST /secure are the [DTMF] tag everywhere but in the raw sink;
    the one before it is not; their spans are redacted (the recording test checks them)."""
    heard = [key for _at, key in KEYS]
    assert _keys(outputs.raw_events()) == heard
    masked = [heard[0]] + ["[DTMF]"] * (len(heard) - 1)
    for name, events in (("jsonl", outputs.events()),
                         ("websocket", [json.loads(m) for m in outputs.ws]),
                         ("webhook", [json.loads(b) for b in outputs.webhook])):
        assert _keys(events) == masked, name
        assert [(e["secure"], e["by"]) for e in events
                if e["type"] == "call.secure_changed"] == [(True, "api")], name
    spans = [s for e in outputs.events() if e["type"] == "redaction.applied"
             and e["source"] == "dtmf" for s in e["spans"]]
    assert [s["entity"] for s in spans] == ["dtmf"] * (len(heard) - 1), spans


def test_redactions_are_counted(outputs: Outputs) -> None:
    match = re.search(r'^gateway_redactions_total\{[^}]*entity="card"[^}]*\}\s+(\S+)$',
                      outputs.metrics, re.MULTILINE)
    assert match, [line for line in outputs.metrics.splitlines() if "redaction" in line]
    assert float(match.group(1)) > 0


# ------------------------------------------------------------------ the recording

Interval = tuple[float, float]


def _analyse(x: Pcm) -> tuple[float, float, float]:
    """(dominant frequency in Hz, RMS level in dBFS, share of the energy within 25 Hz of
    1 kHz) of a stretch of audio."""
    y = x.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / RATE)
    level = 20 * np.log10(max(float(np.sqrt(np.mean(y * y))), 1e-9) / 32768)
    share = float(spectrum[np.abs(freqs - TONE_HZ) <= 25].sum() / max(spectrum.sum(), 1e-9))
    return float(freqs[int(np.argmax(spectrum))]), level, share


def _spans(out: Outputs, channel: str) -> list[Interval]:
    """The redacted spans of a channel (seconds on the conversation timeline = the
    recording's)."""
    return [(s["start_s"], s["end_s"]) for e in out.events()
            if e["type"] == "redaction.applied" and e["channel"] == channel for s in e["spans"]]


def _recording(out: Outputs) -> npt.NDArray[np.int16]:
    agent, customer = out.ended
    path = Path(customer["recording"] or agent["recording"])
    rate, channels, frames = read_wav(path)
    assert (rate, channels) == (RATE, 2) and path.suffix == ".wav"
    return frames


def _outside(channel: Pcm, spans: Sequence[Interval], margin_s: float) -> Iterator[Pcm]:
    """100 ms windows of a channel that do not touch any span (widened by ``margin_s``)."""
    for i in range(0, len(channel) - WINDOW + 1, WINDOW):
        lo, hi = i / RATE, (i + WINDOW) / RATE
        if not any(lo < end + margin_s and hi > start - margin_s for start, end in spans):
            yield channel[i:i + WINDOW]


def test_recording_has_the_tone_over_the_redacted_spans(outputs: Outputs) -> None:
    """Each span, and most of its padding (``audio_padding_ms`` 250 by default), is tone."""
    customer = _recording(outputs)[:, 1]          # customer = right
    spans = _spans(outputs, "customer")
    assert spans
    for start, end in spans:
        stretch = customer[round((start - 0.2) * RATE):round((end + 0.2) * RATE)]
        assert len(stretch) >= WINDOW, (start, end, len(customer) / RATE)
        freq, level, share = _analyse(stretch)
        assert abs(freq - TONE_HZ) <= 10 and abs(level - TONE_DBFS) <= 1.0 and share > 0.98, (
            f"span {start:.2f}-{end:.2f} s: {freq:.0f} Hz, {level:.1f} dBFS, "
            f"{share:.0%} of it at 1 kHz")


def test_recording_masks_every_spoken_digit(outputs: Outputs) -> None:
    """The audio of each number word Whisper heard lies under the (padded) tone."""
    padding_s = 0.25                    # [redaction] audio_padding_ms default
    spans = _spans(outputs, "customer")
    words = [w for f in _customer_finals(outputs.raw_events()) for w in f["words"]
             if digit_runs(w["word"])]
    assert len(words) >= 4, words
    for w in words:
        assert any(lo - padding_s <= w["start_s"] and w["end_s"] <= hi + padding_s
                   for lo, hi in spans), (w, spans)


def test_recording_says_no_value_to_whisper(triton: TritonProcess, outputs: Outputs) -> None:
    """The customer channel of the recording, transcribed again: the goodbye is there, none
    of the values is."""
    pcm = _recording(outputs)[:, 1].astype(np.float32) / 32768
    audio = np.concatenate([soxr.resample(pcm, RATE, 16000), np.zeros(16000)])
    stream = AsrStream(triton.grpc_url, "asr_cpu_default")
    try:
        results = stream.stream(int(time.time_ns() % 10**12), audio.astype(np.float32))
    finally:
        stream.close()
    text = " ".join(r["text"] for r in results if r["type"] == "final")
    assert "help today" in _plain(text), text
    assert [v for v in VALUES if leaks(v, text)] == [], text


def test_recording_keeps_the_other_speech(outputs: Outputs) -> None:
    """Outside the spans (and their padding) the customer's speech is speech, not tone, and
    the agent's channel has no tone at all."""
    frames = _recording(outputs)
    for index, channel in ((1, "customer"), (0, "agent")):
        windows = [w for w in _outside(frames[:, index], _spans(outputs, channel), 0.3)
                   if _analyse(w)[1] > -40]
        assert len(windows) >= 15, f"{channel}: {len(windows)} windows of speech left"
        toned = [_analyse(w) for w in windows if _analyse(w)[2] > 0.5]
        assert not toned, f"{channel}: tone outside the redacted spans: {toned}"
