"""gateway.dataset.sources: documents in a time window, their recordings and channel
layout, consent, utterances with pseudonymous speakers, the salt."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.consent.policy import ConsentRecord
from gateway.consent.store import ConsentStore
from gateway.dataset.sources import (
    ConsentReader,
    Source,
    channel_columns,
    find_conversations,
    load_salt,
    parse_time,
    speaker_identities,
    utterances_of,
)
from gateway.dataset.speakers import hashed_id
from tests.speech import write_wav

SALT = b"0123456789abcdef0123456789abcdef"
DAY = datetime(2026, 12, 1, tzinfo=UTC)
T0 = DAY.timestamp()


def _words(text: str, start: float, tag_at: int | None = None) -> list[dict[str, Any]]:
    out = []
    for i, w in enumerate(text.split()):
        out.append({"word": w, "start_s": round(start + 0.4 * i, 3),
                    "end_s": round(start + 0.4 * i + 0.3, 3), "confidence": 0.9,
                    "tag": "card" if i == tag_at else None})
    return out


def doc(conversation_id: str, started_at: float, recording: str | None,
        **extra: Any) -> dict[str, Any]:
    turns = [
        {"speaker": "agent", "start_s": 0.5, "end_s": 1.8, "text": "how can I help",
         "confidence": 0.9, "call_id": "c-a", "segment": 0, "redacted": [],
         "words": _words("how can I help", 0.5)},
        {"speaker": "customer", "start_s": 2.0, "end_s": 3.3, "text": "my card is [CARD]",
         "confidence": 0.8, "call_id": "c-c", "segment": 0, "redacted": ["card"],
         "words": _words("my card is [CARD]", 2.0, tag_at=3)},
    ]
    base = {"conversation_id": conversation_id, "started_at": started_at,
            "ended_at": started_at + 5, "duration_s": 5.0,
            "calls": [{"call_id": "c-a", "channels": ["agent"], "from": "sip:sam@pbx",
                       "agent_id": None},
                      {"call_id": "c-c", "channels": ["customer"],
                       "from": "sip:+15551234567@trunk", "agent_id": None}],
            "participants": [], "channels": ["agent", "customer"], "turns": turns,
            "recording": recording}
    base.update(extra)
    return base


def _stored(tmp: Path, name: str, started_at: float, *, channels: int = 2,
            **extra: Any) -> Path:
    rec = tmp / f"{name}.wav"
    pcm = np.zeros((8000 * 5, channels), dtype=np.int16)
    _write_multi(rec, pcm)
    path = tmp / f"{name}.summary.json"
    path.write_text(json.dumps(doc(name, started_at, str(rec), **extra)))
    return path


def _write_multi(path: Path, pcm: np.ndarray) -> None:
    import wave
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.astype("<i2").tobytes())


def test_times_are_iso_8601_utc_unless_zoned() -> None:
    assert parse_time("2026-12-01") == DAY
    assert parse_time("2026-12-01T10:00:00+01:00").timestamp() == T0 + 9 * 3600
    assert parse_time("2026-12-01T09:00Z").timestamp() == T0 + 9 * 3600
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("yesterday")


def test_documents_in_the_window_with_their_recordings(tmp_path: Path) -> None:
    _stored(tmp_path, "before", T0 - 1)
    _stored(tmp_path, "first", T0)
    _stored(tmp_path, "second", T0 + 3600)
    _stored(tmp_path, "at-until", T0 + 86400)
    found, problems = find_conversations([(tmp_path, False)], DAY,
                                         parse_time("2026-12-02"))
    assert [s.conversation_id for s in found] == ["first", "second"]
    assert found[0].recording == tmp_path / "first.wav" and not problems


def test_bad_documents_and_missing_recordings_are_problems_not_crashes(
        tmp_path: Path) -> None:
    _stored(tmp_path, "good", T0 + 1)
    (tmp_path / "broken.summary.json").write_text("{not json")
    (tmp_path / "other.summary.json").write_text(json.dumps({"x": 1}))
    gone = _stored(tmp_path, "gone", T0 + 2)
    (tmp_path / "gone.wav").unlink()
    found, problems = find_conversations([(tmp_path, False), (tmp_path / "nope", True)],
                                         DAY, parse_time("2026-12-02"))
    assert [s.conversation_id for s in found] == ["good"]
    reasons = {p.path.name: p.reason for p in problems}
    assert reasons["broken.summary.json"].startswith("not JSON")
    assert "no conversation_id" in reasons["other.summary.json"]
    assert "recording is missing" in reasons[gone.name]
    assert reasons["nope"] == "not a directory"


def test_a_moved_recording_is_found_beside_its_document(tmp_path: Path) -> None:
    path = _stored(tmp_path, "moved", T0 + 5)
    data = json.loads(path.read_text())
    data["recording"] = "/var/lib/elsewhere/moved.wav"
    path.write_text(json.dumps(data))
    (found,), _ = find_conversations([(tmp_path, False)], DAY, parse_time("2026-12-02"))
    assert found.recording == tmp_path / "moved.wav"


def test_batch_documents_count_only_in_source_trees(tmp_path: Path) -> None:
    audio = tmp_path / "calls" / "a.wav"
    audio.parent.mkdir()
    write_wav(audio, np.zeros(8000, dtype=np.int16))
    batch = doc("batch-1", T0 + 10, "calls/a.wav",
                calls=[{"call_id": "f", "channels": ["customer"], "from": "file:a.wav"}])
    (tmp_path / "calls" / "a.wav.json").write_text(json.dumps(batch))
    window = (DAY, parse_time("2026-12-02"))
    assert find_conversations([(tmp_path, False)], *window)[0] == []
    (found,), problems = find_conversations([(tmp_path, True)], *window)
    assert found.recording == audio and not problems
    assert channel_columns(found, 1) == {"customer": 0}


def _source(d: dict[str, Any]) -> Source:
    return Source(Path("x.summary.json"), d, d["conversation_id"], d["started_at"],
                  Path("x.wav"))


def test_channel_layout_of_live_batch_and_mono_files() -> None:
    live = _source(doc("c", T0, None))
    assert channel_columns(live, 2) == {"agent": 0, "customer": 1}
    swapped = _source(doc("c", T0, None, calls=[
        {"call_id": "f", "channels": ["customer", "agent"], "from": "file:x.wav"}]))
    assert channel_columns(swapped, 2) == {"customer": 0, "agent": 1}
    mono = doc("c", T0, None)
    mono["turns"] = [t for t in mono["turns"] if t["speaker"] == "agent"]
    assert channel_columns(_source(mono), 1) == {"agent": 0}
    assert channel_columns(live, 1) == {}          # two speakers in a mono live file: no


def test_speakers_are_pseudonyms_the_agent_id_ties_an_agent_across_calls() -> None:
    with_id = doc("c1", T0, None, calls=[
        {"call_id": "c-a", "channels": ["agent"], "from": "sip:sam@pbx", "agent_id": "A-7"}])
    other = doc("c2", T0, None, calls=[
        {"call_id": "c-x", "channels": ["agent"], "from": "sip:sam@pbx", "agent_id": "A-7"}])
    assert speaker_identities(with_id)["agent"] == speaker_identities(other)["agent"]
    assert speaker_identities(with_id)["customer"] != speaker_identities(other)["customer"]
    plain = speaker_identities(doc("c3", T0, None))
    assert plain["agent"] != speaker_identities(doc("c4", T0, None))["agent"]


def test_utterances_keep_word_times_and_tags_and_no_identity() -> None:
    d = doc("conv-9", T0, None)
    d["turns"].append({"speaker": "agent", "start_s": 4.0, "end_s": 4.5, "text": "old",
                       "confidence": None, "call_id": "c-a", "segment": 1, "redacted": []})
    utts, no_words = utterances_of(_source(d), frozenset({"agent", "customer"}), SALT)
    assert no_words == 1 and len(utts) == 2
    customer = utts[1]
    assert customer.conversation_id == hashed_id(SALT, "conv-9")
    assert customer.speaker.startswith("customer-") and "conv-9" not in customer.speaker
    assert [w.tag for w in customer.words] == [None, None, None, "card"]
    assert customer.words[3].start_s == 3.2
    only_agent, _ = utterances_of(_source(d), frozenset({"agent"}), SALT)
    assert [u.channel for u in only_agent] == ["agent"]


def test_the_salt_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "dataset_salt"
    salt = load_salt(path)
    assert len(salt) == 32 and load_salt(path) == salt
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _grant(store: ConsentStore, conversation: str, channel: str, granted: bool = True,
           purpose: str = "asr_training") -> None:
    store.record(ConsentRecord(conversation_id=conversation, call_id=f"{conversation}-call",
                               channel=channel, granted=granted, purpose=purpose,
                               source="cli", at=T0, policy_version="1", evidence="test"))


def test_consent_per_channel_and_purpose_and_withdrawal(tmp_path: Path) -> None:
    assert ConsentReader(tmp_path, "asr_training").consent("a").channels == frozenset()
    store = ConsentStore.for_state_dir(tmp_path)
    _grant(store, "a", "customer")
    _grant(store, "a", "agent")
    _grant(store, "b", "agent", purpose="analytics")
    _grant(store, "c", "customer", granted=False)
    _grant(store, "w", "customer")
    store.withdraw(conversation_id="w", reason="asked", at=T0 + 1, source="cli")
    store.close()
    reader = ConsentReader(tmp_path, "asr_training")
    try:
        assert reader.consent("a").channels == {"agent", "customer"}
        assert reader.consent("b").channels == frozenset()
        assert reader.consent("c").channels == frozenset()
        w = reader.consent("w")
        assert w.withdrawn and w.channels == frozenset()
        assert not reader.consent("a").withdrawn
    finally:
        reader.close()
