"""``asr-gateway export-dataset`` as a subprocess on stored material made here (no ASR):
summary documents with word times beside stereo 8 kHz recordings, a consent store.

The recordings hold a distinct tone per word (so a segment's audio can be checked against
its words) and the recorder's 1 kHz mask tone at the card span. Checked: consent gating
(per conversation, per channel, withdrawal), a corrupt recording failing alone (exit 1),
usage errors (exit 2: --out not empty, bad times), the output layout and formats, audio
16 kHz mono with the manifest's durations, the drop/tone policies, corrections applied by
the next export, and the same inputs giving the same ids and bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile  # type: ignore[import-untyped]

from gateway.consent.policy import ConsentRecord
from gateway.consent.store import ConsentStore

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC).timestamp()
RATE = 8000
MASK_HZ = 1000.0
WINDOW = ("--since", "2026-12-01", "--until", "2026-12-02")
IDS = ("conv-both-a1", "conv-customer-only-b2", "conv-none-c3", "conv-withdrawn-d4",
       "conv-corrupt-e5")


def _sentence(channel: str, start: float, n: int, *, tag_at: int | None = None
              ) -> dict[str, Any]:
    words = []
    for i in range(n):
        s = round(start + 0.5 * i, 3)
        tagged = i == tag_at
        words.append({"word": "[CARD]" if tagged else f"{channel[:1]}word{i}",
                      "start_s": s, "end_s": round(s + (1.2 if tagged else 0.35), 3),
                      "confidence": 0.5 + 0.04 * i, "tag": "card" if tagged else None})
        if tagged:
            start += 0.9
    text = " ".join(str(w["word"]) for w in words)
    return {"speaker": channel, "start_s": words[0]["start_s"], "end_s": words[-1]["end_s"],
            "text": text, "confidence": 0.7, "call_id": f"call-{channel}", "segment": 0,
            "redacted": ["card"] if tag_at is not None else [], "words": words}


def _turns() -> list[dict[str, Any]]:
    return [_sentence("agent", 0.5, 12), _sentence("customer", 7.5, 10, tag_at=4),
            _sentence("agent", 14.0, 24), _sentence("customer", 27.0, 8)]


def _tone(freq: float, n: int, amp: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / RATE)


def _recording(path: Path, turns: list[dict[str, Any]], seconds: float) -> None:
    audio = np.zeros((round(seconds * RATE), 2))
    for turn in turns:
        col = 0 if turn["speaker"] == "agent" else 1
        for i, w in enumerate(turn["words"]):
            lo, hi = round(w["start_s"] * RATE), round(w["end_s"] * RATE)
            freq = MASK_HZ if w["tag"] else 300.0 + 40 * i
            audio[lo:hi, col] = _tone(freq, hi - lo, 0.1 if w["tag"] else 0.3)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes((audio * 32767).astype("<i2").tobytes())


def _conversation(recordings: Path, cid: str, started: float, *,
                  agent_id: str | None = None) -> Path:
    turns = _turns()
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%d-%H%M%S")
    rec = recordings / f"{stamp}-{cid}.wav"
    _recording(rec, turns, 34.0)
    doc = {"conversation_id": cid, "started_at": started, "ended_at": started + 34,
           "duration_s": 34.0,
           "calls": [{"call_id": "call-agent", "sip_call_id": "x", "channels": ["agent"],
                      "from": "sip:sam@pbx.example.com", "to": "sip:asr@gw",
                      "answered": True, "duration_s": 34, "reason": "bye",
                      "agent_id": agent_id},
                     {"call_id": "call-customer", "sip_call_id": "y",
                      "channels": ["customer"], "from": "sip:+442071234567@trunk",
                      "to": "sip:asr@gw", "answered": True, "duration_s": 34,
                      "reason": "bye", "agent_id": None}],
           "participants": [{"channel": "agent", "call_id": "call-agent", "name": "Sam",
                             "uri": "sip:sam@pbx.example.com", "participant_id": None}],
           "channels": ["agent", "customer"], "turns": turns, "redacted": ["card"],
           "asr_complete": True, "recording": str(rec)}
    path = rec.with_name(rec.stem + ".summary.json")
    path.write_text(json.dumps(doc))
    return path


def _grant(store: ConsentStore, cid: str, channel: str) -> None:
    store.record(ConsentRecord(conversation_id=cid, call_id=f"call-{channel}",
                               channel=channel, granted=True, purpose="asr_training",
                               source="header:X-Consent", at=T0, policy_version="2",
                               evidence="X-Consent: yes"))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return make_state(tmp_path)


def make_state(tmp_path: Path) -> Path:
    """A state dir (and ``gateway.toml`` beside it): conversations with consent for both
    channels / the customer only / none / withdrawn / a corrupt recording (tests/nemo
    makes its material with this too)."""
    state = tmp_path / "state"
    recordings = state / "recordings"
    recordings.mkdir(parents=True)
    store = ConsentStore.for_state_dir(state)
    for n, cid in enumerate(IDS):
        _conversation(recordings, cid, T0 + 60 * n, agent_id="A-1" if n < 2 else None)
        if cid != "conv-none-c3":
            _grant(store, cid, "customer")
        if cid in ("conv-both-a1", "conv-withdrawn-d4", "conv-corrupt-e5"):
            _grant(store, cid, "agent")
    store.withdraw(conversation_id="conv-withdrawn-d4", reason="asked", at=T0 + 900,
                   source="cli")
    store.close()
    (corrupt,) = recordings.glob("*-conv-corrupt-e5.wav")
    corrupt.write_bytes(corrupt.read_bytes()[:30])
    (tmp_path / "gateway.toml").write_text(f'[storage]\nstate_dir = "{state}"\n')
    return state


def export(state: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "gateway", "export-dataset", "--config",
           str(state.parent / "gateway.toml"), *WINDOW, "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def _lines(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _manifest(out: Path) -> list[dict[str, Any]]:
    return [dict(e, split=s) for s in ("train", "dev", "test")
            for e in _lines(out / f"{s}_manifest.json")]


def test_consent_gates_conversations_and_channels_and_a_bad_file_fails_alone(
        state: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    done = export(state, out)
    assert done.returncode == 1, done.stderr
    assert "conv-corrupt-e5.wav: bad recording" in done.stderr
    summary = json.loads((out / "export.json").read_text())
    assert summary["conversations"] == {"found": 5, "exported": 2, "excluded_no_consent": 1,
                                        "excluded_withdrawn": 1, "failed": 1}
    assert summary["channels_without_consent"] == 1
    entries = _manifest(out)
    calls = {e["call_id"] for e in entries}
    assert len(calls) == 2
    by_call = {c: {e["channel"] for e in entries if e["call_id"] == c} for c in calls}
    assert sorted(map(sorted, by_call.values())) == [["agent", "customer"], ["customer"]]
    blob = "".join(p.read_text(errors="replace") for p in out.rglob("*")
                   if p.is_file() and p.suffix in (".json", ".jsonl", ".md"))
    for secret in (*IDS, "Sam", "442071234567", "A-1", "call-agent"):
        assert secret not in blob, secret


def test_layout_formats_audio_and_the_drop_policy(state: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    export(state, out)
    entries = _manifest(out)
    assert entries and all(not e["tags"] and "[" not in e["text_raw"] for e in entries)
    for e in entries:
        path = out / e["audio_filepath"]
        assert e["audio_filepath"] == f"{e['split']}/{e['segment_id']}.flac"
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames / 16000 == pytest.approx(e["duration"], abs=1e-3)
        assert e["duration"] <= 30.0 and e["text"] == e["text"].lower()
        assert e["speaker"].startswith(e["channel"] + "-")
    splits: dict[str, str] = {}
    for e in entries:
        assert splits.setdefault(e["call_id"], e["split"]) == e["split"]
    speakers: dict[str, set[str]] = {}
    for e in entries:
        speakers.setdefault(e["speaker"], set()).add(e["split"])
    assert all(len(s) == 1 for s in speakers.values()), speakers
    for split in {e["split"] for e in entries}:
        recs = _lines(out / "lhotse" / f"recordings_{split}.jsonl.gz")
        sups = _lines(out / "lhotse" / f"supervisions_{split}.jsonl.gz")
        meta = _lines(out / split / "metadata.jsonl")
        mine = [e for e in entries if e["split"] == split]
        assert [r["id"] for r in recs] == [s["recording_id"] for s in sups] == [
            e["segment_id"] for e in mine]
        assert [m["file_name"] for m in meta] == [f"{e['segment_id']}.flac" for e in mine]
    card = (out / "README.md").read_text()
    assert "## Consent basis" in card and "Withdrawn (removed): 1" in card
    review = _lines(out / "review.jsonl")
    assert review and [r["confidence"] for r in review] == sorted(
        r["confidence"] for r in review)


def test_tone_policy_keeps_the_tag_and_the_mask_tone(state: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    export(state, out, "--redacted", "tone", "--audio-format", "wav")
    tagged = [e for e in _manifest(out) if e["tags"]]
    assert tagged and all(e["tags"] == ["card"] and "[CARD]" in e["text_raw"]
                          and "[card]" in e["text"] for e in tagged)
    audio, rate = soundfile.read(str(out / tagged[0]["audio_filepath"]))
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    assert abs(freqs[np.argmax(spectrum)] - MASK_HZ) < 200 or (
        spectrum[np.abs(freqs - MASK_HZ) < 5].max() > 0.2 * spectrum.max())


def test_usage_errors_exit_2(state: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "something").write_text("x")
    busy = export(state, out)
    assert busy.returncode == 2 and "not empty" in busy.stderr
    assert (out / "something").exists()
    bad = export(state, tmp_path / "other", "--since", "soon")
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr
    typo = export(state, tmp_path / "other", "--source", str(tmp_path / "nowhere"))
    assert typo.returncode == 2 and "not a directory" in typo.stderr
    assert not (tmp_path / "other").exists()


def _digests(out: Path) -> dict[str, str]:
    """Every file's hash; the Lhotse recordings' absolute paths made relative first."""
    def content(p: Path) -> bytes:
        if p.name.startswith("recordings_"):
            return gzip.decompress(p.read_bytes()).replace(str(out).encode(), b"OUT")
        return p.read_bytes()
    return {str(p.relative_to(out)): hashlib.sha256(content(p)).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in (
                "README.md", "export.json")}


def test_same_inputs_same_dataset_and_corrections_apply_next_time(
        state: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    export(state, first)
    export(state, second)
    assert _digests(first) == _digests(second)
    review = _lines(first / "review.jsonl")
    fix, reject = review[0], review[1]
    fix.update(action="fix", text="corrected words here")
    reject.update(action="reject")
    (first / "corrections.jsonl").write_text("\n".join(json.dumps(r) for r in (fix, reject)))
    again = export(state, first, "--force")
    assert again.returncode == 1, again.stderr          # the corrupt file, still
    entries = {e["segment_id"]: e for e in _manifest(first)}
    assert reject["segment_id"] not in entries
    assert entries[fix["segment_id"]]["text"] == "corrected words here"
    assert entries[fix["segment_id"]]["verified"] is True
    assert (first / "corrections.jsonl").exists()
    corrections = json.loads((first / "export.json").read_text())["corrections"]
    assert (corrections["fixed"], corrections["rejected"]) == (1, 1)


def test_a_correction_typed_with_personal_data_is_not_applied(
        state: Path, tmp_path: Path) -> None:
    out = tmp_path / "a"
    export(state, out)
    review = _lines(out / "review.jsonl")
    leaky, clean = review[0], review[1]
    leaky.update(action="fix", text="my card is 4111 1111 1111 1111 thanks")
    clean.update(action="fix", text="corrected words here")
    (out / "corrections.jsonl").write_text("\n".join(json.dumps(r) for r in (leaky, clean)))
    export(state, out, "--force")
    entries = {e["segment_id"]: e for e in _manifest(out)}
    assert "4111" not in entries[leaky["segment_id"]]["text_raw"]
    assert entries[leaky["segment_id"]]["verified"] is False
    assert entries[clean["segment_id"]]["text"] == "corrected words here"
    summary = json.loads((out / "export.json").read_text())
    assert summary["corrections_refused_pii"] == [1]
    assert summary["corrections"]["fixed"] == 1
    # only the reviewer's own corrections.jsonl still holds what they typed
    assert not any("4111" in p.read_text(errors="ignore") for p in out.rglob("*")
                   if p.suffix in (".json", ".jsonl", ".md") and p.name != "corrections.jsonl")
