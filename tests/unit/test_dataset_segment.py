"""gateway.dataset.segment: utterances -> segments (bounds, merges, cuts, redaction)."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from gateway.dataset.model import Segment, SegmentRules, Utterance, Word
from gateway.dataset.normalize import normalize
from gateway.dataset.segment import SegmentStats, cut_segments, segment_id

KEY = "c0ffee0000000001"


def words(start: float, texts: str, *, step: float = 0.5, dur: float = 0.4,
          conf: float | None = 0.9) -> tuple[Word, ...]:
    """Words every ``step`` s from ``start``, each ``dur`` long; "[CARD]" gets tag card."""
    out = []
    for i, text in enumerate(texts.split()):
        tag = text.strip("[]").lower() if text.startswith("[") else None
        out.append(Word(text, round(start + i * step, 3), round(start + i * step + dur, 3),
                        conf, tag))
    return tuple(out)


def utt(ws: tuple[Word, ...], *, channel: str = "customer", speaker: str = "customer-1",
        text: str | None = None) -> Utterance:
    return Utterance("conv-1", channel, speaker, ws[0].start_s if ws else 0.0,
                     ws[-1].end_s if ws else 0.0, ws,
                     text if text is not None else " ".join(w.text for w in ws), None)


def many(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def cut(utts: list[Utterance], **rules: object) -> tuple[list[Segment], SegmentStats]:
    return cut_segments(utts, SegmentRules(**rules), conversation_key=KEY)  # type: ignore[arg-type]


def inside(utts: list[Utterance], seg: Segment) -> list[Word]:
    """Every word of the segment's channel whose times lie inside the segment."""
    return [w for u in utts if u.channel == seg.channel for w in u.words
            if w.start_s >= seg.start_s and w.end_s <= seg.end_s]


def test_one_utterance_is_one_segment_padded_with_its_own_text() -> None:
    u = utt(words(5.0, many(24)), text="W0 w1, " + many(24)[6:] + ".")
    [seg], stats = cut([u])
    assert (seg.start_s, seg.end_s) == (4.8, 17.1)      # last word 16.5-16.9
    assert seg.text == u.text and seg.text_normalized == normalize(u.text)
    assert seg.conversation == KEY and seg.speaker == "customer-1"
    assert seg.segment_id == segment_id(KEY, "customer", 5.0, 16.9)   # the words' span
    assert seg.confidence == pytest.approx(0.9)
    assert stats.kept == 1 and stats.kept_short == 0 and not stats.dropped


def test_text_falls_back_to_words_when_the_utterance_text_disagrees() -> None:
    u = utt(words(0.0, many(24)), text="something else entirely")
    [seg], _ = cut([u])
    assert seg.text == many(24)


def test_padding_is_clamped_to_neighbouring_words_and_zero() -> None:
    a = utt(words(0.1, many(22)))                       # ends 11.0
    b = utt(words(11.1, many(22)), speaker="customer-2")  # other speaker: never merged
    s1, s2 = cut([a, b])[0]
    assert s1.start_s == 0.0 and s1.end_s == 11.1 and s2.start_s == 11.0
    assert inside([a, b], s1) == list(a.words) and inside([a, b], s2) == list(b.words)


def test_close_utterances_of_a_channel_merge_up_to_max_s() -> None:
    utts = [utt(words(i * 6.0, many(10))) for i in range(7)]   # 4.9 s each, 1.1 s apart
    segs, stats = cut(utts)
    assert [len(s.words) for s in segs] == [50, 20]        # 5 fit in 30 s (0-29.1), 2 left
    assert [s.duration_s for s in segs] == [pytest.approx(29.1), pytest.approx(11.3)]
    assert segs[0].text == " ".join(u.text for u in utts[:5])
    assert stats.kept == 2 and stats.kept_short == 0
    segs, stats = cut(utts[:6])
    assert [len(s.words) for s in segs] == [50, 10]        # greedy: a short tail is kept
    assert stats.kept_short == 1


def test_no_merge_over_a_long_gap_or_across_channels() -> None:
    a = utt(words(0.0, many(24)))                            # ends 11.9
    b = utt(words(14.0, many(24)))                           # 2.1 s later: too far
    c = utt(words(12.0, many(4)), channel="agent", speaker="agent-1")
    segs, stats = cut([a, b, c])
    assert [(s.channel, len(s.words)) for s in segs] == [
        ("customer", 24), ("agent", 4), ("customer", 24)]
    assert stats.kept_short == 1    # the agent's 2 s could not be merged: kept, counted


def test_a_long_utterance_is_cut_at_its_largest_gap_between_words() -> None:
    ws = words(0.0, many(40)) + words(20.6, many(40))    # 40 s, one 0.6 s gap at 20 s
    [s1, s2], _ = cut([utt(ws)])
    assert s1.words == ws[:40] and s2.words == ws[40:]
    assert s1.end_s <= s2.start_s
    for s in (s1, s2):
        assert s.duration_s <= 30.0 and s.text == " ".join(w.text for w in s.words)


def test_a_cut_prefers_gaps_leaving_both_sides_min_s() -> None:
    ws = words(0.0, many(58)) + words(29.4, many(4))     # largest gap leaves 2 s: not taken
    segs, stats = cut([utt(ws)])
    assert [len(s.words) for s in segs] == [31, 31]       # nearest the middle of the fair
    assert all(s.duration_s >= 10.0 for s in segs) and stats.kept_short == 0


def test_a_long_internal_silence_always_splits() -> None:
    ws = words(0.0, many(24)) + words(15.0, many(24))     # 3.1 s of silence inside
    segs, _ = cut([utt(ws)])
    assert [len(s.words) for s in segs] == [24, 24]


@pytest.mark.parametrize("seed", range(8))
def test_a_word_straddling_any_cut_is_never_split(seed: int) -> None:
    rng = random.Random(seed)
    t, ws = 0.0, []
    for i in range(400):
        t += rng.choice((0.05, 0.1, 0.3, 0.8, 2.5))
        dur = rng.uniform(0.1, 0.9)
        ws.append(Word(f"w{i}", round(t, 3), round(t + dur, 3), rng.random()))
        t += dur
    u = utt(tuple(ws))
    segs, stats = cut([u])
    seen = [w for s in segs for w in s.words]
    dropped = {w for w in ws if w not in seen}
    assert stats.dropped.get("too_short", 0) >= (1 if dropped else 0)
    for s in segs:
        assert inside([u], s) == list(s.words)        # text = exactly the words inside
        assert s.text == " ".join(w.text for w in s.words)
        assert s.duration_s <= 30.0 + 1e-9
        assert all(b.start_s - a.end_s <= 2.0 for a, b in pairwise(s.words))
        assert not any(w.start_s < s.end_s and w.end_s > s.start_s for w in dropped)
    for a, b in pairwise(segs):
        assert a.end_s <= b.start_s


def random_call(rng: random.Random) -> list[Utterance]:
    """Two channels, speakers changing now and then, some tags, words of random length."""
    utts = []
    for channel in ("agent", "customer"):
        t = rng.uniform(0.0, 3.0)
        for n in range(rng.randint(1, 25)):
            ws = []
            for i in range(rng.randint(1, 60)):
                t += rng.choice((0.0, 0.05, 0.2, 0.6, 1.5, 2.5))
                dur = rng.uniform(0.05, 1.0)
                tag = "card" if rng.random() < 0.02 else None
                ws.append(Word("[CARD]" if tag else f"{channel[0]}{n}.{i}", round(t, 3),
                               round(t + dur, 3), rng.choice((None, rng.random())), tag))
                t += dur
            speaker = f"{channel}-{rng.randint(1, 2)}"
            utts.append(utt(tuple(ws), channel=channel, speaker=speaker))
            t += rng.uniform(0.0, 4.0)
    return utts


@pytest.mark.parametrize("policy", ["drop", "tone"])
@pytest.mark.parametrize("seed", range(10))
def test_random_calls_keep_every_invariant(seed: int, policy: str) -> None:
    utts = random_call(random.Random(seed))
    segs, stats = cut(utts, redacted=policy)
    speaker_of = {w: u.speaker for u in utts for w in u.words}
    assert stats.kept == len(segs)
    assert stats.kept_s == pytest.approx(sum(s.duration_s for s in segs))
    for s in segs:
        assert inside(utts, s) == list(s.words)
        assert {speaker_of[w] for w in s.words} == {s.speaker}
        assert 1.0 <= s.duration_s <= 30.0 + 1e-9
        assert s.tags == tuple(w.tag for w in s.words if w.tag)
        assert not (policy == "drop" and s.tags)
        assert s.text_normalized == normalize(s.text)
    for channel in ("agent", "customer"):
        mine = [s for s in segs if s.channel == channel]
        assert all(a.words[-1].end_s <= b.words[0].start_s for a, b in pairwise(mine))
    tagged = sum(1 for u in utts for w in u.words if w.tag)
    assert (sum(stats.redacted_kept.values()) == sum(len(s.tags) for s in segs))
    assert (policy == "tone") or tagged == 0 or stats.redacted_dropped["card"] >= 1


def test_under_the_floor_dropped_and_counted() -> None:
    segs, stats = cut([utt(words(0.0, "hi"))])            # 0.4 + 0.4 s of padding
    assert segs == [] and stats.dropped == {"too_short": 1}
    segs, stats = cut([utt(words(0.0, "hi"))], floor_s=0.5)
    assert len(segs) == 1 and stats.kept_short == 1


def test_drop_policy_drops_the_tagged_piece_only() -> None:
    a = utt(words(0.0, many(24)))
    b = utt(words(12.5, "my card is [CARD] thanks"))
    c = utt(words(16.0, many(24)))
    segs, stats = cut([a, b, c])
    assert [s.words for s in segs] == [a.words, c.words]
    assert stats.dropped == {"redacted": 1} and stats.redacted_dropped == {"card": 1}
    tag = b.words[3]
    assert all(s.end_s <= tag.start_s - 0.25 or s.start_s >= tag.end_s + 0.25 for s in segs)


def test_no_segment_reaches_into_the_tone_around_a_dropped_tag() -> None:
    a = utt(words(0.0, many(24)))                           # ends 11.9
    b = utt(words(12.0, "[CARD] ok [CVV]"))                 # 12.0-12.4 ... 13.0-13.4
    c = utt(words(13.5, many(24)))
    s1, s2 = cut([a, b, c])[0]
    assert (s1.end_s, s2.start_s) == (11.9, 13.5)          # 0.25 s from the tags: no pad
    s1, s2 = cut_segments([a, b, c], SegmentRules(), conversation_key=KEY,
                          tag_margin_s=0.0)[0]
    assert (s1.end_s, s2.start_s) == (12.0, 13.4)


def test_a_tag_word_without_its_tag_still_counts_as_a_tag() -> None:
    b = utt((Word("my", 0.0, 0.4, 0.9), Word("[CARD ****1111]", 0.5, 3.0, None)))
    segs, stats = cut([b])
    assert segs == [] and stats.redacted_dropped == {"card": 1}
    [seg], _ = cut([b], redacted="tone")
    assert seg.tags == ("card",)


def test_tone_policy_keeps_the_tag_in_text_and_tags() -> None:
    a = utt(words(0.0, many(20)))
    b = utt(words(11.0, "my card is [CARD] thanks [CVV]"))
    [seg], stats = cut([a, b], redacted="tone")
    assert seg.tags == ("card", "cvv") and "[CARD]" in seg.text
    assert seg.text_normalized.endswith("my card is [card] thanks [cvv]")
    assert stats.redacted_kept == {"card": 1, "cvv": 1} and not stats.dropped


def test_utterances_without_words_are_counted() -> None:
    empty = Utterance("conv-1", "agent", "agent-1", 0.0, 3.0, (), "hello", 0.9)
    segs, stats = cut([empty])
    assert segs == [] and stats.dropped == {"no_words": 1}


def test_one_word_longer_than_max_s_is_dropped() -> None:
    long_word = utt((Word("mmmm", 0.0, 31.0, None),))
    segs, stats = cut([long_word])
    assert segs == [] and stats.dropped == {"too_long": 1}


def test_recording_end_clamps_the_last_pad() -> None:
    u = utt(words(0.0, many(24)))                            # last word ends 11.9
    [seg], _ = cut_segments([u], SegmentRules(), conversation_key=KEY, recording_end_s=12.0)
    assert seg.end_s == 12.0
    [seg], _ = cut_segments([u], SegmentRules(), conversation_key=KEY,
                            recording_end_s=12.0004)
    assert seg.end_s == 12.0                                 # rounded, never past the end


def test_ids_are_stable_and_depend_on_the_times() -> None:
    u = utt(words(0.0, many(24)))
    assert cut([u])[0][0].segment_id == cut([u])[0][0].segment_id
    moved = utt(words(0.5, many(24)))
    assert cut([u])[0][0].segment_id != cut([moved])[0][0].segment_id
    assert cut([u])[0][0].segment_id == cut([u], pad_s=0.1)[0][0].segment_id
    other = cut_segments([u], SegmentRules(), conversation_key="other")[0][0]
    assert other.segment_id != cut([u])[0][0].segment_id


def test_confidence_is_the_mean_of_known_word_confidences() -> None:
    ws = words(0.0, many(12), conf=0.5) + words(6.0, many(12), conf=None)
    [seg], _ = cut([utt(ws)])
    assert seg.confidence == pytest.approx(0.5)
    [seg], _ = cut([utt(words(0.0, many(24), conf=None))])
    assert seg.confidence is None


def test_stats_add() -> None:
    _, a = cut([utt(words(0.0, "[CARD] x"))])
    _, b = cut([utt(words(0.0, many(24)))])
    total = a + b
    assert (total.kept, total.dropped, total.redacted_dropped) == (1, {"redacted": 1},
                                                                  {"card": 1})


@pytest.mark.parametrize("bad", [dict(min_s=40.0), dict(floor_s=-1.0), dict(pad_s=-0.1),
                                 dict(redacted="keep")])
def test_rules_are_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SegmentRules(**bad)  # type: ignore[arg-type]
