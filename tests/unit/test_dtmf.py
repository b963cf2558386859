"""Tests for gateway.media.dtmf (RFC 4733 telephone-event).

Payloads are built here from the RFC 4733 section 2.3 layout (event, E|R|volume, 16-bit
duration); sender scripts follow section 2.5.1 (one timestamp per event, growing duration,
end packet sent three times, long events split into 0xFFFF segments).
"""

from __future__ import annotations

import pytest

from gateway.media.dtmf import DtmfDecoder, DtmfEvent, DtmfPayloadError

RATE = 8000


def payload(event: int, duration: int, *, end: bool = False, volume: int = 10) -> bytes:
    return bytes([event, (0x80 if end else 0) | volume]) + duration.to_bytes(2, "big")


def key_press(event: int, rtp_ts: int, *, updates: int = 5, step: int = 160,
              end_packets: int = 3, volume: int = 10) -> list[tuple[bytes, int, bool]]:
    """(payload, rtp_ts, marker) for one press: `updates` growing durations, then the end."""
    packets = [(payload(event, step * (i + 1), volume=volume), rtp_ts, i == 0)
               for i in range(updates)]
    final = step * (updates + 1)
    packets += [(payload(event, final, end=True, volume=volume), rtp_ts, False)] * end_packets
    return packets


def run(dec: DtmfDecoder, packets: list[tuple[bytes, int, bool]], *, t0: float = 0.0,
        ) -> list[list[DtmfEvent]]:
    return [dec.push(p, ts, marker, t0 + i * 0.02) for i, (p, ts, marker) in enumerate(packets)]


def flat(results: list[list[DtmfEvent]]) -> list[DtmfEvent]:
    return [event for batch in results for event in batch]


def test_single_digit_reported_once_on_first_end_packet() -> None:
    dec = DtmfDecoder(RATE)
    results = run(dec, key_press(5, 48000))
    assert [len(batch) for batch in results] == [0] * 5 + [1, 0, 0]
    # final duration 6 * 160 = 960 samples = 120 ms at 8 kHz; volume 10 -> -10 dBm0
    assert results[5] == [DtmfEvent("5", 120, -10, 48000, True)]
    assert dec.poll(100.0) == []


def test_digits_back_to_back_including_a_repeat() -> None:
    dec = DtmfDecoder(RATE)
    packets = key_press(1, 1000) + key_press(2, 3000) + key_press(1, 5000, updates=9)
    events = flat(run(dec, packets))
    assert [(e.digit, e.rtp_ts, e.duration_ms) for e in events] == [
        ("1", 1000, 120), ("2", 3000, 120), ("1", 5000, 200)]


@pytest.mark.parametrize(("code", "name"), [(10, "*"), (11, "#"), (0, "0"), (9, "9"),
                                            (12, "A"), (15, "D"), (16, "flash"),
                                            (32, "event-32")])
def test_event_names(code: int, name: str) -> None:
    dec = DtmfDecoder(RATE)
    (event,) = flat(run(dec, key_press(code, 700)))
    assert event.digit == name


def test_all_end_packets_lost_reported_by_poll_with_last_duration() -> None:
    dec = DtmfDecoder(RATE)
    packets = key_press(7, 9000, updates=4, end_packets=0)  # last update says 640 = 80 ms
    assert flat(run(dec, packets)) == []
    last_update_s = 3 * 0.02
    assert dec.poll(last_update_s + 0.99) == []
    assert dec.poll(last_update_s + 1.01) == [DtmfEvent("7", 80, -10, 9000, False)]
    assert dec.poll(10.0) == []
    # a straggling end packet of the same event is absorbed
    assert dec.push(payload(7, 800, end=True), 9000, False, 10.1) == []


def test_lost_end_reported_when_next_digit_starts() -> None:
    dec = DtmfDecoder(RATE)
    packets = key_press(3, 2000, updates=3, end_packets=0) + key_press(4, 4000)
    results = run(dec, packets)
    assert results[3] == [DtmfEvent("3", 60, -10, 2000, False)]
    assert flat(results[4:]) == [DtmfEvent("4", 120, -10, 4000, True)]


def test_long_event_segments_are_summed() -> None:
    dec = DtmfDecoder(RATE)
    seg1 = [(payload(1, d), 100, d == 8000) for d in range(8000, 0xFFFF, 8000)]
    seg1.append((payload(1, 0xFFFF), 100, False))
    seg2_ts = 100 + 0xFFFF
    seg2 = [(payload(1, d), seg2_ts, False) for d in (800, 1600, 2400)]
    seg2 += [(payload(1, 4000, end=True), seg2_ts, False)] * 3
    events = flat(run(dec, seg1 + seg2))
    # 0xFFFF + 4000 samples = 69535 / 8 = 8691.875 ms
    assert events == [DtmfEvent("1", 8692, -10, 100, True)]


def test_new_press_with_marker_is_not_a_long_event_segment() -> None:
    dec = DtmfDecoder(RATE)
    seg = [(payload(1, d), 100, d == 8000) for d in range(8000, 0xFFFF, 8000)]
    seg.append((payload(1, 0xFFFF), 100, False))  # its end packets are lost
    again = key_press(1, 100 + 0xFFFF)  # same key pressed anew: marker set
    events = flat(run(dec, seg + again))
    assert [(e.rtp_ts, e.duration_ms, e.end_seen) for e in events] == [
        (100, 8192, False), (100 + 0xFFFF, 120, True)]


def test_event_after_timestamp_wrap_is_new() -> None:
    dec = DtmfDecoder(RATE)
    first_ts = 2**32 - 400
    second_ts = 1200  # after the 32-bit wrap
    events = flat(run(dec, key_press(8, first_ts) + key_press(9, second_ts)))
    assert [(e.digit, e.rtp_ts) for e in events] == [("8", first_ts), ("9", second_ts)]
    # stale update of the wrapped-over event: ignored
    assert dec.push(payload(8, 480), first_ts, False, 1.0) == []
    assert dec.poll(100.0) == []  # and it did not start a phantom event either


def test_reordered_updates_keep_the_longest_duration() -> None:
    dec = DtmfDecoder(RATE)
    packets = [(payload(6, 320), 50, True), (payload(6, 640), 50, False),
               (payload(6, 480), 50, False)]
    run(dec, packets)
    assert dec.poll(5.0) == [DtmfEvent("6", 80, -10, 50, False)]


def test_volume_is_reported_in_dbm0() -> None:
    dec = DtmfDecoder(RATE)
    (event,) = flat(run(dec, key_press(0, 10, volume=63)))
    assert event.volume_db == -63


@pytest.mark.parametrize("raw", [b"", b"\x01", b"\x01\x8a\x00"])
def test_malformed_payload_raises(raw: bytes) -> None:
    dec = DtmfDecoder(RATE)
    with pytest.raises(DtmfPayloadError):
        dec.push(raw, 0, True, 0.0)
    assert issubclass(DtmfPayloadError, ValueError)


# ----------------------------------------------------------------- negotiated event range


@pytest.mark.parametrize(("text", "codes"), [
    ("0-15", set(range(16))), ("0-15,66,70", {*range(16), 66, 70}), ("0-16", set(range(17))),
    (" 0 - 11 , 16 ", {*range(12), 16}), ("events=0-3", {0, 1, 2, 3}), ("255", {255})])
def test_parse_event_list(text: str, codes: set[int]) -> None:
    from gateway.media.dtmf import parse_event_list
    assert parse_event_list(text) == frozenset(codes)


@pytest.mark.parametrize("text", ["", "x", "0-", "15-0", "0-256", "1,,2", "0-15;a"])
def test_parse_event_list_refuses_garbage(text: str) -> None:
    from gateway.media.dtmf import parse_event_list
    with pytest.raises(ValueError):
        parse_event_list(text)


def test_events_outside_the_negotiated_range_are_dropped_and_counted() -> None:
    """Issue 13 item 11: with a=fmtp:101 0-15, event 159 and flash (16) never come out."""
    dec = DtmfDecoder(RATE, events=frozenset(range(16)))
    packets = key_press(159, 1000) + key_press(16, 3000) + key_press(5, 5000)
    events = flat(run(dec, packets))
    assert [e.digit for e in events] == ["5"]
    assert dec.rejected == 2 * 8 and events[0].duration_ms == 120
    assert dec.poll(100.0) == []


def test_a_rejected_event_does_not_disturb_the_tone_in_progress() -> None:
    dec = DtmfDecoder(RATE, events=frozenset(range(16)))
    press = key_press(7, 2000)
    mixed = press[:3] + [(payload(200, 160, end=True), 9999, True)] + press[3:]
    events = flat(run(dec, mixed))
    assert [(e.digit, e.end_seen) for e in events] == [("7", True)] and dec.rejected == 1
