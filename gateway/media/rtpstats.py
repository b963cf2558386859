"""RTP receive statistics for one source, as RFC 3550 appendix A describes them (sans-I/O).

* A.1 sequence-number extension: ``MAX_DROPOUT`` = 3000 packets ahead and ``MAX_MISORDER`` = 100
  behind are ordinary; anything else is a "very large jump" that is ignored unless the next packet
  follows it (``bad_seq``), in which case the source is taken to have restarted and the counters
  are re-based on it. Simplification: there is no probation (``MIN_SEQUENTIAL``); the first packet
  is trusted, because the RTP endpoint already latched the SSRC before calling us.
* A.3 expected / lost / fraction lost, counted since the last :meth:`report_block` call. ``lost``
  may be negative when duplicates arrive; the report clamps it to 24-bit signed, as A.3 does.
* A.8 interarrival jitter, kept in timestamp units (float; the report truncates it to an int).
  The transit-time difference is taken as ``arrival delta - timestamp delta`` with the timestamp
  delta read as a signed 32-bit number, so a timestamp wrap at 2**32 does not disturb it.

Layer: pure core.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
MAX_DROPOUT = 3000
MAX_MISORDER = 100
LOST_MAX = 0x7FFFFF
LOST_MIN = -0x800000


def signed_ts_delta(later: int, earlier: int) -> int:
    """``later - earlier`` for 32-bit RTP timestamps, read as a signed 32-bit difference."""
    delta = (later - earlier) % TS_MOD
    return delta - TS_MOD if delta >= TS_MOD // 2 else delta


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """The receiver-side fields of one RTCP report block (RFC 3550 section 6.4.1)."""

    fraction_lost: int  # 8-bit fixed point: lost / expected * 256 since the previous report
    packets_lost: int  # cumulative, signed 24-bit (negative with duplicates)
    highest_sequence: int  # extended highest sequence number received (32 bits)
    jitter: int  # interarrival jitter in timestamp units


class InterarrivalJitter:
    """RFC 3550 A.8 estimator: ``J += (|D| - J) / 16`` over consecutive packets."""

    __slots__ = ("clock_rate_hz", "jitter_ts", "_last_ts", "_last_arrival_s")

    def __init__(self, clock_rate_hz: int) -> None:
        self.clock_rate_hz = clock_rate_hz
        self.jitter_ts = 0.0
        self._last_ts: int | None = None
        self._last_arrival_s = 0.0

    def update(self, rtp_ts: int, arrival_s: float) -> None:
        if self._last_ts is not None:
            arrival_delta = (arrival_s - self._last_arrival_s) * self.clock_rate_hz
            transit_delta = abs(arrival_delta - signed_ts_delta(rtp_ts, self._last_ts))
            self.jitter_ts += (transit_delta - self.jitter_ts) / 16.0
        self._last_ts = rtp_ts
        self._last_arrival_s = arrival_s

    def restart(self) -> None:
        """Forget the previous packet (timestamp base changed) but keep the estimate."""
        self._last_ts = None

    @property
    def jitter_s(self) -> float:
        return self.jitter_ts / self.clock_rate_hz


class RtpReceiveStats:
    """Counters for one received RTP stream; feed every packet, duplicates included."""

    def __init__(self, clock_rate_hz: int = 8000) -> None:
        if clock_rate_hz <= 0:
            raise ValueError(f"clock_rate_hz must be positive, got {clock_rate_hz}")
        self.clock_rate_hz = clock_rate_hz
        self.reset()

    def reset(self) -> None:
        self._started = False
        self._max_seq = 0
        self._cycles = 0
        self._base_seq = 0
        self._bad_seq = SEQ_MOD + 1  # "no candidate": never equal to a 16-bit number
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = InterarrivalJitter(self.clock_rate_hz)

    def _init_seq(self, seq: int) -> None:
        self._started = True
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = SEQ_MOD + 1
        self._cycles = 0
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0

    def _accept_seq(self, seq: int) -> bool:
        """A.1 ``update_seq`` without probation; False when the packet is not counted."""
        if not self._started:
            self._init_seq(seq)
            return True
        udelta = (seq - self._max_seq) % SEQ_MOD
        if udelta < MAX_DROPOUT:
            if seq < self._max_seq:
                self._cycles += SEQ_MOD
            self._max_seq = seq
        elif udelta <= SEQ_MOD - MAX_MISORDER:
            if seq != self._bad_seq:
                self._bad_seq = (seq + 1) % SEQ_MOD
                return False
            self._init_seq(seq)  # two sequential packets after a big jump: source restarted
            self._jitter.restart()
        # else: duplicate or reordered within MAX_MISORDER: counted, max unchanged
        return True

    def update(self, seq: int, rtp_ts: int, arrival_s: float) -> None:
        if self._accept_seq(seq & 0xFFFF):
            self._received += 1
            self._jitter.update(rtp_ts & 0xFFFFFFFF, arrival_s)

    @property
    def received(self) -> int:
        return self._received

    @property
    def extended_max_seq(self) -> int:
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        return self.extended_max_seq - self._base_seq + 1 if self._started else 0

    @property
    def lost(self) -> int:
        return self.expected - self._received

    @property
    def jitter_ts(self) -> float:
        return self._jitter.jitter_ts

    @property
    def jitter_s(self) -> float:
        return self._jitter.jitter_s

    def report_block(self) -> ReportBlock:
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self._received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self._received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        return ReportBlock(
            fraction_lost=min(fraction, 255),
            packets_lost=max(LOST_MIN, min(LOST_MAX, self.lost)),
            highest_sequence=self.extended_max_seq & 0xFFFFFFFF,
            jitter=int(self._jitter.jitter_ts) & 0xFFFFFFFF,
        )
