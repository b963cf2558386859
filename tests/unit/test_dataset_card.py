"""gateway.dataset.card: the Markdown dataset card."""

from __future__ import annotations

import dataclasses

from gateway.dataset.card import LICENCE_PLACEHOLDER, CardInfo, ConsentInfo, dataset_card
from gateway.dataset.model import Segment, SegmentRules
from gateway.dataset.review import CorrectionStats
from gateway.dataset.segment import SegmentStats


def seg(sid: str, conv: str, channel: str, seconds: float, *,
        verified: bool = False) -> Segment:
    return Segment(sid, conv, channel, f"{channel}-{conv}", 0.0, seconds, (), "hello",
                   "hello", 0.8, (), verified)


SEGMENTS = [seg("1", "c1", "agent", 1800.0), seg("2", "c1", "customer", 1800.0),
            seg("3", "c2", "customer", 3600.0, verified=True), seg("4", "c3", "agent", 720.0)]
STATS = SegmentStats(kept=4, kept_short=1, kept_s=7920.0, dropped={"redacted": 2,
                     "too_short": 3}, redacted_dropped={"card": 2}, redacted_kept={})
INFO = CardInfo(
    gateway_version="1.2.3", created_at="2026-12-03T12:00:00Z", since="2026-11-01",
    until="2026-12-01", segments=SEGMENTS, splits={"c1": "train", "c2": "train", "c3": "test"},
    consent=ConsentInfo(purposes=("asr-training",), policy_versions=("v2",), consented=3,
                        excluded=5, withdrawn=1),
    rules=SegmentRules(), stats=STATS, source_rate_hz=8000,
    split_warnings=("dev is empty: 3 conversations in 3 speaker groups",),
    corrections=CorrectionStats(fixed=2, ok=1, rejected=1, unknown=4),
    known_gaps=("Customer voices are synthetic (piper, flite).",))


def test_card_sections_and_numbers() -> None:
    card = dataset_card(INFO)
    for heading in ("# Call-centre speech", "## Consent basis", "## Contents", "## Segments",
                    "## Redaction", "## Labels", "## Known gaps and biases", "## Licence"):
        assert heading in card
    assert "asr-gateway 1.2.3" in card and "from 2026-11-01 to 2026-12-01" in card
    assert "Purposes: asr-training" in card and "Policy versions: v2" in card
    assert "exported (consented): 3" in card and "Excluded (no consent): 5" in card
    assert "Withdrawn (removed): 1" in card
    assert "| train | agent | 1 | 0.50 | 1 | 1 |" in card
    assert "| train | customer | 2 | 1.50 | 2 | 2 |" in card
    assert "| train | all | 3 | 2.00 | 2 | 3 |" in card
    assert "| dev | all | 0 | 0.00 | 0 | 0 |" in card
    assert "| test | agent | 1 | 0.20 | 1 | 1 |" in card
    assert "| all | all | 4 | 2.20 | 3 | 4 |" in card
    assert "10-30 s" in card and "| card | 2 | 0 |" in card
    assert "dropped by reason: redacted 2, too_short 3" in card
    assert "1 of 4 segments were checked by a person" in card
    assert "2 fixed, 1 confirmed, 1 rejected, 4 for segments not in this export" in card
    assert LICENCE_PLACEHOLDER in card and card.endswith("\n")


def test_known_gaps_found_and_given() -> None:
    gaps = dataset_card(INFO).split("## Known gaps and biases")[1].split("## Licence")[0]
    assert "3 segments have ASR-generated labels not verified" in gaps
    assert "Telephone-band audio (recorded at 8000 Hz" in gaps
    assert "Channel imbalance: agent 0.70 h, customer 1.50 h." in gaps
    assert "Only 4 distinct speakers" in gaps
    assert "dev is empty" in gaps and "synthetic (piper, flite)" in gaps
    assert "under-represented" in gaps


def test_a_balanced_verified_card_reports_no_gaps() -> None:
    segments = [seg(str(i), f"c{i}", ("agent", "customer")[i % 2], 600.0, verified=True)
                for i in range(20)]
    info = dataclasses.replace(INFO, segments=segments, split_warnings=(), known_gaps=(),
                               source_rate_hz=16000, stats=SegmentStats(kept=20),
                               rules=SegmentRules(redacted="tone"))
    card = dataset_card(info)
    assert "- none found" in card and "Channel imbalance" not in card
    assert "tags kept" not in card and "No redacted spans" in card
    assert "1 kHz tone" in card


def test_one_channel_only_is_reported() -> None:
    info = dataclasses.replace(INFO, segments=[s for s in SEGMENTS if s.channel == "agent"])
    assert "Only the agent channel is present." in dataset_card(info)
