"""The conversation summary (issue 17): one document per conversation, and its renderings.

:class:`SummaryBuilder` folds the events of one conversation (``call.offered`` and
``call.answered`` for participants and channels, ``transcript.final`` for the turns, the
rule outcomes and statistics of the other analytics processors, model-based signals,
``call.ended``) into a :class:`~gateway.events.types.SummaryDocument`; :func:`to_text` and
:func:`to_webvtt` render its turns as a speaker-labelled transcript and as WebVTT
(``HH:MM:SS.mmm`` cue times, ``<v Agent>`` voice spans). The JSON form is
``gateway.events.types.to_wire(document)``.

:class:`Summarizer` is the processor: it runs after redaction (the finals it folds are
the redacted ones) and after the other analytics processors, and when the last call of a
conversation ends (a conversation joined by ``X-Conversation-Id`` has several) it returns
``conversation.summary`` just before that ``call.ended``. A conversation's state goes when
its last call is forgotten (``forget_call``). No summary for a conversation in which no
call was answered. At the bus's close (``ProcessingStage.flush``) a conversation whose
last call never ended still gets its summary, marked ``asr_complete = false``.

Layer: pure core.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.events.processing import ProcessorBase
from gateway.events.types import (
    AssistHint,
    CallAnswered,
    CallEnded,
    CallOffered,
    CategoryMatched,
    ComplianceMissed,
    CompliancePassed,
    ConversationStatistics,
    ConversationStats,
    ConversationSummary,
    Evidence,
    GatewayEvent,
    ModelSignal,
    RedactionApplied,
    SiprecMetadataUpdated,
    SummaryCall,
    SummaryCategory,
    SummaryCompliance,
    SummaryDocument,
    SummaryHint,
    SummaryParticipant,
    SummarySignal,
    SummaryTurn,
    SummaryWord,
    TranscriptFinal,
)


# ------------------------------------------------------------------ the builder
@dataclass(slots=True)
class _Call:
    call_id: str
    offered: CallOffered | None = None
    answered: bool = False
    ended: CallEnded | None = None
    participants: tuple[SummaryParticipant, ...] = ()


@dataclass(slots=True)
class _Folded:
    """What one conversation's events said so far."""

    calls: dict[str, _Call] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)
    turns: list[SummaryTurn] = field(default_factory=list)
    categories: dict[str, list[Evidence]] = field(default_factory=dict)
    compliance: list[SummaryCompliance] = field(default_factory=list)
    hints: list[SummaryHint] = field(default_factory=list)
    signals: list[SummarySignal] = field(default_factory=list)
    statistics: ConversationStats | None = None
    redacted: list[str] = field(default_factory=list)


class SummaryBuilder:
    """Folds the events of one conversation, in the order the stage passed them."""

    def __init__(self, conversation_id: str, started_at: float) -> None:
        self.conversation_id = conversation_id
        self.started_at = started_at
        self.last_at = started_at
        """When its last event came (what ``build`` uses when the end never came)."""
        self._f = _Folded()

    @property
    def answered(self) -> bool:
        """Whether any call of the conversation was answered."""
        return any(c.answered for c in self._f.calls.values())

    def call_ids(self) -> tuple[str, ...]:
        return tuple(self._f.calls)

    def ended(self, call_id: str) -> bool:
        call = self._f.calls.get(call_id)
        return call is not None and call.ended is not None

    def add(self, event: GatewayEvent) -> None:
        if isinstance(event, TranscriptFinal):
            self._final(event)
        elif isinstance(event, CategoryMatched):
            self._f.categories.setdefault(event.rule, []).append(event.evidence)
        elif isinstance(event, CompliancePassed | ComplianceMissed):
            self._f.compliance.append(_compliance(event))
        elif isinstance(event, AssistHint):
            self._f.hints.append(SummaryHint(rule=event.rule, hint=event.hint,
                                             evidence=event.evidence))
        elif isinstance(event, ConversationStatistics):
            self._f.statistics = event.statistics
        elif isinstance(event, ModelSignal):
            self._f.signals.append(_signal(event))
        elif isinstance(event, RedactionApplied):
            self._redacted(span.entity for span in event.spans)
        elif isinstance(event, CallOffered):
            self._offered(event)
        elif isinstance(event, CallAnswered):
            self._call(event.call_id).answered = True
            self._channels(event.channels)
        elif isinstance(event, SiprecMetadataUpdated):
            self._siprec_update(event)
        elif isinstance(event, CallEnded):
            self._ended(event)

    def build(self, ended_at: float) -> SummaryDocument:
        f = self._f
        ended = [c.ended for c in f.calls.values() if c.ended is not None]
        recordings = [e.recording for e in ended if e.recording]
        return SummaryDocument(
            conversation_id=self.conversation_id, started_at=round(self.started_at, 3),
            ended_at=round(ended_at, 3),
            duration_s=round(max(0.0, ended_at - self.started_at), 3),
            calls=tuple(_summary_call(c) for c in f.calls.values()),
            participants=tuple(p for c in f.calls.values() for p in c.participants),
            channels=tuple(f.channels),
            turns=tuple(sorted(f.turns, key=lambda t: (t.start_s, t.end_s))),
            categories=tuple(SummaryCategory(rule=rule, matches=tuple(matches))
                             for rule, matches in f.categories.items()),
            compliance=tuple(f.compliance), hints=tuple(f.hints),
            signals=tuple(sorted(f.signals, key=lambda s: (s.start_s, s.type))),
            statistics=f.statistics,
            redacted=tuple(f.redacted),
            asr_complete=all(c.ended is not None and c.ended.asr_finals_flushed
                             for c in f.calls.values()),
            recording=recordings[-1] if recordings else None)

    # ----------------------------------------------------------------- folds
    def _call(self, call_id: str) -> _Call:
        call = self._f.calls.get(call_id)
        if call is None:
            call = self._f.calls[call_id] = _Call(call_id)
        return call

    def _channels(self, channels: Iterable[str | None]) -> None:
        for channel in channels:
            if channel is not None and channel not in self._f.channels:
                self._f.channels.append(channel)

    def _redacted(self, entities: Iterable[str]) -> None:
        for entity in entities:
            if entity not in self._f.redacted:
                self._f.redacted.append(entity)

    def _offered(self, event: CallOffered) -> None:
        call = self._call(event.call_id)
        call.offered = event
        call.participants = _participants(event)
        self._channels(event.channels or (event.channel,))

    def _siprec_update(self, event: SiprecMetadataUpdated) -> None:
        call = self._call(event.call_id)
        call.participants = tuple(
            _party(channel, event.call_id, who.name, who.aor, who.id) if who is not None
            else _party(channel, event.call_id, None, None, None)
            for channel, who in zip(event.channels, event.participants, strict=False))

    def _ended(self, event: CallEnded) -> None:
        call = self._call(event.call_id)
        call.ended = event
        call.answered = call.answered or event.answered
        self._channels(event.channels)

    def _final(self, event: TranscriptFinal) -> None:
        entities = event.redaction.entities if event.redaction is not None else ()
        self._redacted(entities)
        self._channels((event.channel,))
        self._f.turns.append(SummaryTurn(
            speaker=event.channel, start_s=event.start_s, end_s=event.end_s, text=event.text,
            confidence=_confidence(event), call_id=event.call_id, segment=event.segment,
            redacted=entities, words=summary_words(event)))


def build_summary(conversation_id: str, events: Iterable[GatewayEvent], started_at: float,
                  ended_at: float) -> SummaryDocument:
    """The document of a conversation's events, folded at once (batch, tests)."""
    builder = SummaryBuilder(conversation_id, started_at)
    for event in events:
        builder.add(event)
    return builder.build(ended_at)


def _participants(event: CallOffered) -> tuple[SummaryParticipant, ...]:
    if not event.siprec:
        channel = event.channel or (event.channels[0] if event.channels else "")
        return (_party(channel, event.call_id, event.from_display, event.from_uri, None),)
    return tuple(
        _party(channel, event.call_id, who.name if who else None, who.aor if who else None,
               who.id if who else None)
        for channel, who in zip(event.channels, event.participants, strict=False))


def _party(channel: str, call_id: str, name: str | None, uri: str | None,
           participant_id: str | None) -> SummaryParticipant:
    return SummaryParticipant(channel=channel, call_id=call_id, name=name, uri=uri,
                              participant_id=participant_id)


def _summary_call(call: _Call) -> SummaryCall:
    offered, ended = call.offered, call.ended
    channels = (offered.channels if offered is not None
                else ended.channels if ended is not None else ())
    sip_call_id = (offered.sip_call_id if offered is not None
                   else ended.sip_call_id if ended is not None else "")
    return SummaryCall(
        call_id=call.call_id, sip_call_id=sip_call_id, channels=channels,
        from_uri=offered.from_uri if offered else None,
        to_uri=offered.to_uri if offered else None, answered=call.answered,
        duration_s=ended.duration_s if ended else 0.0,
        reason=ended.reason if ended else None,
        agent_id=_header(offered.headers, AGENT_ID_HEADER) if offered else None)


AGENT_ID_HEADER = "X-Agent-Id"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A copied header's value, its name matched case-insensitively."""
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _confidence(event: TranscriptFinal) -> float | None:
    if not event.words:
        return None
    return round(sum(w.confidence for w in event.words) / len(event.words), 3)


def summary_words(event: TranscriptFinal) -> tuple[SummaryWord, ...]:
    """The final's (redacted) words; a redaction tag word is told by its times: the
    redactor gives the tag the span's exact start and end (``redaction.spans``), so each
    span marks the first word not yet marked with those times, whatever the tag's text."""
    spans = list(event.redaction.spans) if event.redaction is not None else []
    out = []
    for w in event.words:
        tag = None
        for i, span in enumerate(spans):
            if span.start_s == w.start_s and span.end_s == w.end_s:
                tag = spans.pop(i).entity
                break
        out.append(SummaryWord(word=w.word, start_s=w.start_s, end_s=w.end_s,
                               confidence=w.confidence, tag=tag))
    return tuple(out)


def _compliance(event: CompliancePassed | ComplianceMissed) -> SummaryCompliance:
    missed = isinstance(event, ComplianceMissed)
    return SummaryCompliance(
        rule=event.rule, check=event.check, passed=not missed,
        reason=event.reason if isinstance(event, ComplianceMissed) else None,
        evidence=event.evidence, trigger=event.trigger, deadline_s=event.deadline_s)


def _signal(event: ModelSignal) -> SummarySignal:
    return SummarySignal(type=event.TYPE, channel=event.channel, segment=event.segment,
                         start_s=event.start_s, end_s=event.end_s, label=event.label,
                         score=event.score, model=event.model)


# ------------------------------------------------------------------ renderings
def timestamp(seconds: float) -> str:
    """``HH:MM:SS.mmm`` (WebVTT cue timing; hours past 99 keep their digits)."""
    ms = max(0, round(seconds * 1000))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def speaker_label(speaker: str) -> str:
    """``agent`` -> ``Agent``."""
    return speaker[:1].upper() + speaker[1:]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def to_text(doc: SummaryDocument) -> str:
    """The transcript, one turn a line: ``[HH:MM:SS.mmm] Agent: text``."""
    lines = [f"Conversation {doc.conversation_id}", ""]
    lines += [f"[{timestamp(t.start_s)}] {speaker_label(t.speaker)}: {_one_line(t.text)}"
              for t in doc.turns]
    return "\n".join(lines) + "\n"


def to_webvtt(doc: SummaryDocument) -> str:
    """WebVTT: a cue per turn, in start order, the speaker as a voice span."""
    blocks = ["WEBVTT"]
    for number, turn in enumerate(doc.turns, 1):
        end_s = max(turn.end_s, turn.start_s + 0.001)    # a cue must end after it starts
        blocks.append(f"{number}\n{timestamp(turn.start_s)} --> {timestamp(end_s)}\n"
                      f"<v {_escape(speaker_label(turn.speaker))}>"
                      f"{_escape(_one_line(turn.text))}")
    return "\n\n".join(blocks) + "\n"


def _escape(text: str) -> str:
    """Cue text: ``&``, ``<`` and ``>`` as character references (no markup, no ``-->``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ------------------------------------------------------------------ the processor
class Summarizer(ProcessorBase):
    """Emits ``conversation.summary`` before the ``call.ended`` of a conversation's last
    call. ``previous`` (a SIGHUP rebuild) hands over the conversations in progress."""

    name = "summary"

    def __init__(self, previous: Summarizer | None = None) -> None:
        self._builders: dict[str, SummaryBuilder] = {}      # conversation_id -> builder
        self._conversation_of: dict[str, str] = {}          # call_id -> conversation_id
        self._members: dict[str, set[str]] = {}             # conversation_id -> call_ids
        if previous is not None:
            self._builders = previous._builders
            self._conversation_of, self._members = previous._conversation_of, previous._members

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        builder = self._builder(event, now)
        if builder is None:
            return (event,)
        builder.add(event)
        builder.last_at = now
        if isinstance(event, CallEnded) and self._last_call(builder):
            summary = ConversationSummary(call_id=event.call_id,
                                          conversation_id=builder.conversation_id,
                                          summary=builder.build(now))
            return (summary, event)
        return (event,)

    def on_timer(self, now: float) -> Sequence[GatewayEvent]:
        """Only at the bus's close (``flush``: ``now`` is infinite): the conversations whose
        last call never ended get their summary now (``asr_complete`` false), as of their
        last event, instead of none."""
        if not math.isinf(now):
            return ()
        out = [ConversationSummary(call_id=self._last_call_id(b),
                                   conversation_id=b.conversation_id,
                                   summary=b.build(b.last_at))
               for b in self._builders.values() if b.answered]
        self._builders.clear()
        self._conversation_of.clear()
        self._members.clear()
        return out

    def _last_call_id(self, builder: SummaryBuilder) -> str:
        return builder.call_ids()[-1]

    def forget_call(self, call_id: str) -> None:
        conversation_id = self._conversation_of.pop(call_id, None)
        if conversation_id is None:
            return
        members = self._members.get(conversation_id, set())
        members.discard(call_id)
        if not members:
            self._members.pop(conversation_id, None)
            self._builders.pop(conversation_id, None)

    def conversations(self) -> int:
        """Conversations with state held (tests: nothing outlives its calls)."""
        return len(self._builders)

    def _builder(self, event: GatewayEvent, now: float) -> SummaryBuilder | None:
        if event.call_id is None or isinstance(event, ConversationSummary):
            return None
        conversation_id = self._conversation_of.get(event.call_id)
        if conversation_id is None:
            conversation_id = getattr(event, "conversation_id", None)
            if not isinstance(conversation_id, str):
                return None
            self._conversation_of[event.call_id] = conversation_id
            self._members.setdefault(conversation_id, set()).add(event.call_id)
        builder = self._builders.get(conversation_id)
        if builder is None:
            builder = self._builders[conversation_id] = SummaryBuilder(conversation_id, now)
        return builder

    def _last_call(self, builder: SummaryBuilder) -> bool:
        """Every call of the conversation that is still known has ended (and one was
        answered: no summary of a conversation nobody spoke in)."""
        calls = self._members.get(builder.conversation_id, set())
        return builder.answered and all(builder.ended(c) for c in calls)
