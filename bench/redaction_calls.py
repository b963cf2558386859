"""``bench redaction --calls``: redaction measured on what Whisper really writes.

A fixed subset of the corpus (``PII_ITEMS`` then ``CLEAN_ITEMS``, ``--call-items`` in all)
is spoken by the piper voice (``tests/speech.py``, 8 kHz) into two real two-leg
conversations placed at once (hand-written SIP, ``tests/rawsip``; each conversation an
agent leg with ``X-Leg: agent`` and a customer leg with the same ``X-Conversation-Id``):
one with the PII items, one with the PII-free ones (so that a card question in one item
does not open a context window over a PII-free item that follows). Each turn is played on
its channel's leg in call order, the other leg silent meanwhile. Triton serves
``asr_cpu_default`` (Whisper); the gateway runs with the default ``[redaction]`` plus the
corpus's custom patterns, the ``log`` sink (redacted: what the bench reads) and a ``jsonl``
sink with ``raw = true`` (what Whisper wrote, before redaction).

What a caller says is the turn's text with each labelled number read out digit by digit
(``4111 1111`` -> "four one one one, one one one one"), e-mail symbols as words and IBAN
letters one by one; dates, prices and the rest are left to piper. A final belongs to the
turn of its channel whose speech it overlaps most (times on the conversation timeline,
the legs' offset estimated from the finals). Per label: ``heard`` (Whisper wrote the value:
it leaks from the raw text) and ``leaked`` (it survives in the redacted text); recall is
over all labels and over the heard ones. Partials of a turn that show the value are
counted as ``partial_leaks``. PII-free turns: unchanged when the redacted final equals the
raw one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import report, stack
from bench.corpus import Utterance, utterances
from bench.redaction import RedactionParams, ended_event, fire_timers, redaction_config
from bench.rtpcall import RawCall, Stream, play, rtp_packets
from gateway.config import RedactionConfig
from gateway.events.types import GatewayEvent, TranscriptFinal, TranscriptWord
from gateway.redaction.processor import Redactor
from tests.gateway_proc import GatewayProcess
from tests.redaction_corpus.corpus import CorpusItem, Label, custom_patterns, load
from tests.redaction_corpus.forms import DIGIT_WORDS
from tests.redaction_corpus.leaks import leaks

RATE_HZ = 8000
LEAD_S = 1.0
TURN_GAP_S = 1.3
ITEM_GAP_S = 2.5
TAIL_S = 4.0
ANSWER_TIMEOUT_S = 10.0
FINALS_SETTLE_S = 20.0
ENDED_TIMEOUT_S = 60.0
Event = dict[str, Any]

PII_ITEMS = (
    "card-001", "card-007", "card-049", "card-groups-04", "card-full-03", "ssn-01",
    "hand-email-underscore", "phone-us-07", "dob-03", "hand-verify-three", "card-048",
    "ssn-07", "iban-01", "routing-03", "hand-pay-bill", "hand-email-dash", "phone-uk-04",
    "card-garbled-02", "email-06", "ssn-last4-02",
)
CLEAN_ITEMS = (
    "hand-clean-02", "clean-price-06", "clean-time-of-day-03", "clean-quantity-02",
    "clean-twenty-four-seven-02", "hand-clean-13", "clean-year-03", "clean-order-number-05",
    "clean-flight-02", "clean-zip-code-04", "hand-clean-19", "clean-agent-statement-02",
)


def selection(items: Sequence[CorpusItem], count: int) -> tuple[list[CorpusItem],
                                                                   list[CorpusItem]]:
    """The first ``count`` of the subset, two PII items for each PII-free one."""
    by_id = {i.id: i for i in items}
    n_clean = max(1, count // 3)
    return ([by_id[i] for i in PII_ITEMS[:count - n_clean]],
            [by_id[i] for i in CLEAN_ITEMS[:n_clean]])


# --------------------------------------------------------------------------- what is said
def _say_digits(match: re.Match[str]) -> str:
    return " ".join("oh" if d == "0" else DIGIT_WORDS[int(d)] for d in match.group(0))


def speakable(label: Label) -> str:
    """How a caller says the label's surface."""
    text = label.surface
    if label.entity in ("dob", "expiry"):
        return text
    if label.entity == "email":
        for symbol, word in (("@", " at "), (".", " dot "), ("_", " underscore "),
                             ("-", " dash ")):
            text = text.replace(symbol, word)
    else:
        text = re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", text)
        text = re.sub(r"[A-Z]{2,}", lambda m: " ".join(m.group(0)), text)
        text = re.sub(r"(?<=\d)[-/. ](?=\d)", ", ", text).replace("(", "").replace(")", ",")
    text = re.sub(r"\d+", _say_digits, text)
    return re.sub(r"\s+", " ", text).strip()


def spoken_text(item: CorpusItem, turn: int) -> str:
    text = item.turns[turn].text
    for label in item.labels_of(turn):
        text = text.replace(label.surface, speakable(label), 1)
    return text


# --------------------------------------------------------------------------- the two tracks
@dataclass(frozen=True, slots=True)
class Placed:
    item: int
    turn: int
    channel: str
    start_s: float       # speech, seconds from packet 0
    end_s: float


@dataclass(frozen=True, slots=True)
class Conversation:
    items: tuple[CorpusItem, ...]
    agent: npt.NDArray[np.int16]
    customer: npt.NDArray[np.int16]
    placed: tuple[Placed, ...]


def build_conversation(items: Sequence[CorpusItem], voice: dict[str, Utterance]
                       ) -> Conversation:
    pieces: list[tuple[str, int, Utterance]] = []
    placed: list[Placed] = []
    cursor = LEAD_S
    for i, item in enumerate(items):
        for k, turn in enumerate(item.turns):
            u = voice[spoken_text(item, k)]
            at = int(cursor * RATE_HZ)
            pieces.append((turn.channel, at, u))
            placed.append(Placed(i, k, turn.channel, cursor + u.speech_start_s,
                                 cursor + u.speech_end_s))
            cursor = at / RATE_HZ + u.duration_s + TURN_GAP_S
        cursor += ITEM_GAP_S - TURN_GAP_S
    total = int((cursor + TAIL_S) * RATE_HZ)
    tracks = {"agent": np.zeros(total, np.int16), "customer": np.zeros(total, np.int16)}
    for channel, at, u in pieces:
        tracks[channel][at:at + len(u.pcm)] = u.pcm
    return Conversation(tuple(items), tracks["agent"], tracks["customer"], tuple(placed))


# --------------------------------------------------------------------------- the calls
@dataclass(slots=True)
class Leg:
    call: RawCall
    call_id: str | None
    channel: str


def _leg(gw: GatewayProcess, conversation_id: str, channel: str) -> Leg:
    headers = f"X-Conversation-Id: {conversation_id}\r\n"
    if channel == "agent":
        headers += "X-Leg: agent\r\n"
    call = RawCall(gw.sip_port, headers=headers)
    call.setup()
    try:
        answered = gw.wait_log("call.answered", ANSWER_TIMEOUT_S,
                               lambda e: e.get("sip_call_id") == call.sip_call_id)
        return Leg(call, str(answered["call_id"]), channel)
    except AssertionError:
        return Leg(call, None, channel)


def _finals_settled(gw: GatewayProcess) -> None:
    """Until no new final has come for a few seconds (bounded)."""
    deadline, count, quiet_since = time.monotonic() + FINALS_SETTLE_S, -1, time.monotonic()
    while time.monotonic() < deadline:
        now_count = len(gw.events("transcript.final"))
        if now_count != count:
            count, quiet_since = now_count, time.monotonic()
        elif time.monotonic() - quiet_since > 5.0:
            return
        time.sleep(0.3)


def place_and_play(gw: GatewayProcess, conversations: Sequence[Conversation]
                   ) -> tuple[list[list[Leg]], float]:
    legs: list[list[Leg]] = []
    try:
        for n, _conv in enumerate(conversations):
            cid = f"redaction-bench-{n}-{int(time.time())}"
            legs.append([_leg(gw, cid, "agent"), _leg(gw, cid, "customer")])
        streams = []
        for n, (conv, (agent, customer)) in enumerate(zip(conversations, legs, strict=True)):
            streams.append(Stream(agent.call, rtp_packets(conv.agent, 0x2000 + 2 * n)))
            streams.append(Stream(customer.call, rtp_packets(conv.customer, 0x2001 + 2 * n)))
        wall0 = play(streams)
        _finals_settled(gw)
        for pair in legs:
            for leg in pair:
                leg.call.hangup()
        for pair in legs:
            for leg in pair:
                if leg.call_id is not None:
                    _wait_ended(gw, leg.call_id)
        return legs, wall0
    finally:
        for pair in legs:
            for leg in pair:
                leg.call.close()


def _wait_ended(gw: GatewayProcess, call_id: str) -> None:
    try:
        gw.wait_log("call.ended", ENDED_TIMEOUT_S, lambda e: e.get("call_id") == call_id)
    except AssertionError:
        pass


# --------------------------------------------------------------------------- matching
def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _nearest(placed: Sequence[Placed], channel: str, start: float, end: float,
             offset: float) -> Placed | None:
    mine = [p for p in placed if p.channel == channel]
    if not mine:
        return None
    best = max(mine, key=lambda p: (_overlap(start, end, p.start_s + offset, p.end_s + offset),
                                    -abs((p.start_s + offset) - start)))
    if _overlap(start, end, best.start_s + offset, best.end_s + offset) > 0:
        return best
    return min(mine, key=lambda p: abs((p.start_s + p.end_s) / 2 + offset - (start + end) / 2))


def estimate_offset(placed: Sequence[Placed], finals: Sequence[Event]) -> float:
    """Timeline seconds of packet 0: the median gap between each final's start and the
    start of the speech nearest it (iterated once)."""
    offset = 0.0
    for _ in range(2):
        gaps = []
        for f in finals:
            p = _nearest(placed, str(f["channel"]), float(f["start_s"]), float(f["end_s"]),
                         offset)
            if p is not None:
                gaps.append(float(f["start_s"]) - p.start_s)
        if gaps:
            offset = float(np.median(gaps))
    return offset


@dataclass(slots=True)
class TurnText:
    redacted: list[str]
    raw: list[str]
    partials: list[str]
    redaction: bool


def _texts_by_turn(conv: Conversation, finals: Sequence[Event], raw: dict[tuple[Any, ...], str],
                   partials: Sequence[Event], offset: float) -> dict[tuple[int, int], TurnText]:
    out: dict[tuple[int, int], TurnText] = {}
    for f in sorted(finals, key=lambda e: float(e["start_s"])):
        p = _nearest(conv.placed, str(f["channel"]), float(f["start_s"]), float(f["end_s"]),
                     offset)
        if p is None:
            continue
        slot = out.setdefault((p.item, p.turn), TurnText([], [], [], False))
        slot.redacted.append(str(f.get("text", "")))
        slot.raw.append(raw.get(_key(f), str(f.get("text", ""))))
        slot.redaction = slot.redaction or bool(f.get("redaction"))
    for e in partials:
        p = _nearest(conv.placed, str(e["channel"]), float(e["start_s"]), float(e["end_s"]),
                     offset)
        if p is not None and (p.item, p.turn) in out:
            out[(p.item, p.turn)].partials.append(str(e.get("text", "")))
    return out


def _key(e: Event) -> tuple[Any, ...]:
    return (e.get("call_id"), e.get("channel"), e.get("segment"))


# --------------------------------------------------------------------------- scoring
def _score_conversation(conv: Conversation, texts: dict[tuple[int, int], TurnText]
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    labels, turns = [], []
    for i, item in enumerate(conv.items):
        for k, turn in enumerate(item.turns):
            t = texts.get((i, k), TurnText([], [], [], False))
            redacted, raw = " ".join(t.redacted), " ".join(t.raw)
            turns.append({"id": item.id, "turn": k, "channel": turn.channel,
                          "said": spoken_text(item, k), "whisper": raw, "redacted": redacted,
                          "labelled": bool(item.labels_of(k)),
                          "changed": redacted.split() != raw.split() or t.redaction})
            for label in item.labels_of(k):
                labels.append({"id": item.id, "turn": k, "entity": label.entity,
                               "form": label.form, "value": label.value,
                               "heard": leaks(label.value, raw),
                               "leaked": leaks(label.value, redacted),
                               "partial_leaks": sum(leaks(label.value, p) for p in t.partials),
                               "whisper": raw, "redacted": redacted})
    return labels, turns


def _entity_table(labels: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for entity in sorted({x["entity"] for x in labels}):
        mine = [x for x in labels if x["entity"] == entity]
        heard = [x for x in mine if x["heard"]]
        leaked = sum(x["leaked"] for x in mine)
        rows.append({"entity": entity, "labels": len(mine), "heard": len(heard),
                     "leaked": leaked,
                     "recall": round(1 - leaked / len(mine), 4),
                     "recall_heard": round(1 - sum(x["leaked"] for x in heard) / len(heard), 4)
                     if heard else None,
                     "partial_leaks": sum(x["partial_leaks"] for x in mine)})
    return rows


def summarise(labels: Sequence[dict[str, Any]], turns: Sequence[dict[str, Any]],
              clean_ids: set[str]) -> dict[str, Any]:
    clean_turns = [t for t in turns if t["id"] in clean_ids]
    false = [t for t in clean_turns if t["changed"]]
    clean_items = {t["id"] for t in clean_turns}
    unchanged = len(clean_items - {t["id"] for t in false})
    collateral = [t for t in turns if t["id"] not in clean_ids and not t["labelled"]
                  and t["changed"]]
    return {
        "entities": _entity_table(labels),
        "leaks": [{"id": x["id"], "turn": x["turn"], "entity": x["entity"], "form": x["form"],
                   "surface": x["whisper"], "output": x["redacted"]}
                  for x in labels if x["leaked"]],
        "lost": [],
        "clean": {"items": len(clean_items), "unchanged": unchanged,
                  "precision": round(unchanged / len(clean_items), 4) if clean_items else None,
                  "false_redactions": [{"id": t["id"], "turn": t["turn"], "text": t["whisper"],
                                        "output": t["redacted"]} for t in false]},
        "collateral": {"unlabelled_turns_changed": len(collateral), "turns": collateral},
        "labels": list(labels), "turns": list(turns),
    }


def replay(raw_finals: Sequence[Event], config: RedactionConfig) -> list[Event]:
    """Whisper's finals of one conversation (both legs) through a fresh Redactor as ONE
    call, in arrival order: what the detectors make of real ASR text when the agent's
    questions reach the customer's channel. Each output replaces its input's text."""
    redactor = Redactor(config)
    ordered = sorted(raw_finals, key=lambda e: float(e["ts"]))
    out: list[GatewayEvent] = []
    now = 0.0
    for e in ordered:
        now = float(e["ts"])
        fire_timers(redactor, now, out)
        out += redactor.process(_final_of(e), now)
    out += redactor.process(ended_event("replay", 0.0), now + 1.0)
    done = {(f.channel, f.segment): f for f in out if isinstance(f, TranscriptFinal)}
    replayed = []
    for e in ordered:
        f = done.get((str(e["channel"]), int(e["segment"])))
        replayed.append({**e, "text": "" if f is None else f.text,
                         "redaction": None if f is None or f.redaction is None else True})
    return replayed


def _final_of(e: Event) -> TranscriptFinal:
    words = tuple(TranscriptWord(word=str(w["word"]), start_s=float(w["start_s"]),
                                 end_s=float(w["end_s"]), confidence=float(w["confidence"]))
                  for w in e.get("words", []))
    return TranscriptFinal(call_id="replay", channel=str(e["channel"]), participant=None,
                           conversation_id="replay", text=str(e["text"]),
                           segment=int(e["segment"]), start_s=float(e["start_s"]),
                           end_s=float(e["end_s"]), words=words, latency_s=None)


def read_events(path: Path, type_: str) -> list[Event]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("type") == type_:
                out.append(e)
    return out


def score_calls(convs: Sequence[Conversation], leg_ids: Sequence[set[str]], workdir: Path,
                clean_ids: set[str], config: RedactionConfig) -> dict[str, Any]:
    """Both views of the calls: what the gateway wrote, and Whisper's text replayed."""
    finals = read_events(workdir / "events.jsonl", "transcript.final")
    partials = read_events(workdir / "events.jsonl", "transcript.partial")
    raw_finals = read_events(workdir / "raw-events.jsonl", "transcript.final")
    raw = {_key(e): str(e.get("text", "")) for e in raw_finals}
    views: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
        "gateway": ([], []), "whisper_text_one_call": ([], [])}
    for conv, ids in zip(convs, leg_ids, strict=True):
        mine = [f for f in finals if f.get("call_id") in ids]
        offset = estimate_offset(conv.placed, mine)
        sources = {"gateway": (mine, [p for p in partials if p.get("call_id") in ids]),
                   "whisper_text_one_call": (
                       replay([f for f in raw_finals if f.get("call_id") in ids], config), [])}
        for view, (got, got_partials) in sources.items():
            by_turn = _texts_by_turn(conv, got, raw, got_partials, offset)
            labels, turns = _score_conversation(conv, by_turn)
            views[view][0].extend(labels)
            views[view][1].extend(turns)
    return {view: summarise(labels, turns, clean_ids) for view, (labels, turns) in views.items()}


def _gateway_extra(params: RedactionParams, workdir: Path) -> dict[str, Any]:
    return {
        "triton": {"asr_model": params.model, "final_timeout_s": 60.0, "buffer_s": 120.0},
        "events": {"sinks": [{"type": "log"},
                             {"type": "jsonl", "path": str(workdir / "events.jsonl")},
                             {"type": "jsonl", "raw": True,
                              "path": str(workdir / "raw-events.jsonl")}]},
        "redaction": {"custom": [{"name": p.name, "pattern": p.pattern, "tag": p.tag}
                                 for p in custom_patterns()]},
    }


def run_calls_mode(params: RedactionParams, workdir: Path, document: dict[str, Any]
                   ) -> dict[str, Any]:
    items = load()
    pii, clean = selection(items, params.call_items)
    texts = sorted({spoken_text(i, k) for i in (*pii, *clean) for k in range(len(i.turns))})
    voice = dict(zip(texts, utterances(tuple(texts)), strict=True))
    convs = [build_conversation(pii, voice), build_conversation(clean, voice)]
    with stack.triton([params.model], workdir / "triton") as server:
        document["environment"] = report.environment(server.http_url)
        with stack.gateway(workdir / "gw-redaction", server.grpc_url, max_calls=10,
                           extra=_gateway_extra(params, workdir)) as gw:
            legs, _wall0 = place_and_play(gw, convs)
    leg_ids = [{leg.call_id for leg in pair if leg.call_id is not None} for pair in legs]
    result = score_calls(convs, leg_ids, workdir, {i.id for i in clean}, redaction_config())
    result.update({"items": len(pii) + len(clean), "pii_items": len(pii),
                   "clean_items": len(clean), "customer_turns": sum(
                       t.channel == "customer" for i in (*pii, *clean) for t in i.turns),
                   "calls_failed": sum(leg.call_id is None for pair in legs for leg in pair),
                   "model": params.model})
    return result
