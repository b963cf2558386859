"""Arrival-driven audio jitter buffer for one RTP source (sans-I/O, no timers, no clocks).

:meth:`JitterBuffer.push` returns the frames that became ready; a shared low-rate tick calls
:meth:`JitterBuffer.poll` so that a gap is not held forever when packets stop arriving.

Output contract: frames come out in order on a contiguous timeline (``frame.rtp_ts`` equals the
previous ``rtp_ts + samples``), every sequence-number slot exactly once, as real payload or as a
concealment frame (``payload is None``: the caller fills it with PLC or silence).

Choices made here (document of record):

* Samples per packet = payload length (G.711: one byte per sample), so ptime 10/20/30 ms and
  changes mid-stream need no configuration. ``ptime_ms`` only sizes concealment before the first
  packet and is the floor of the adaptive depth.
* A timestamp gap that no missing sequence number explains is sender silence (silence
  suppression / DTX after a marker), not loss: it is emitted as ``silence=True`` concealment
  frames, at most one slot long each, counted in ``gap_samples``/``silence_frames`` and never
  in ``lost``. ASR keeps time alignment.
* When packets are missing AND the timestamp gap is larger than they explain, the lost slots are
  placed at the end of the previous talkspurt if the next packet carries the marker, else (its
  marker packet was probably among the lost) right before the next packet, after the silence.
* ``frame.rtp_ts`` is the sender's extended RTP timestamp until a restart or a backwards
  timestamp step (``realigned``); from then on it is shifted so that the timeline stays
  contiguous. A restart (SSRC change, sequence jump > 3000, timestamp jump > 10 s) needs evidence
  of a new stream: such a packet only opens a *candidate*, and the buffer restarts when
  ``PROBATION_PACKETS`` candidate packets in a row agree with each other (same SSRC, sequence
  numbers within ``CANDIDATE_SEQ_WINDOW`` of one another, timestamps within the jump bound) with
  no packet of the current stream in between. Then what is held is flushed and the candidate's
  packets are played in sequence order, so nothing of the new stream is lost. A packet of the
  current stream cancels the candidate; cancelled candidate packets are dropped and counted
  (``stray_ssrc`` for another SSRC, ``stray_sequence`` for the current SSRC). One stray packet
  (old sequence number, foreign SSRC) therefore never restarts the buffer.
* :meth:`JitterBuffer.fill_silence` advances the timeline by the clock while the sender sends
  nothing (the shell calls it; see :mod:`gateway.media.leg`). When packets come back, the
  timestamp gap is reduced by what was filled; a filled span longer than the gap is absorbed
  silently (no ``realigned`` count).
* The first packet starts the stream: an earlier-numbered packet arriving after it is ``late``.
* Adaptive depth: target = 3 x RFC 3550 interarrival jitter, clamped to [ptime_ms,
  max_depth_ms]; it is adopted at a talkspurt start (marker) and otherwise approached by at most
  0.5 ms per packet.

Layer: pure core.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

from gateway.media.rtpstats import InterarrivalJitter, signed_ts_delta

MAX_SEQ_JUMP = 3000
PROBATION_PACKETS = 3  # consecutive agreeing packets that prove a new stream
CANDIDATE_SEQ_WINDOW = 16  # candidate packets agree when this close in sequence number
MAX_TS_JUMP_S = 10.0
ADAPT_FACTOR = 3.0
ADAPT_STEP_MS = 0.5
_RECENT_SLOTS = 128  # ring of recently played sequence numbers: duplicate vs late
_MAX_HELD = 512


class JitterConfigError(ValueError):
    """Invalid jitter-buffer parameters."""


@dataclass(frozen=True, slots=True)
class Frame:
    rtp_ts: int  # position on the contiguous output timeline, clock units (64-bit)
    samples: int
    payload: bytes | None  # None: concealment (lost slot, or sender silence if ``silence``)
    seq: int | None  # the packet's 16-bit sequence number; None for concealment
    marker: bool
    silence: bool = False  # concealment for a gap the sender left on purpose (not loss)


@dataclass(slots=True)
class JitterStats:
    received: int = 0  # every push
    played: int = 0  # frames with real payload
    duplicated: int = 0
    late: int = 0  # arrived after its slot was played or concealed
    reordered: int = 0  # arrived after a higher sequence number, still in time
    lost: int = 0  # sequence slots given up
    concealed_frames: int = 0  # non-silence concealment frames emitted
    silence_frames: int = 0
    gap_samples: int = 0  # sender silence emitted as silence frames
    restarts: int = 0
    realigned: int = 0  # timestamp stepped backwards on contiguous sequence numbers
    stray_ssrc: int = 0  # dropped: another SSRC that never proved to be a new stream
    stray_sequence: int = 0  # dropped: this SSRC, sequence/timestamp far off, never confirmed
    filled_samples: int = 0  # silence added by the clock while the sender sent nothing

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _Held(NamedTuple):
    seq: int
    ext_ts: int
    marker: bool
    payload: bytes
    arrival_s: float


class _Candidate(NamedTuple):
    seq: int
    rtp_ts: int
    marker: bool
    payload: bytes
    ssrc: int
    arrival_s: float


def _seq_delta(later: int, earlier: int) -> int:
    return ((later - earlier + 0x8000) & 0xFFFF) - 0x8000


class JitterBuffer:
    def __init__(self, *, clock_rate_hz: int = 8000, ptime_ms: int = 20, depth_ms: int = 60,
                 adaptive: bool = False, max_depth_ms: int = 300) -> None:
        if clock_rate_hz <= 0 or ptime_ms <= 0:
            raise JitterConfigError("clock_rate_hz and ptime_ms must be positive")
        if depth_ms < 0 or max_depth_ms < ptime_ms:
            raise JitterConfigError(
                f"need depth_ms >= 0 and max_depth_ms >= ptime_ms, got depth_ms={depth_ms}, "
                f"max_depth_ms={max_depth_ms}, ptime_ms={ptime_ms}")
        self._rate = clock_rate_hz
        self._ptime_ms = ptime_ms
        self._adaptive = adaptive
        self._max_depth_ms = max_depth_ms
        self._max_ts_jump = int(MAX_TS_JUMP_S * clock_rate_hz)
        self.stats = JitterStats()
        self._jitter = InterarrivalJitter(clock_rate_hz)
        self._set_depth(float(depth_ms))
        self._slot_samples = ptime_ms * clock_rate_hz // 1000
        self._held: dict[int, _Held] = {}
        self._recent = [-1] * _RECENT_SLOTS
        self._ssrc: int | None = None
        self._hi_seq16 = self._hi_ext = self._hi_ts32 = self._hi_ts_ext = 0
        self._offset = 0  # output timeline = extended stream timestamp + offset
        self._next_seq = 0  # extended sequence number of the next slot to emit
        self._next_ts = 0  # output timestamp of the next slot
        self._candidate: list[_Candidate] = []  # packets that may be a new stream
        self._filled = 0  # clock-filled samples since the last packet played

    # -- public -----------------------------------------------------------------------------

    @property
    def depth_ms(self) -> float:
        return self._depth_ms

    @property
    def jitter_s(self) -> float:
        return self._jitter.jitter_s

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def ssrc(self) -> int | None:
        """The SSRC of the stream being played (None before the first packet)."""
        return self._ssrc

    def push(self, seq: int, rtp_ts: int, marker: bool, payload: bytes, ssrc: int,
             arrival_s: float) -> list[Frame]:
        self.stats.received += 1
        seq &= 0xFFFF
        rtp_ts &= 0xFFFFFFFF
        out: list[Frame] = []
        if self._ssrc is None:
            self._next_ts = rtp_ts
            self._start_stream(seq, rtp_ts, ssrc)
        elif ssrc != self._ssrc or self._is_jump(seq, rtp_ts):
            return self._probation(_Candidate(seq, rtp_ts, marker, payload, ssrc, arrival_s))
        elif self._candidate:
            self._discard_candidate()  # the current stream is alive: the candidate was stray
        self._accept(seq, rtp_ts, marker, payload, arrival_s, out)
        return out

    def fill_silence(self, samples: int) -> list[Frame]:
        """The sender sent nothing: advance the timeline by ``samples`` of silence (only when
        nothing is held; a later packet's timestamp gap is reduced by what was filled)."""
        out: list[Frame] = []
        if samples <= 0 or self._held or self._ssrc is None:
            return out
        self._emit_silence(samples, out)
        self.stats.gap_samples -= samples  # counted as filled, not as sender silence
        self.stats.filled_samples += samples
        self._filled += samples
        return out

    def _accept(self, seq: int, rtp_ts: int, marker: bool, payload: bytes, arrival_s: float,
                out: list[Frame]) -> None:
        delta = _seq_delta(seq, self._hi_seq16)
        ext_seq = self._hi_ext + delta
        if ext_seq < self._next_seq or ext_seq in self._held:
            self._drop(ext_seq, rtp_ts, arrival_s)
            return
        self._jitter.update(rtp_ts, arrival_s)
        if self._adaptive:
            self._adapt(marker)
        ext_ts = self._hi_ts_ext + signed_ts_delta(rtp_ts, self._hi_ts32)
        if delta > 0:
            self._hi_seq16, self._hi_ext, self._hi_ts32, self._hi_ts_ext = (
                seq, ext_seq, rtp_ts, ext_ts)
        elif delta < 0:
            self.stats.reordered += 1
        if ext_seq == self._next_seq:
            self._emit_packet(seq, ext_ts, marker, payload, out)
        else:
            self._held[ext_seq] = _Held(seq, ext_ts, marker, payload, arrival_s)
        self._drain(out)

    # -- new-stream evidence ----------------------------------------------------------------

    def _probation(self, packet: _Candidate) -> list[Frame]:
        """A packet that does not fit the current stream: wait for evidence of a new one."""
        if self._candidate and not self._agrees(packet):
            self._discard_candidate()
        self._candidate.append(packet)
        out: list[Frame] = []
        if len(self._candidate) < PROBATION_PACKETS:
            return out
        first = self._candidate[0]
        packets = sorted(self._candidate, key=lambda p: _seq_delta(p.seq, first.seq))
        self._candidate = []
        self._flush_into(out)
        self.stats.restarts += 1
        self._start_stream(packets[0].seq, packets[0].rtp_ts, packets[0].ssrc)
        for p in packets:
            self._accept(p.seq, p.rtp_ts, p.marker, p.payload, p.arrival_s, out)
        return out

    def _agrees(self, packet: _Candidate) -> bool:
        newest = self._candidate[-1]
        seq_delta = _seq_delta(packet.seq, newest.seq)
        return (packet.ssrc == newest.ssrc and 0 < abs(seq_delta) <= CANDIDATE_SEQ_WINDOW
                and abs(signed_ts_delta(packet.rtp_ts, newest.rtp_ts)) <= self._max_ts_jump)

    def _discard_candidate(self) -> None:
        for packet in self._candidate:
            if packet.ssrc != self._ssrc:
                self.stats.stray_ssrc += 1
            else:
                self.stats.stray_sequence += 1
        self._candidate = []

    def poll(self, now: float) -> list[Frame]:
        """Give up on gaps whose next held packet has waited a full depth; nothing is invented
        past the newest packet received."""
        out: list[Frame] = []
        depth_s = self._depth_ms / 1000.0
        while self._held:
            first = self._first_held()
            if now - self._held[first].arrival_s < depth_s:
                break
            self._release_through(first, out)
        return out

    def flush(self) -> list[Frame]:
        """End of stream: everything held comes out, gaps concealed; an unconfirmed candidate
        stream is dropped (counted as stray)."""
        out: list[Frame] = []
        self._discard_candidate()
        self._flush_into(out)
        return out

    # -- stream identity --------------------------------------------------------------------

    def _start_stream(self, seq: int, rtp_ts: int, ssrc: int) -> None:
        self._ssrc = ssrc
        self._hi_seq16, self._hi_ext = seq, self._next_seq
        self._hi_ts32 = self._hi_ts_ext = rtp_ts
        self._offset = self._next_ts - rtp_ts
        self._jitter.restart()

    def _is_jump(self, seq: int, rtp_ts: int) -> bool:
        return (abs(_seq_delta(seq, self._hi_seq16)) > MAX_SEQ_JUMP
                or abs(signed_ts_delta(rtp_ts, self._hi_ts32)) > self._max_ts_jump)

    def _drop(self, ext_seq: int, rtp_ts: int, arrival_s: float) -> None:
        if ext_seq in self._held or self._recent[ext_seq % _RECENT_SLOTS] == ext_seq:
            self.stats.duplicated += 1
            return
        self.stats.late += 1
        self._jitter.update(rtp_ts, arrival_s)  # late packets are what the depth must cover
        if self._adaptive:
            self._adapt(False)

    # -- depth ------------------------------------------------------------------------------

    def _set_depth(self, depth_ms: float) -> None:
        self._depth_ms = depth_ms
        self._depth_samples = int(depth_ms * self._rate / 1000.0)

    def _adapt(self, marker: bool) -> None:
        target = ADAPT_FACTOR * self._jitter.jitter_s * 1000.0
        target = min(float(self._max_depth_ms), max(float(self._ptime_ms), target))
        if not marker:
            step = ADAPT_STEP_MS
            target = min(self._depth_ms + step, max(self._depth_ms - step, target))
        if target != self._depth_ms:
            self._set_depth(target)

    # -- emission ---------------------------------------------------------------------------

    def _emit_packet(self, seq: int, ext_ts: int, marker: bool, payload: bytes,
                     out: list[Frame]) -> None:
        gap = ext_ts + self._offset - self._next_ts
        if gap > 0:
            self._emit_silence(gap, out)
        elif gap < 0:
            self._offset -= gap
            if -gap > self._filled:  # more than the clock filled: the sender's timeline
                self.stats.realigned += 1
        self._filled = 0
        samples = len(payload)
        out.append(Frame(self._next_ts, samples, payload, seq, marker))
        self._recent[self._next_seq % _RECENT_SLOTS] = self._next_seq
        self._next_seq += 1
        self._next_ts += samples
        if samples:
            self._slot_samples = samples
        self.stats.played += 1

    def _emit_silence(self, gap: int, out: list[Frame]) -> None:
        self.stats.gap_samples += gap
        while gap > 0:
            samples = min(self._slot_samples, gap)
            out.append(Frame(self._next_ts, samples, None, None, False, silence=True))
            self.stats.silence_frames += 1
            self._next_ts += samples
            gap -= samples

    def _drain(self, out: list[Frame]) -> None:
        """Play what is contiguous; conceal head slots while the held span exceeds the depth."""
        held = self._held
        while held:
            packet = held.pop(self._next_seq, None)
            if packet is not None:
                self._emit_packet(packet.seq, packet.ext_ts, packet.marker, packet.payload, out)
                continue
            first = self._first_held()
            while self._next_seq < first and self._over_depth(first):
                self._conceal_slot(first, out)
            if self._next_seq < first:
                return  # what is left of the gap fits in the depth: keep waiting

    def _release_through(self, first: int, out: list[Frame]) -> None:
        while self._next_seq < first:
            self._conceal_slot(first, out)
        self._drain(out)

    def _flush_into(self, out: list[Frame]) -> None:
        while self._held:
            self._release_through(self._first_held(), out)

    def _first_held(self) -> int:
        first = self._next_seq + 1
        while first not in self._held:
            first += 1
        return first

    def _head_ts(self, first: int) -> int:
        """Where the missing slots begin: right after the last played frame, or, when the next
        packet starts no talkspurt, right before it (sender silence comes first)."""
        packet = self._held[first]
        if packet.marker:
            return self._next_ts
        missing = first - self._next_seq
        return max(self._next_ts, packet.ext_ts + self._offset - missing * self._slot_samples)

    def _over_depth(self, first: int) -> bool:
        """Does the audio held ahead of the next slot (missing slots included) exceed the depth?
        The packet count bound only matters for senders whose timestamps do not advance."""
        newest = self._held[self._hi_ext]
        span = newest.ext_ts + self._offset + len(newest.payload) - self._head_ts(first)
        return span > self._depth_samples or len(self._held) > _MAX_HELD

    def _conceal_slot(self, first: int, out: list[Frame]) -> None:
        head_ts = self._head_ts(first)
        if head_ts > self._next_ts:
            self._emit_silence(head_ts - self._next_ts, out)
        missing = first - self._next_seq
        gap = self._held[first].ext_ts + self._offset - self._next_ts
        samples = self._slot_samples
        if gap < missing * samples:
            samples = max(gap, 0) // missing
        self.stats.lost += 1
        if samples > 0:
            out.append(Frame(self._next_ts, samples, None, None, False))
            self.stats.concealed_frames += 1
            self._next_ts += samples
        self._recent[self._next_seq % _RECENT_SLOTS] = -1
        self._next_seq += 1
