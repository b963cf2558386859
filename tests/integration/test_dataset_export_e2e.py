"""The training-set export end to end (issue 19), on stored material the daemon made:
three real two-leg conversations (raw SIP and paced RTP from this test, a piper voice on
both sides, Whisper ``asr_cpu_default`` on the shared Triton), recorded (WAV, redacted
spans as the 1 kHz tone), each with its summary document; then ``asr-gateway
export-dataset`` as a subprocess.

- ``card``: both legs send ``X-Consent: yes`` (the consent header: a grant per channel),
  the agent an ``X-Agent-Id``; the customer reads a card number (redacted: a ``[CARD]``
  tag word in the document, the tone in the recording), then more speech after a short
  pause;
- ``refused``: no consent header (nothing may be exported);
- ``later``: consent on both legs, withdrawn after the first export
  (``asr-gateway consent withdraw``): excluded from the next.

Checked on the exports: consent gating and withdrawal; segments at most 30 s, shorter
than 10 s only where no same-channel speech was near enough to merge; each segment's text
is exactly the document's words inside its times; no surface form of the card (nor the
agent id, names, numbers, real conversation ids) in any exported text, manifest or card;
in the ``tone`` export the tag's audio is the recorder's tone, in the ``drop`` export no
segment holds a tag or covers the card's span; splits disjoint by conversation and by
speaker; audio 16 kHz mono, its length the manifest's ``duration``.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile  # type: ignore[import-untyped]

from gateway.dataset.normalize import normalize
from gateway.dataset.speakers import hashed_id
from gateway.triton_launcher import TritonProcess
from tests.gateway_proc import GatewayProcess, base_config, merge
from tests.integration.test_media import Caller
from tests.media_tools import RATE, packets
from tests.redaction_corpus.leaks import leaks
from tests.speech import piper_wavs, read_pcm

pytestmark = pytest.mark.slow

CARD = "4539148803436467"          # Visa test PAN, Luhn-valid
AGENT_ID = "agent-4711"
CONVERSATIONS: dict[str, tuple[tuple[str, str, float], ...]] = {
    # (channel, text, silence after it)
    "card": (
        ("agent", "Thank you for calling Acme. Can I have your card number, please?", 1.5),
        ("customer", "Sure. It is four five three nine, one four eight eight, zero three "
                     "four three, six four six seven.", 0.8),
        ("customer", "And please send the receipt to my home address.", 1.5),
        ("agent", "Thank you, the payment of forty dollars is done. Goodbye.", 1.5)),
    "refused": (
        ("agent", "Good morning, how can I help you today?", 1.5),
        ("customer", "I would like to change my delivery date.", 1.5)),
    "later": (
        ("agent", "Hello, you are through to the billing team.", 1.5),
        ("customer", "Hi, I have a question about my last invoice.", 1.5)),
}
HEADERS = {"card": ("X-Consent: yes\r\n", f"X-Agent-Id: {AGENT_ID}\r\n"),
           "refused": ("", ""), "later": ("X-Consent: yes\r\n", "")}
MIN_S, MAX_S, MAX_GAP_S = 10.0, 30.0, 2.0     # the exporter's defaults (SegmentRules)
TONE_HZ = 1000.0
RTP_RANGE = (51600, 51698)  # outside the ranges tests/conftest.py hands out
LEAD_S, TRAILING_S = 0.5, 2.5
Pcm = npt.NDArray[np.int16]


# ------------------------------------------------------------------ the calls
def _silence(seconds: float) -> Pcm:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def _sides(turns: tuple[tuple[str, str, float], ...], speech: list[Pcm]) -> tuple[Pcm, Pcm]:
    sides: dict[str, list[Pcm]] = {"agent": [_silence(LEAD_S)], "customer": [_silence(LEAD_S)]}
    for (channel, _text, gap), pcm in zip(turns, speech, strict=True):
        other = "customer" if channel == "agent" else "agent"
        sides[channel] += [pcm, _silence(gap)]
        sides[other].append(_silence(len(pcm) / RATE + gap))
    for side in sides.values():
        side.append(_silence(TRAILING_S))
    return np.concatenate(sides["agent"]), np.concatenate(sides["customer"])


def _talk(agent: Caller, customer: Caller, a: Pcm, c: Pcm) -> None:
    streams = (packets(a, "PCMU", ssrc=0xA2), packets(c, "PCMU", ssrc=0xC2))
    start = time.monotonic()
    for i, (pa, pc) in enumerate(zip(*streams, strict=True)):
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        agent.rtp.sendto(pa, agent.gw_rtp)
        customer.rtp.sendto(pc, customer.gw_rtp)


@dataclass
class Stored:
    gw: GatewayProcess
    conversations: dict[str, str]           # name -> conversation_id
    documents: dict[str, dict[str, Any]]    # name -> summary document
    since: str
    until: str

    @property
    def state_dir(self) -> Path:
        return Path(self.gw.config["storage"]["state_dir"])

    def salt(self) -> bytes:
        return (self.state_dir / "dataset_salt").read_bytes()

    def export(self, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "export-dataset", "--config",
             str(self.gw.config_path), "--since", self.since, "--until", self.until,
             "--out", str(out), *extra], capture_output=True, text=True, timeout=300)


def _config(triton_url: str) -> dict[str, Any]:
    return {"triton": {"url": triton_url, "asr_model": "asr_cpu_default", "buffer_s": 60.0},
            "tts": {"enabled": False},
            "storage": {"record": True, "recording_format": "wav"},
            "redaction": {"audio": "tone"},
            "channels": {"rules": [{"match": "header", "header": "X-Leg",
                                    "pattern": "^agent$", "channel": "agent"}]}}


def _converse(gw: GatewayProcess, name: str, speech: list[Pcm]) -> str:
    consent, agent_id = HEADERS[name]
    agent = Caller(gw, headers=f"X-Leg: agent\r\nX-Conversation-Id: export-{name}\r\n"
                   f"{consent}{agent_id}")
    customer = Caller(gw, headers=f"X-Leg: customer\r\nX-Conversation-Id: export-{name}\r\n"
                      f"{consent}")
    _talk(agent, customer, *_sides(CONVERSATIONS[name], speech))
    customer.bye()
    agent.bye()
    ended = agent.ended(60)
    customer.ended(60)
    return str(ended["conversation_id"])


@pytest.fixture(scope="module")
def stored(triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Stored]:
    tmp = tmp_path_factory.mktemp("export_e2e")
    texts = [t for turns in CONVERSATIONS.values() for _c, t, _g in turns]
    pcm = [read_pcm(p) for p in piper_wavs(texts, tmp / "piper")]
    workdir = tmp / "gw"
    workdir.mkdir()
    gw = GatewayProcess(workdir, merge(base_config(workdir, RTP_RANGE), _config(
        triton.grpc_url)))
    now = datetime.now(UTC)
    ids: dict[str, str] = {}
    try:
        gw.start()
        gw.wait_log("triton.ready", 30)
        at = 0
        for name, turns in CONVERSATIONS.items():
            ids[name] = _converse(gw, name, pcm[at:at + len(turns)])
            at += len(turns)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(
                [e for e in gw.lines if e.get("event") == "conversation.summary_written"]
        ) < len(ids):
            time.sleep(0.2)
        assert gw.stop() == 0
    finally:
        gw.kill()
    written = [Path(e["path"]) for e in gw.lines
               if e.get("event") == "conversation.summary_written"]
    docs = {json.loads(p.read_text())["conversation_id"]: json.loads(p.read_text())
            for p in written}
    yield Stored(gw, ids, {n: docs[c] for n, c in ids.items()},
                 (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=1)).isoformat())


@pytest.fixture(scope="module")
def exports(stored: Stored, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """drop (the default) and tone, both before the withdrawal; then drop again after it."""
    tmp = tmp_path_factory.mktemp("datasets")
    out = {"drop": tmp / "drop", "tone": tmp / "tone", "after": tmp / "after"}
    for name, extra in (("drop", ()), ("tone", ("--redacted", "tone", "--audio-format",
                                                 "wav"))):
        done = stored.export(out[name], *extra)
        assert done.returncode == 0, done.stderr
    withdraw = subprocess.run(
        [sys.executable, "-m", "gateway", "consent", "withdraw", "--config",
         str(stored.gw.config_path), stored.conversations["later"], "--reason", "asked"],
        capture_output=True, text=True, timeout=60)
    assert withdraw.returncode == 0, withdraw.stdout + withdraw.stderr
    done = stored.export(out["after"])
    assert done.returncode == 0, done.stderr
    return out


# ------------------------------------------------------------------ reading an export
def _entries(out: Path) -> list[dict[str, Any]]:
    return [dict(json.loads(line), split=split) for split in ("train", "dev", "test")
            for line in (out / f"{split}_manifest.json").read_text().splitlines() if line]


def _texts(out: Path) -> list[str]:
    """Every text an export holds: manifests, HF metadata, Lhotse, review, card, summary."""
    texts = []
    for path in sorted(out.rglob("*")):
        if path.suffix in (".json", ".jsonl", ".md"):
            texts.append(path.read_text())
        elif path.name.endswith(".jsonl.gz"):
            texts.append(gzip.decompress(path.read_bytes()).decode())
    return texts


def _calls(stored: Stored, out: Path) -> set[str]:
    salt = stored.salt()
    keys = {hashed_id(salt, c): n for n, c in stored.conversations.items()}
    return {keys[e["call_id"]] for e in _entries(out)}


def _words(doc: dict[str, Any], channel: str) -> list[dict[str, Any]]:
    return sorted((w for t in doc["turns"] if t["speaker"] == channel for w in t["words"]),
                  key=lambda w: (w["start_s"], w["end_s"]))


def _doc_of(stored: Stored, entry: dict[str, Any]) -> dict[str, Any]:
    salt = stored.salt()
    (name,) = [n for n, c in stored.conversations.items()
               if hashed_id(salt, c) == entry["call_id"]]
    return stored.documents[name]


# ------------------------------------------------------------------ the checks
def test_the_material_is_real(stored: Stored) -> None:
    card = stored.documents["card"]
    tagged = [w for w in _words(card, "customer") if w["tag"] == "card"]
    assert tagged, [t["text"] for t in card["turns"]]
    assert "card" in card["redacted"] and Path(card["recording"]).is_file()
    assert {c["agent_id"] for c in card["calls"]} == {AGENT_ID, None}


def test_consent_gates_and_a_withdrawal_excludes_at_the_next_export(
        stored: Stored, exports: dict[str, Path]) -> None:
    assert _calls(stored, exports["drop"]) == {"card", "later"}
    assert _calls(stored, exports["after"]) == {"card"}
    summary = json.loads((exports["after"] / "export.json").read_text())
    assert summary["conversations"]["excluded_no_consent"] == 1
    assert summary["conversations"]["excluded_withdrawn"] == 1
    salt = stored.salt()
    gone = {hashed_id(salt, stored.conversations[n]) for n in ("refused", "later")}
    for text in _texts(exports["after"]):
        assert not any(key in text for key in gone)


def test_segment_lengths_and_text_is_exactly_the_words_inside(
        stored: Stored, exports: dict[str, Path]) -> None:
    for name in ("drop", "tone"):
        for e in _entries(exports[name]):
            doc = _doc_of(stored, e)
            words = _words(doc, e["channel"])
            inside = [w for w in words if w["start_s"] >= e["source_start_s"]
                      and w["end_s"] <= e["source_end_s"]]
            assert inside and normalize(" ".join(w["word"] for w in inside)) == e["text"], e
            assert normalize(e["text_raw"]) == e["text"]
            straddling = [w for w in words if w["start_s"] < e["source_end_s"]
                          and w["end_s"] > e["source_start_s"] and w not in inside]
            assert not straddling, (e, straddling)
            length = e["source_end_s"] - e["source_start_s"]
            assert length <= MAX_S + 1e-6
            if length < MIN_S and not (name == "drop" and e["tags"]):
                _assert_unmergeable(words, inside, name)


def _assert_unmergeable(words: list[dict[str, Any]], inside: list[dict[str, Any]],
                        policy: str) -> None:
    """A short segment: the channel's next and previous words are too far to merge (or a
    tag under drop, which is never merged, or the merge would pass max_s)."""
    first, last = inside[0], inside[-1]
    before = [w for w in words if w["end_s"] <= first["start_s"] and w not in inside]
    after = [w for w in words if w["start_s"] >= last["end_s"] and w not in inside]
    if before:
        near = before[-1]
        assert (first["start_s"] - near["end_s"] > MAX_GAP_S - 1e-6
                or last["end_s"] - near["start_s"] > MAX_S
                or (policy == "drop" and near["tag"] is not None)), (inside, near)
    if after:
        near = after[0]
        assert (near["start_s"] - last["end_s"] > MAX_GAP_S - 1e-6
                or near["end_s"] - first["start_s"] > MAX_S
                or (policy == "drop" and near["tag"] is not None)), (inside, near)


def _spoken(text: str) -> list[str]:
    """The transcript texts of a JSON-lines file (``text``, ``text_raw``, ``asr_text``)."""
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out += [str(record.get(k) or "") for k in ("text", "text_raw", "asr_text")]
            out.append(str((record.get("custom") or {}).get("text_raw") or ""))
    return out


def test_no_card_number_agent_id_name_or_real_id_in_any_export(
        stored: Stored, exports: dict[str, Path]) -> None:
    card = stored.documents["card"]
    names = {p["name"] for d in stored.documents.values() for p in d["participants"]
             if p.get("name")}
    uris = {p["uri"] for d in stored.documents.values() for p in d["participants"]
            if p.get("uri")}
    for out in exports.values():
        for text in _texts(out):
            for piece in _spoken(text):
                assert not leaks(CARD, piece), piece
            assert CARD not in text and AGENT_ID not in text
            for value in (*names, *uris, *stored.conversations.values(),
                          *(c["call_id"] for c in card["calls"])):
                assert value not in text, value
    readme = (exports["tone"] / "README.md").read_text()
    assert not leaks(CARD, " ".join(w for w in readme.split() if not w[:1].isdigit()))


def test_tone_policy_keeps_the_tone_and_drop_policy_has_no_tagged_segment(
        stored: Stored, exports: dict[str, Path]) -> None:
    card = stored.documents["card"]
    tags = [w for w in _words(card, "customer") if w["tag"] == "card"]
    tag = max(tags, key=lambda w: w["end_s"] - w["start_s"])
    tagged = [e for e in _entries(exports["tone"]) if e["tags"]]
    assert len(tagged) == 1 and set(tagged[0]["tags"]) == {"card"}   # one per tag word
    e = tagged[0]
    assert e["text_raw"].count("[CARD]") == len(e["tags"]) == e["text"].count("[card]")
    audio, rate = soundfile.read(str(exports["tone"] / e["audio_filepath"]))
    lo = round((tag["start_s"] - e["source_start_s"] + 0.1) * rate)
    hi = round((tag["end_s"] - e["source_start_s"] - 0.1) * rate)
    span = audio[lo:hi]
    assert len(span) > rate // 2, (tag, e)
    spectrum = np.abs(np.fft.rfft(span * np.hanning(len(span))))
    peak = np.fft.rfftfreq(len(span), 1 / rate)[np.argmax(spectrum)]
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(span ** 2)))
    assert abs(peak - TONE_HZ) < 20 and -26 < rms_dbfs < -20, (peak, rms_dbfs)
    for out in (exports["drop"], exports["after"]):
        for d in _entries(out):
            assert not d["tags"] and "[" not in d["text_raw"]
            if d["channel"] == "customer" and _doc_of(stored, d) is card:
                assert all(d["source_end_s"] <= t["start_s"] or d["source_start_s"] >= t[
                    "end_s"] for t in tags), (d, tags)


def test_splits_are_disjoint_by_conversation_and_speaker(exports: dict[str, Path]) -> None:
    entries = _entries(exports["drop"])
    split_of: dict[str, set[str]] = {}
    for e in entries:
        split_of.setdefault(f"call {e['call_id']}", set()).add(e["split"])
        split_of.setdefault(f"speaker {e['speaker']}", set()).add(e["split"])
    assert all(len(s) == 1 for s in split_of.values()), split_of
    assert len({e["split"] for e in entries}) == 2         # two conversations: train, test


def test_audio_is_16k_mono_and_as_long_as_the_manifest_says(
        exports: dict[str, Path]) -> None:
    for out in exports.values():
        for e in _entries(out):
            info = soundfile.info(str(out / e["audio_filepath"]))
            assert (info.samplerate, info.channels) == (16000, 1)
            assert info.frames / 16000 == pytest.approx(e["duration"], abs=1e-3)
            assert e["duration"] == pytest.approx(e["source_end_s"] - e["source_start_s"],
                                                  abs=0.01)
