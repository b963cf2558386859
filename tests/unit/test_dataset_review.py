"""gateway.dataset.review: the review list and the correction round trip."""

from __future__ import annotations

import json

import pytest

from gateway.dataset.model import Segment
from gateway.dataset.normalize import normalize
from gateway.dataset.review import (
    CorrectionError,
    apply_corrections,
    parse_corrections,
    review_line,
    review_list,
)


def seg(sid: str, confidence: float | None, *, text: str = "I paid 12 dollars",
        verified: bool = False) -> Segment:
    return Segment(sid, "conv0001", "customer", "customer-1", 1.0, 12.0, (), text,
                   normalize(text), confidence, (), verified)


SEGMENTS = [seg("a", 0.9), seg("b", 0.3), seg("c", None), seg("d", 0.6), seg("e", 0.1,
                                                                             verified=True)]


def test_lowest_confidence_first_none_last_verified_left_out() -> None:
    assert [i.segment_id for i in review_list(SEGMENTS, n=10)] == ["b", "d", "a", "c"]
    assert [i.segment_id for i in review_list(SEGMENTS, n=2)] == ["b", "d"]
    assert review_list(SEGMENTS, n=0) == []
    with pytest.raises(ValueError):
        review_list(SEGMENTS, n=-1)


def edited(sid: str, action: str | None, text: str | None = None) -> str:
    [item] = [i for i in review_list(SEGMENTS, n=10) if i.segment_id == sid]
    record = json.loads(review_line(item, audio=f"audio/{sid}.flac"))
    record["action"] = action
    if text is not None:
        record["text"] = text
    return json.dumps(record)


def test_round_trip_fix_ok_reject_pending_unknown() -> None:
    lines = [edited("b", "fix", "I paid 20 dollars."), edited("d", "reject"),
             edited("a", "ok"), edited("c", None), "",
             json.dumps({"segment_id": "gone", "action": "ok"})]
    corrections = parse_corrections(lines)
    assert set(corrections) == {"b", "d", "a", "gone"}
    out, stats = apply_corrections(SEGMENTS, corrections)
    by_id = {s.segment_id: s for s in out}
    assert set(by_id) == {"a", "b", "c", "e"}
    assert by_id["b"].text == "I paid 20 dollars."
    assert by_id["b"].text_normalized == "i paid twenty dollars" and by_id["b"].verified
    assert by_id["a"].verified and by_id["a"].text == "I paid 12 dollars"
    assert not by_id["c"].verified
    assert (stats.fixed, stats.ok, stats.rejected, stats.unknown) == (1, 1, 1, 1)
    assert "b" not in {i.segment_id for i in review_list(out, n=10)}


def test_the_review_line_holds_the_context() -> None:
    [item] = review_list([seg("x", 0.5)], n=1)
    record = json.loads(review_line(item, audio="audio/x.flac"))
    assert record["action"] is None and record["text"] == record["asr_text"]
    assert record["audio"] == "audio/x.flac" and record["confidence"] == 0.5
    assert parse_corrections([review_line(item)]) == {}       # not reviewed: ignored


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "line 2: not JSON"),
    ("[1, 2]", "line 2: not a JSON object"),
    ('{"action": "ok"}', "line 2: segment_id must be a non-empty string"),
    ('{"segment_id": "a", "action": "fixed"}', "line 2: action must be 'fix', 'ok'"),
    ('{"segment_id": "a", "action": "fix"}', "line 2: action 'fix' needs the corrected text"),
    ('{"segment_id": "a", "action": "fix", "text": " ,. "}', "line 2: action 'fix' needs"),
    ('{"segment_id": "a", "action": "ok", "text": "new", "asr_text": "old"}',
     "line 2: the text was changed but the action is 'ok'"),
    ('{"segment_id": "z", "action": "ok"}', "line 2: segment z is already on line 1"),
])
def test_bad_lines_name_their_line_number(line: str, message: str) -> None:
    first = json.dumps({"segment_id": "z", "action": "reject"})
    with pytest.raises(CorrectionError, match="^" + message.replace("(", r"\(")
                       .replace("[", r"\[")):
        parse_corrections([first, line])
