"""Typed gateway events: one frozen dataclass per event type, and the wire envelope.

Layer: pure core (no asyncio, no I/O, no clock reads; the bus stamps ``ts`` and ``seq``).

Each class names what happened, in the past tense (``CallAnswered``), and keeps the dotted
wire type that consumers filter on (``TYPE = "call.answered"``). Producers build the event;
the :class:`~gateway.events.bus.EventBus` runs it through the processing stage and wraps
each result in an :class:`Envelope` (``v``, ``type``, ``ts``, ``seq``, ``call_id``), which
is what every consumer receives. On the wire an event is one flat JSON object: the envelope
keys, then the event's fields. ``gateway/events/events.schema.json`` is generated from these
classes (``python -m gateway.events.schema --write``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Annotated, Any, ClassVar, get_type_hints

SCHEMA_VERSION = 1
"""``v`` of the envelope: raised when a field changes meaning or goes away (adding is not)."""


@dataclass(frozen=True, slots=True)
class Doc:
    """``Annotated`` marker: the field's description in the schema."""

    text: str


@dataclass(frozen=True, slots=True)
class Wire:
    """``Annotated`` marker: the field's JSON name when it differs (a Python keyword)."""

    name: str


class GatewayEvent:
    """Base of every event type; subclasses are frozen, keyword-only dataclasses."""

    __slots__ = ()
    TYPE: ClassVar[str]
    call_id: str | None


# ------------------------------------------------------------------ parts of events
@dataclass(frozen=True, slots=True, kw_only=True)
class Party:
    """A SIPREC participant as the recording metadata names it."""

    id: str
    aor: str | None
    name: str | None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Party | None:
        if d is None:
            return None
        return cls(id=str(d["id"]), aor=d.get("aor"), name=d.get("name"))


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptWord:
    """One recognised word; times in seconds on the conversation timeline."""

    word: str
    start_s: float
    end_s: float
    confidence: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RedactionSpan:
    """One redacted stretch: what kind of entity, and when (never its value)."""

    entity: Annotated[str, Doc("card, cvv, expiry, ssn, bank_account, routing, iban, phone, "
                               "email, dob, dtmf or a custom pattern's name")]
    start_s: Annotated[float, Doc("seconds on the conversation timeline")]
    end_s: Annotated[float, Doc("seconds on the conversation timeline")]


@dataclass(frozen=True, slots=True, kw_only=True)
class Redaction:
    """What the redaction stage removed from an event (types and time spans only)."""

    entities: Annotated[tuple[str, ...], Doc("entity types removed, each once, in order")]
    spans: tuple[RedactionSpan, ...]


# ------------------------------------------------------------------ call lifecycle
@dataclass(frozen=True, slots=True, kw_only=True)
class CallOffered(GatewayEvent):
    """An INVITE was accepted for processing (before media is open and the call answered)."""

    TYPE: ClassVar[str] = "call.offered"
    call_id: str
    conversation_id: str
    channel: Annotated[str | None, Doc("the leg's channel; null for SIPREC (see channels)")]
    channels: Annotated[tuple[str, ...], Doc("channel of each accepted audio stream")]
    siprec: Annotated[bool, Doc("a SIPREC recording session (one stream per participant)")]
    participants: Annotated[tuple[Party | None, ...], Doc("SIPREC participant of each stream")]
    session_id: Annotated[str | None, Doc("SIPREC recording session id")]
    sip_call_id: str
    from_uri: Annotated[str, Doc("From URI"), Wire("from")]
    from_display: str | None
    to_uri: Annotated[str, Doc("To URI"), Wire("to")]
    request_uri: str
    remote: Annotated[str, Doc("signalling peer as host:port")]
    transport: str
    headers: Annotated[Mapping[str, str], Doc("the INVITE's X- and correlation headers")]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(GatewayEvent):
    """An INVITE was answered with an error before any call existed."""

    TYPE: ClassVar[str] = "call.rejected"
    call_id: None = None
    status: int
    reason: str
    source: Annotated[str, Doc("sender as host:port")]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(GatewayEvent):
    """The gateway answered 200 OK; media ports are open."""

    TYPE: ClassVar[str] = "call.answered"
    call_id: str
    sip_call_id: str
    conversation_id: str
    channels: tuple[str, ...]
    ports: Annotated[tuple[int | None, ...], Doc("RTP port per offered stream, null: refused")]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMediaChanged(GatewayEvent):
    """A re-INVITE or UPDATE changed the media (hold, resume, new address)."""

    TYPE: ClassVar[str] = "call.media_changed"
    call_id: str
    state: Annotated[str, Doc("held or confirmed")]
    directions: Annotated[tuple[str, ...], Doc("the peer's direction per accepted stream")]


@dataclass(frozen=True, slots=True, kw_only=True)
class SiprecMetadataUpdated(GatewayEvent):
    """New SIPREC metadata moved participants; each stream keeps its channel."""

    TYPE: ClassVar[str] = "siprec.metadata_updated"
    call_id: str
    participants: tuple[Party | None, ...]
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(GatewayEvent):
    """The call is over and its last transcripts are out; the call's last event."""

    TYPE: ClassVar[str] = "call.ended"
    call_id: str
    reason: str
    by: Annotated[str, Doc("who ended it: remote, local, api, ...")]
    answered: bool
    duration_s: Annotated[float, Doc("from answer to end; 0 when never answered")]
    sip_call_id: str
    conversation_id: str
    channels: tuple[str, ...]
    legs: Annotated[tuple[Mapping[str, Any], ...], Doc("RTP and audio statistics per leg")]
    asr_finals_flushed: Annotated[bool, Doc("every ASR stream gave its final in time")]
    recording: Annotated[str | None, Doc("recording path, when this call closed it")]


# ------------------------------------------------------------------ media and transcripts
@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfReceived(GatewayEvent):
    """A keypad digit (RFC 4733 telephone-event)."""

    TYPE: ClassVar[str] = "dtmf"
    call_id: str
    channel: str
    digit: Annotated[str, Doc('"0"-"9", "*", "#", "A"-"D", "flash" or "event-<n>"')]
    duration_ms: int
    end_seen: Annotated[bool, Doc("false: reported without its end packets")]
    start_s: Annotated[float | None, Doc(
        "seconds on the conversation timeline where the tone began (null: not known)")] = None
    end_s: Annotated[float | None, Doc(
        "seconds on the conversation timeline where the tone ended (null: not known)")] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Transcript(GatewayEvent):
    call_id: str
    channel: str
    participant: Annotated[Party | None, Doc("the channel's SIPREC participant")]
    conversation_id: str | None
    text: str
    segment: Annotated[int, Doc("utterance number within the channel's ASR stream")]
    start_s: Annotated[float, Doc("seconds on the conversation timeline")]
    end_s: Annotated[float, Doc("seconds on the conversation timeline")]
    words: tuple[TranscriptWord, ...]
    latency_s: Annotated[float | None, Doc("audio sent to result received")]
    redaction: Annotated[Redaction | None, Doc("what redaction removed; null: nothing")] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptPartial(_Transcript):
    """An interim hypothesis of the current utterance; later ones replace it."""

    TYPE: ClassVar[str] = "transcript.partial"


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptFinal(_Transcript):
    """The final text of one utterance."""

    TYPE: ClassVar[str] = "transcript.final"


# ------------------------------------------------------------------ redaction
@dataclass(frozen=True, slots=True, kw_only=True)
class CallSecureChanged(GatewayEvent):
    """Secure (keypad) mode went on or off: while on, DTMF digits are masked in events and
    their audio is suppressed in the recording (IVR card capture)."""

    TYPE: ClassVar[str] = "call.secure_changed"
    call_id: str
    secure: bool
    by: Annotated[str, Doc("api or rule")]


@dataclass(frozen=True, slots=True, kw_only=True)
class RedactionApplied(GatewayEvent):
    """The redaction stage removed personal data from one event of a channel; the
    recorder silences (or tones over) these spans of that channel's audio."""

    TYPE: ClassVar[str] = "redaction.applied"
    call_id: str
    conversation_id: str | None
    channel: str
    source: Annotated[str, Doc("type of the redacted event (transcript.final, dtmf, ...)")]
    segment: Annotated[int | None, Doc("the transcript's segment, when a transcript")]
    spans: tuple[RedactionSpan, ...]


# ------------------------------------------------------------------ voice activity, statistics
_TIMELINE = "seconds on the conversation timeline"


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceStarted(GatewayEvent):
    """A channel began a talk spurt (voice activity of its decoded audio, 20 ms frames);
    reported once the spurt counts (``statistics.min_talk_ms`` of voiced audio)."""

    TYPE: ClassVar[str] = "voice.started"
    call_id: str
    conversation_id: str
    channel: str
    at_s: Annotated[float, Doc(_TIMELINE + " where the spurt began (its first voiced frame)")]


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceStopped(GatewayEvent):
    """A channel's talk spurt ended: no voiced frame for ``statistics.hangover_ms``, or the
    channel's audio ended."""

    TYPE: ClassVar[str] = "voice.stopped"
    call_id: str
    conversation_id: str
    channel: str
    start_s: Annotated[float, Doc(_TIMELINE + " where the spurt began")]
    at_s: Annotated[float, Doc(_TIMELINE + " where its last voiced frame ended")]
    talk_s: Annotated[float, Doc("the spurt's length (at_s - start_s)")]


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceEnded(GatewayEvent):
    """A channel's audio ended (its leg closed): its silence counts up to here."""

    TYPE: ClassVar[str] = "voice.ended"
    call_id: str
    conversation_id: str
    channel: str
    at_s: Annotated[float, Doc(_TIMELINE + " where the channel's audio ended")]


@dataclass(frozen=True, slots=True, kw_only=True)
class Interruption:
    """One channel took the floor from another (see ``conversation.interruption``)."""

    channel: Annotated[str, Doc("who interrupted")]
    interrupted: Annotated[str, Doc("whose spurt was cut")]
    at_s: Annotated[float, Doc(_TIMELINE + " where the interrupting spurt began")]
    overlap_s: Annotated[float, Doc("both talking, from at_s to the interrupted one's stop")]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationInterrupted(GatewayEvent):
    """A channel started talking while another talked, and the other stopped within
    ``statistics.interruption_ms`` while it went on."""

    TYPE: ClassVar[str] = "conversation.interruption"
    call_id: Annotated[str, Doc("the interrupting channel's call")]
    conversation_id: str
    interruption: Interruption


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadAirDetected(GatewayEvent):
    """Nobody in the conversation has talked for ``statistics.dead_air_s`` (once per silence;
    not while a call is on hold)."""

    TYPE: ClassVar[str] = "conversation.dead_air"
    call_id: Annotated[str, Doc("the conversation's earliest call still up")]
    conversation_id: str
    start_s: Annotated[float, Doc(_TIMELINE + " where the last talk spurt ended")]
    silent_s: Annotated[float, Doc("how long nobody had talked when this was reported")]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStats:
    """Talk statistics of one channel of a conversation (from its talk spurts)."""

    channel: str
    talk_s: Annotated[float, Doc("seconds in talk spurts")]
    silence_s: Annotated[float, Doc("duration_s - talk_s (no audio counts as silence)")]
    longest_silence_s: Annotated[float, Doc("the longest stretch without its talk")]
    spurts: Annotated[int, Doc("talk spurts")]
    interruptions: Annotated[int, Doc("times it interrupted another channel")]
    interrupted: Annotated[int, Doc("times another channel interrupted it")]
    talk_ratio: Annotated[float | None, Doc(
        "its share of all channels' talk time, 0..1; null: nobody talked")]
    words: Annotated[int, Doc("words of its finals")]
    words_per_minute: Annotated[float | None, Doc("words per minute of talk; null: no talk")]
    first_talk_s: Annotated[float | None, Doc(_TIMELINE + " of its first spurt; null: none")]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationStats:
    """Talk statistics of one conversation, from the voice activity of each channel's
    decoded audio (spans exact to the 20 ms frame); the timeline starts at 0 (the first
    call offered) and ends at ``duration_s``."""

    conversation_id: str
    final: Annotated[bool, Doc("true at the conversation's end; false: a live snapshot "
                               "(open spurts counted up to now)")]
    duration_s: Annotated[float, Doc("the conversation timeline up to its last audio")]
    talk_s: Annotated[float, Doc("someone talking")]
    non_talk_s: Annotated[float, Doc("nobody talking (duration_s - talk_s)")]
    longest_silence_s: Annotated[float, Doc("the longest stretch with nobody talking")]
    overtalk_s: Annotated[float, Doc("two or more channels talking at once")]
    dead_air: Annotated[int, Doc("stretches of nobody talking of dead_air_s or more")]
    dead_air_s: Annotated[float, Doc("their total length")]
    first_speaker: Annotated[str | None, Doc("the channel that talked first")]
    first_agent_response_s: Annotated[float | None, Doc(
        "from the end of the customer's first spurt to the start of the agent's first spurt "
        "after the customer began (0: the agent began before it ended); null: no such pair")]
    interruptions: tuple[Interruption, ...]
    channels: Annotated[tuple[ChannelStats, ...], Doc("per channel, agent first")]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationStatistics(GatewayEvent):
    """A conversation ended (its last call): its final talk statistics, just before that
    call's ``call.ended``."""

    TYPE: ClassVar[str] = "conversation.statistics"
    call_id: Annotated[str, Doc("the conversation's last call")]
    conversation_id: str
    statistics: ConversationStats


# ------------------------------------------------------------------ spoken replies
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyStarted(GatewayEvent):
    """The first RTP packet of a spoken reply was sent."""

    TYPE: ClassVar[str] = "tts.started"
    call_id: str
    reply_id: str
    source: Annotated[str, Doc("api, bot, greeting or recording_notice")]
    text: str
    barge_in: bool
    latency_s: Annotated[float, Doc("reply requested to first packet sent")]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyFinished(GatewayEvent):
    """A spoken reply played to its end."""

    TYPE: ClassVar[str] = "tts.finished"
    call_id: str
    reply_id: str
    played_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyInterrupted(GatewayEvent):
    """A spoken reply was cut (barge-in, hangup); queued replies were dropped."""

    TYPE: ClassVar[str] = "tts.interrupted"
    call_id: str
    reply_id: str
    reason: str
    played_ms: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyFailed(GatewayEvent):
    """Speech synthesis failed for a reply."""

    TYPE: ClassVar[str] = "tts.failed"
    call_id: str
    reply_id: str
    error: str


# ------------------------------------------------------------- rules: categories, compliance, hints
@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """The utterance a phrase rule matched: a redacted final, and where the phrase was."""

    call_id: str
    channel: str
    segment: Annotated[int, Doc("the final's segment")]
    text: Annotated[str, Doc("the final's text, as the sinks got it (redacted)")]
    phrase: Annotated[str, Doc("the rule's phrase that matched, as configured")]
    matched: Annotated[str, Doc("the words that matched it, as recognised")]
    score: Annotated[float, Doc("word similarity of the match: 1 exact, lower fuzzy")]
    start_s: Annotated[float, Doc("the final's start, seconds on the conversation timeline")]
    end_s: Annotated[float, Doc("the final's end, seconds on the conversation timeline")]
    match_start_s: Annotated[float, Doc("where the matched words begin (the final's start "
                                        "when it has no word times)")]
    match_end_s: Annotated[float, Doc("where the matched words end")]


@dataclass(frozen=True, slots=True, kw_only=True)
class CategoryMatched(GatewayEvent):
    """A category rule matched (``[[analytics.rules]]`` with ``kind = "category"``)."""

    TYPE: ClassVar[str] = "category.matched"
    call_id: str
    conversation_id: str | None
    rule: Annotated[str, Doc("the rule's name")]
    evidence: Evidence


@dataclass(frozen=True, slots=True, kw_only=True)
class CompliancePassed(GatewayEvent):
    """A compliance rule was met: a required phrase was said in time (``evidence``), or a
    forbidden one was not said in the conversation (``evidence`` null)."""

    TYPE: ClassVar[str] = "compliance.passed"
    call_id: str
    conversation_id: str | None
    rule: Annotated[str, Doc("the rule's name")]
    check: Annotated[str, Doc("required or forbidden")]
    evidence: Annotated[Evidence | None, Doc("where the required phrase was said")]
    trigger: Annotated[Evidence | None, Doc("the match of the ``after`` rule that started "
                                            "the check; null: from the conversation's start")]
    deadline_s: Annotated[float | None, Doc("by when it had to be said, seconds on the "
                                            "conversation timeline; null: by the end")]


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplianceMissed(GatewayEvent):
    """A compliance rule was broken: a required phrase not said by its deadline or by the
    conversation's end, or a forbidden phrase said (``evidence``)."""

    TYPE: ClassVar[str] = "compliance.missed"
    call_id: str
    conversation_id: str | None
    rule: Annotated[str, Doc("the rule's name")]
    check: Annotated[str, Doc("required or forbidden")]
    reason: Annotated[str, Doc("deadline (not said by deadline_s), ended (the conversation "
                               "ended first) or said (a forbidden phrase)")]
    evidence: Annotated[Evidence | None, Doc("where the forbidden phrase was said")]
    trigger: Annotated[Evidence | None, Doc("the match of the ``after`` rule that started "
                                            "the check; null: from the conversation's start")]
    deadline_s: Annotated[float | None, Doc("by when it had to be said, seconds on the "
                                            "conversation timeline; null: by the end")]


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistHint(GatewayEvent):
    """Guidance for the agent's screen: a hint rule matched (the retention offer when the
    customer says "cancel")."""

    TYPE: ClassVar[str] = "assist.hint"
    call_id: Annotated[str, Doc("the conversation's agent call (where the agent's screen "
                                "listens), else the call of the utterance")]
    conversation_id: str | None
    rule: Annotated[str, Doc("the rule's name")]
    hint: Annotated[str, Doc("the text to show the agent")]
    evidence: Evidence


# ------------------------------------------------------------------ model-based signals
@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSignal(GatewayEvent):
    """Base of the events of signal processors (sentiment, intent ...; issue 17): a label
    and a score for one final of a channel. The conversation summary collects every event
    of a subclass into its ``signals``; a new signal is a subclass with its own ``TYPE``."""

    call_id: str
    conversation_id: str | None
    channel: str
    segment: Annotated[int, Doc("the final's segment")]
    start_s: Annotated[float, Doc("seconds on the conversation timeline")]
    end_s: Annotated[float, Doc("seconds on the conversation timeline")]
    label: Annotated[str, Doc("the signal's verdict (positive, negative, neutral ...)")]
    score: Annotated[float, Doc("strength: -1..1 for sentiment, 0..1 for a class")]
    model: Annotated[str, Doc("what produced it (lexicon, a Triton model's name)")]


@dataclass(frozen=True, slots=True, kw_only=True)
class SentimentScored(ModelSignal):
    """The sentiment of one final (``[analytics] sentiment``; lexicon-based by default)."""

    TYPE: ClassVar[str] = "sentiment.scored"


# ------------------------------------------------------------------ conversation summary
@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryCall:
    """One SIP call (leg) of a summarised conversation."""

    call_id: str
    sip_call_id: str
    channels: tuple[str, ...]
    from_uri: Annotated[str | None, Doc("From URI"), Wire("from")]
    to_uri: Annotated[str | None, Doc("To URI"), Wire("to")]
    answered: bool
    duration_s: Annotated[float, Doc("from answer to end; 0 when never answered")]
    reason: Annotated[str | None, Doc("why it ended; null: it had not ended")]
    agent_id: Annotated[str | None, Doc(
        "the INVITE's X-Agent-Id header (sip.copy_headers); null: none")] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryParticipant:
    """Who was on one channel of a call: the caller of a leg, a SIPREC participant."""

    channel: str
    call_id: str
    name: Annotated[str | None, Doc("display name (From, or SIPREC metadata)")]
    uri: Annotated[str | None, Doc("From URI of a leg, AOR of a SIPREC participant")]
    participant_id: Annotated[str | None, Doc("SIPREC participant id")]


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryTurn:
    """One final of the (redacted) transcript."""

    speaker: Annotated[str, Doc("the channel: agent or customer")]
    start_s: Annotated[float, Doc("seconds on the conversation timeline")]
    end_s: Annotated[float, Doc("seconds on the conversation timeline")]
    text: Annotated[str, Doc("as the sinks got it: redacted")]
    confidence: Annotated[float | None, Doc("mean word confidence; null: no words")]
    call_id: str
    segment: int
    redacted: Annotated[tuple[str, ...], Doc("entity types redaction removed from it")]
    words: Annotated[tuple[SummaryWord, ...], Doc(
        "its words as the sinks got them (redacted), in order")] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryWord:
    """One word of a turn; a redaction tag is one word, its entity in ``tag``.

    The tag (``[CARD]``) spans the times of the entity's words."""

    word: str
    start_s: Annotated[float, Doc("seconds on the conversation timeline")]
    end_s: Annotated[float, Doc("seconds on the conversation timeline")]
    confidence: float
    tag: Annotated[str | None, Doc("the entity (card ...) when the word is a redaction tag; "
                                   "null: a word as heard")] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SummarySignal:
    """One model-based signal (a ``ModelSignal`` event) of a final."""

    type: Annotated[str, Doc("the event type (sentiment.scored ...)")]
    channel: str
    segment: int
    start_s: float
    end_s: float
    label: str
    score: float
    model: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryCategory:
    """A category rule that matched in the conversation, with every match."""

    rule: str
    matches: Annotated[tuple[Evidence, ...], Doc("each category.matched, in order")]


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryCompliance:
    """The outcome of one compliance check (a compliance.passed or compliance.missed)."""

    rule: str
    check: Annotated[str, Doc("required or forbidden")]
    passed: bool
    reason: Annotated[str | None, Doc("why it was missed (deadline, ended, said); null: "
                                      "passed")]
    evidence: Evidence | None
    trigger: Evidence | None
    deadline_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryHint:
    """An assist.hint shown to the agent."""

    rule: str
    hint: str
    evidence: Evidence


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryDocument:
    """What happened in one conversation, as written to ``<stamp>-<id>.summary.json``."""

    conversation_id: str
    started_at: Annotated[float, Doc("Unix time of its first event")]
    ended_at: Annotated[float, Doc("Unix time of its last call's end")]
    duration_s: Annotated[float, Doc("ended_at - started_at")]
    calls: tuple[SummaryCall, ...]
    participants: tuple[SummaryParticipant, ...]
    channels: Annotated[tuple[str, ...], Doc("channels that had a stream, first seen first")]
    turns: Annotated[tuple[SummaryTurn, ...], Doc("finals by start time")]
    categories: Annotated[tuple[SummaryCategory, ...], Doc("by first match")]
    compliance: Annotated[tuple[SummaryCompliance, ...], Doc("in the order decided")]
    hints: tuple[SummaryHint, ...]
    signals: tuple[SummarySignal, ...]
    statistics: Annotated[ConversationStats | None, Doc(
        "the talk statistics at its end (conversation.statistics); null: [statistics] off")]
    redacted: Annotated[tuple[str, ...], Doc("entity types removed anywhere, each once")]
    asr_complete: Annotated[bool, Doc("every ASR stream gave its last final in time")]
    recording: Annotated[str | None, Doc("the conversation's recording, when recorded")]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationSummary(GatewayEvent):
    """A conversation ended (its last call): the whole summary document, just before that
    call's ``call.ended``. Written beside the recording as JSON, text and WebVTT."""

    TYPE: ClassVar[str] = "conversation.summary"
    call_id: Annotated[str, Doc("the conversation's last call")]
    conversation_id: str
    summary: SummaryDocument


# ------------------------------------------------------------------ consent
@dataclass(frozen=True, slots=True, kw_only=True)
class _ConsentDecision(GatewayEvent):
    call_id: str
    conversation_id: str
    channel: str
    purpose: Annotated[str, Doc("what the consent is for (consent.purpose: asr_training)")]
    source: Annotated[str, Doc("header:<name>, rule:<name>, siprec, ivr_dtmf, api or cli")]
    at: Annotated[float, Doc("Unix time of the decision")]
    policy_version: str
    evidence: Annotated[str, Doc("why, in short words; never personal data")]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentGranted(_ConsentDecision):
    """A channel's material may be used for ``purpose`` (recorded in the consent store)."""

    TYPE: ClassVar[str] = "consent.granted"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentDeclined(_ConsentDecision):
    """A channel's material must not be used for ``purpose``: denied, or not answered."""

    TYPE: ClassVar[str] = "consent.declined"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentWithdrawn(GatewayEvent):
    """A conversation's consent was withdrawn: it is left out of every later export."""

    TYPE: ClassVar[str] = "consent.withdrawn"
    call_id: Annotated[str | None, Doc("a live call of the conversation; null: none live")]
    conversation_id: str
    reason: str
    source: Annotated[str, Doc("api or cli")]
    at: Annotated[float, Doc("Unix time of the withdrawal")]
    grants_withdrawn: Annotated[int, Doc("grants (channel and purpose) that were in force")]
    channels: Annotated[tuple[str, ...], Doc("channels whose grants were withdrawn")]


EVENT_CLASSES: tuple[type[GatewayEvent], ...] = (
    CallOffered, CallRejected, CallAnswered, CallMediaChanged, SiprecMetadataUpdated, CallEnded,
    DtmfReceived, TranscriptPartial, TranscriptFinal, CallSecureChanged, RedactionApplied,
    ReplyStarted, ReplyFinished, ReplyInterrupted, ReplyFailed,
    VoiceStarted, VoiceStopped, VoiceEnded, ConversationInterrupted, DeadAirDetected,
    ConversationStatistics,
    CategoryMatched, CompliancePassed, ComplianceMissed, AssistHint,
    SentimentScored, ConversationSummary,
    ConsentGranted, ConsentDeclined, ConsentWithdrawn,
)
EVENT_TYPES: Mapping[str, type[GatewayEvent]] = {c.TYPE: c for c in EVENT_CLASSES}


# ------------------------------------------------------------------ wire form
_wire_names: dict[type, tuple[tuple[str, str], ...]] = {}


def wire_fields(cls: type) -> tuple[tuple[str, str], ...]:
    """(attribute, JSON name) of each field of a dataclass, in declaration order."""
    names = _wire_names.get(cls)
    if names is None:
        hints = get_type_hints(cls, include_extras=True)
        names = tuple((f.name, _wire_of(hints[f.name], f.name)) for f in fields(cls))
        _wire_names[cls] = names
    return names


def _wire_of(hint: Any, default: str) -> str:
    for extra in getattr(hint, "__metadata__", ()):
        if isinstance(extra, Wire):
            return extra.name
    return default


_SCALAR_TYPES = (str, int, float, bool, type(None))


def to_wire(value: Any) -> Any:
    """A JSON-ready copy: dataclasses as objects (wire names), tuples as lists."""
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return value
    if kind is tuple or kind is list:
        return [to_wire(v) for v in value]
    if hasattr(kind, "__dataclass_fields__"):
        return {wire: to_wire(getattr(value, attr)) for attr, wire in wire_fields(kind)}
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    return value


def payload(event: GatewayEvent) -> dict[str, Any]:
    """The event's own fields in wire form, without the envelope's ``call_id``."""
    wire = to_wire(event)
    assert isinstance(wire, dict)
    wire.pop("call_id", None)
    return wire


@dataclass(frozen=True)
class Envelope:
    """One event as delivered: stamped once by the bus, after the processing stage."""

    event: GatewayEvent
    ts: float
    seq: int
    v: int = SCHEMA_VERSION
    raw: GatewayEvent | None = field(default=None, repr=False)
    """The event before the redacting processors changed it (``None``: unchanged); only a
    sink configured with ``raw = true`` gets it, through :meth:`unredacted`."""

    @property
    def type(self) -> str:
        return self.event.TYPE

    def unredacted(self) -> Envelope:
        """This envelope as a raw sink gets it: same ``ts`` and ``seq``, the raw event."""
        return self if self.raw is None else Envelope(self.raw, self.ts, self.seq, self.v)

    @property
    def call_id(self) -> str | None:
        return self.event.call_id

    @cached_property
    def _wire(self) -> dict[str, Any]:
        return {"v": self.v, "type": self.type, "ts": round(self.ts, 6), "seq": self.seq,
                "call_id": self.call_id, **payload(self.event)}

    def to_dict(self) -> dict[str, Any]:
        """A fresh copy of the wire object (callers may change it)."""
        return dict(self._wire)

    @cached_property
    def json(self) -> str:
        return json.dumps(self._wire, separators=(",", ":"), default=str)

    def to_json(self) -> str:
        return self.json
