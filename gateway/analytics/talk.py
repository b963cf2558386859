"""Conversation statistics from voice activity (issue 17): talk, silence, overtalk,
interruptions, words per minute, first agent response, dead air.

:class:`TalkStatistics` is a processor of the event stage. Its input is the talk spurts
the call side cuts from each channel's decoded audio (``voice.started`` / ``voice.stopped``,
``voice.ended`` when a channel's audio ends; :mod:`gateway.analytics.activity`), the words
of ``transcript.final`` and the call lifecycle; it keeps, per conversation, every channel's
spurts on the conversation timeline and works the figures out of them
(:class:`~gateway.events.types.ConversationStats`):

- **talk** of a channel: the union of its spurts; **silence**: the rest of the timeline
  (from 0, where the first call was offered, to the end of the last audio: a channel with
  no audio yet, or any more, is silent); **longest silence**: its longest stretch without
  talk, the leading and trailing ones included.
- For the conversation: **talk** is someone talking, **non-talk** nobody, **overtalk** two
  channels or more at once; **dead air** the stretches of nobody talking of ``dead_air_s``
  or more (a hold counts as silence here).
- **Interruption**: channel B interrupts channel A when B's spurt begins while A talks
  (after A began), A's spurt ends within ``interruption_ms`` of B's start, and B is still
  talking when A stops: B took the floor. A backchannel ("mm-hm" inside A's spurt) is
  overtalk, not an interruption; so is talking over each other for longer than
  ``interruption_ms``. Decided when A's ``voice.stopped`` comes (``conversation.interruption``),
  which the detector's delays order after B's ``voice.started`` (``hangover_ms`` is at least
  ``min_talk_ms``, as the defaults are; legs whose audio arrives out of step by more than the
  difference can miss one).
- **Talk ratio**: a channel's share of the channels' summed talk; **words per minute**:
  the words of its finals over its talk minutes.
- **First agent response**: from the end of the customer's first spurt to the start of the
  agent's first spurt that starts after the customer began (0 when the agent started
  before the customer's spurt ended); ``first_speaker`` says who talked first (an agent's
  greeting on an outbound call).

**Dead air** live: when nobody in the conversation is talking, :meth:`next_deadline` is the
moment the silence reaches ``dead_air_s`` on the bus clock (the conversation timeline is
placed on it at the first ``call.offered``: timeline 0 is that event's ``now``), plus the
detector's own delay (``min_talk_ms``, and :data:`SLACK_S` for audio still in the jitter
buffer), so a spurt that began just before the deadline is not missed; :meth:`on_timer`
emits ``conversation.dead_air`` once per silence. Not while a call of the conversation is
on hold (``call.media_changed``): a resumed call's silence counts from the resume.

At the ``call.ended`` of the conversation's last call, ``conversation.statistics`` with the
final figures goes out just before it; the conversation's state goes when that call is
forgotten. :meth:`TalkStatistics.snapshot` gives the figures so far for
``GET /v1/calls/{id}`` (open spurts counted up to ``now``).

Layer: pure core.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.config import TalkStatisticsConfig
from gateway.events.processing import ProcessorBase
from gateway.events.types import (
    CallEnded,
    CallMediaChanged,
    CallOffered,
    ChannelStats,
    ConversationInterrupted,
    ConversationStatistics,
    ConversationStats,
    DeadAirDetected,
    GatewayEvent,
    Interruption,
    TranscriptFinal,
    VoiceEnded,
    VoiceStarted,
    VoiceStopped,
)

AGENT = "agent"
CUSTOMER = "customer"
SLACK_S = 0.25
"""Added to a dead-air deadline for audio that reaches the detector late (jitter buffer)."""

Span = tuple[float, float]


# ------------------------------------------------------------------ state
@dataclass(slots=True)
class _Channel:
    spurts: list[Span] = field(default_factory=list)     # closed, in stop order
    open: dict[str, float] = field(default_factory=dict)  # call_id -> start of its spurt
    last_call: str = ""                                   # whose spurt closed last
    words: int = 0


@dataclass(slots=True)
class _Conversation:
    conversation_id: str
    anchor: float                                   # bus time of timeline 0
    calls: list[str] = field(default_factory=list)  # calls up, in offer order
    channels: dict[str, _Channel] = field(default_factory=dict)
    end_s: float = 0.0                              # latest timeline position known
    silent_from: float = 0.0                        # nobody has talked since (when silent)
    held: set[str] = field(default_factory=set)
    reported: bool = False                          # dead air of this silence reported
    version: int = 0                                # of its entry in the deadline heap
    interruptions: list[Interruption] = field(default_factory=list)
    counted: set[tuple[str, float]] = field(default_factory=set)  # interrupting spurts

    def channel(self, name: str) -> _Channel:
        found = self.channels.get(name)
        if found is None:
            found = self.channels[name] = _Channel()
        return found

    @property
    def talking(self) -> bool:
        return any(ch.open for ch in self.channels.values())


# ------------------------------------------------------------------ the processor
class TalkStatistics(ProcessorBase):
    """Per-conversation talk statistics and dead air (see the module docstring)."""

    name = "statistics"

    def __init__(self, config: TalkStatisticsConfig,
                 previous: TalkStatistics | None = None) -> None:
        self.config = config
        self._slack_s = config.min_talk_ms / 1000 + SLACK_S
        self._conversations: dict[str, _Conversation] = {}
        self._by_call: dict[str, str] = {}
        self._heap: list[tuple[float, int, str]] = []
        if previous is not None:       # a SIGHUP rebuild takes the running state over
            self._conversations = previous._conversations
            self._by_call = previous._by_call
            for conv in self._conversations.values():
                self._arm(conv)

    # ---------------------------------------------------------------- events
    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        if isinstance(event, VoiceStarted):
            self._started(event, now)
        elif isinstance(event, VoiceStopped):
            return (event, *self._stopped(event, now))
        elif isinstance(event, VoiceEnded):
            self._ended_audio(event, now)
        elif isinstance(event, TranscriptFinal):
            self._final(event)
        elif isinstance(event, CallOffered):
            self._offered(event, now)
        elif isinstance(event, CallMediaChanged):
            self._media_changed(event, now)
        elif isinstance(event, CallEnded):
            return (*self._call_ended(event), event)
        return (event,)

    def _offered(self, event: CallOffered, now: float) -> None:
        conv = self._conversation(event.conversation_id, now)
        if event.call_id not in conv.calls:
            conv.calls.append(event.call_id)
        self._by_call[event.call_id] = conv.conversation_id
        for name in event.channels:
            conv.channel(name)
        self._arm(conv)

    def _started(self, event: VoiceStarted, now: float) -> None:
        conv = self._voice_conversation(event.call_id, event.conversation_id,
                                        now - event.at_s)
        conv.channel(event.channel).open.setdefault(event.call_id, event.at_s)
        conv.end_s = max(conv.end_s, event.at_s)
        conv.reported = False
        self._arm(conv)

    def _stopped(self, event: VoiceStopped, now: float) -> list[GatewayEvent]:
        conv = self._voice_conversation(event.call_id, event.conversation_id,
                                        now - event.at_s)
        channel = conv.channel(event.channel)
        start = channel.open.pop(event.call_id, event.start_s)
        spurt = (min(start, event.start_s), event.at_s)
        channel.spurts.append(spurt)
        channel.last_call = event.call_id
        conv.end_s = max(conv.end_s, event.at_s)
        conv.silent_from = max(conv.silent_from, event.at_s)
        self._arm(conv)
        return [ConversationInterrupted(call_id=call_id, conversation_id=conv.conversation_id,
                                        interruption=found)
                for call_id, found in self._interruptions(conv, event.channel, spurt)]

    def _ended_audio(self, event: VoiceEnded, now: float) -> None:
        conv = self._voice_conversation(event.call_id, event.conversation_id,
                                        now - event.at_s)
        channel = conv.channel(event.channel)
        start = channel.open.pop(event.call_id, None)
        if start is not None:         # the call side closes spurts before; just in case
            channel.spurts.append((start, max(start, event.at_s)))
            conv.silent_from = max(conv.silent_from, event.at_s)
        conv.end_s = max(conv.end_s, event.at_s)
        self._arm(conv)

    def _final(self, event: TranscriptFinal) -> None:
        conv = self._find(event.call_id) or self._find(event.conversation_id or "")
        if conv is not None:
            words = len(event.words) if event.words else len(event.text.split())
            conv.channel(event.channel).words += words

    def _media_changed(self, event: CallMediaChanged, now: float) -> None:
        conv = self._find(event.call_id)
        if conv is None:
            return
        if event.state == "held":
            conv.held.add(event.call_id)
        elif event.call_id in conv.held:
            conv.held.discard(event.call_id)
            conv.silent_from = max(conv.silent_from, now - conv.anchor)
            conv.reported = False
        self._arm(conv)

    def _call_ended(self, event: CallEnded) -> list[GatewayEvent]:
        conv = self._find(event.call_id) or self._conversations.get(event.conversation_id)
        if conv is None:
            return []
        if event.call_id in conv.calls:
            conv.calls.remove(event.call_id)
        conv.held.discard(event.call_id)
        self._arm(conv)
        if conv.calls:
            return []
        return [ConversationStatistics(call_id=event.call_id,
                                       conversation_id=conv.conversation_id,
                                       statistics=self._stats(conv, _known_end(conv), True))]

    def forget_call(self, call_id: str) -> None:
        conversation_id = self._by_call.pop(call_id, None)
        conv = self._conversations.get(conversation_id or "")
        if conv is not None and not conv.calls:
            del self._conversations[conv.conversation_id]
            for other in [c for c, k in self._by_call.items() if k == conv.conversation_id]:
                del self._by_call[other]

    # ---------------------------------------------------------------- lookups
    def _conversation(self, conversation_id: str, anchor: float) -> _Conversation:
        conv = self._conversations.get(conversation_id)
        if conv is None:
            conv = self._conversations[conversation_id] = _Conversation(conversation_id, anchor)
        return conv

    def _voice_conversation(self, call_id: str, conversation_id: str,
                            anchor: float) -> _Conversation:
        """A voice event's conversation (made from it when its offer was not seen, as after
        a rebuild without the old state: the timeline's place on the clock is estimated)."""
        conv = self._conversation(conversation_id, anchor)
        if call_id not in self._by_call:
            self._by_call[call_id] = conversation_id
            conv.calls.append(call_id)
        return conv

    def _find(self, key: str) -> _Conversation | None:
        conv = self._conversations.get(self._by_call.get(key, key))
        return conv

    def snapshot(self, key: str, now: float | None = None) -> ConversationStats | None:
        """The figures so far of the conversation of a call (or a conversation id); with
        ``now`` (the bus clock), open spurts and the timeline run up to it."""
        conv = self._find(key)
        if conv is None:
            return None
        upto = _known_end(conv)
        if now is not None and math.isfinite(now):
            upto = max(upto, now - conv.anchor)
        return self._stats(conv, upto, False)

    # ---------------------------------------------------------------- interruptions
    def _interruptions(self, conv: _Conversation, stopped: str,
                       spurt: Span) -> list[tuple[str, Interruption]]:
        """Who interrupted the spurt that just stopped (see the module docstring)."""
        a0, a1 = spurt
        limit = self.config.interruption_ms / 1000
        found: list[tuple[str, Interruption]] = []
        for name, channel in conv.channels.items():
            if name == stopped:
                continue
            candidates = [(start, call_id) for call_id, start in channel.open.items()]
            if channel.spurts and channel.spurts[-1][1] > a1:
                candidates.append((channel.spurts[-1][0], channel.last_call))
            hits = sorted(c for c in candidates
                          if a0 < c[0] <= a1 and a1 - c[0] <= limit
                          and (name, c[0]) not in conv.counted)
            if hits:
                start, call_id = hits[0]
                conv.counted.add((name, start))
                interruption = Interruption(channel=name, interrupted=stopped,
                                            at_s=start, overlap_s=_r(a1 - start))
                conv.interruptions.append(interruption)
                found.append((call_id, interruption))
        return found

    # ---------------------------------------------------------------- dead air
    def _arm(self, conv: _Conversation) -> None:
        """A new heap entry for the conversation's dead-air deadline (old ones go stale)."""
        conv.version += 1
        if conv.reported or conv.held or not conv.calls or conv.talking:
            return
        deadline = conv.anchor + conv.silent_from + self.config.dead_air_s + self._slack_s
        heapq.heappush(self._heap, (deadline, conv.version, conv.conversation_id))

    def _live(self, entry: tuple[float, int, str]) -> _Conversation | None:
        conv = self._conversations.get(entry[2])
        return conv if conv is not None and conv.version == entry[1] else None

    def next_deadline(self) -> float | None:
        while self._heap and self._live(self._heap[0]) is None:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def on_timer(self, now: float) -> Sequence[GatewayEvent]:
        if not math.isfinite(now):     # closing down: a silence in progress is no event
            self._heap.clear()
            return ()
        out: list[GatewayEvent] = []
        while self._heap and self._heap[0][0] <= now:
            conv = self._live(heapq.heappop(self._heap))
            if conv is None:
                continue
            conv.reported = True
            conv.version += 1
            silent_s = max(self.config.dead_air_s,
                           now - conv.anchor - self._slack_s - conv.silent_from)
            out.append(DeadAirDetected(call_id=conv.calls[0],
                                       conversation_id=conv.conversation_id,
                                       start_s=_t(conv.silent_from), silent_s=_r(silent_s)))
        return out

    # ---------------------------------------------------------------- figures
    def _stats(self, conv: _Conversation, upto: float, final: bool) -> ConversationStats:
        spans = {name: _merged(_spans_of(ch, upto)) for name, ch in conv.channels.items()}
        talk_all = _merged(s for merged in spans.values() for s in merged)
        gaps = _gaps(talk_all, upto)
        dead = [g for g in gaps if g >= self.config.dead_air_s]
        total_talk = sum(_length(s) for s in spans.values())
        firsts = {name: s[0][0] for name, s in spans.items() if s}
        return ConversationStats(
            conversation_id=conv.conversation_id, final=final, duration_s=_r(upto),
            talk_s=_r(_length(talk_all)), non_talk_s=_r(upto - _length(talk_all)),
            longest_silence_s=_r(max(gaps, default=0.0)),
            overtalk_s=_r(_overtalk(spans.values())),
            dead_air=len(dead), dead_air_s=_r(sum(dead)),
            first_speaker=min(firsts, key=lambda n: firsts[n]) if firsts else None,
            first_agent_response_s=_response(spans.get(CUSTOMER, []), spans.get(AGENT, [])),
            interruptions=tuple(conv.interruptions),
            channels=tuple(self._channel_stats(conv, name, spans[name], upto, total_talk)
                           for name in _ordered(spans)))

    @staticmethod
    def _channel_stats(conv: _Conversation, name: str, spans: list[Span], upto: float,
                       total_talk: float) -> ChannelStats:
        talk = _length(spans)
        words = conv.channels[name].words
        return ChannelStats(
            channel=name, talk_s=_r(talk), silence_s=_r(upto - talk),
            longest_silence_s=_r(max(_gaps(spans, upto), default=0.0)), spurts=len(spans),
            interruptions=sum(1 for i in conv.interruptions if i.channel == name),
            interrupted=sum(1 for i in conv.interruptions if i.interrupted == name),
            talk_ratio=round(talk / total_talk, 3) if total_talk > 0 else None,
            words=words,
            words_per_minute=round(words * 60 / talk, 1) if talk > 0 else None,
            first_talk_s=_t(spans[0][0]) if spans else None)


# ------------------------------------------------------------------ interval arithmetic
def _known_end(conv: _Conversation) -> float:
    ends = [conv.end_s, *(start for ch in conv.channels.values() for start in ch.open.values())]
    return max(ends)


def _spans_of(channel: _Channel, upto: float) -> list[Span]:
    spans = [*channel.spurts, *((start, upto) for start in channel.open.values())]
    return [(max(0.0, a), min(b, upto)) for a, b in spans if min(b, upto) > max(0.0, a)]


def _merged(spans: Iterable[Span]) -> list[Span]:
    """The union of spans, as sorted disjoint spans."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _gaps(spans: list[Span], upto: float) -> list[float]:
    """Lengths of the stretches of [0, upto] outside sorted disjoint ``spans``."""
    edges = [0.0, *(x for span in spans for x in span), upto]
    return [b - a for a, b in zip(edges[::2], edges[1::2], strict=True) if b > a]


def _length(spans: Iterable[Span]) -> float:
    return sum(b - a for a, b in spans)


def _overtalk(channels: Iterable[list[Span]]) -> float:
    """Time with two or more channels talking (each channel's spans disjoint)."""
    edges = sorted((x, step) for spans in channels for a, b in spans
                   for x, step in ((a, 1), (b, -1)))
    total, talking, since = 0.0, 0, 0.0
    for x, step in edges:
        if talking >= 2:
            total += x - since
        talking += step
        since = x
    return total


def _response(customer: list[Span], agent: list[Span]) -> float | None:
    if not customer:
        return None
    c0, c1 = customer[0]
    later = [a for a, _b in agent if a > c0]
    return _r(max(0.0, later[0] - c1)) if later else None


def _ordered(spans: dict[str, list[Span]]) -> list[str]:
    return sorted(spans, key=lambda n: (n != AGENT, n != CUSTOMER, n))


def _r(seconds: float) -> float:
    """Seconds in the figures: to the millisecond (spurt edges are 20 ms frame edges)."""
    return round(seconds, 3) + 0.0


def _t(at_s: float) -> float:
    """A place on the timeline, as the voice events give it (to the 8 kHz sample)."""
    return round(at_s, 6) + 0.0
