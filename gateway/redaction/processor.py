"""The redacting processor: follows each call's channels and removes personal data from
every event before any sink sees it.

- **Finals** are tokenised (their words, and their text separately) and run through
  :func:`gateway.redaction.detect.detect`; each entity found becomes its tag (``[CARD]``,
  ``[CARD ****1111]`` with ``last4``), keeping the word timing (the tag's word spans the
  entity's words). The event gets a ``redaction`` block and is followed by a
  :class:`RedactionApplied` with the spans (the recorder masks that audio).
- **Across finals**: a final that ends in digits (a card number read in groups, one
  utterance each) is *held* for up to ``hold_s``; the channel's next final is detected
  together with it, so the whole number is found. Held finals go out, redacted, when a
  final does not continue the digits, when ``hold_s`` passes (:meth:`on_timer`), or at
  ``call.ended`` (before it).
- **Context**: an agent's final that asks for a card number, security code, date of birth,
  SSN ... (:func:`gateway.redaction.detect.asked_for`) makes the customer's digits within
  ``context_window_s`` count as that entity even when short. A customer's final that ends
  announcing one (``my social security number is``, the number cut off into the next final:
  :func:`gateway.redaction.detect.trailing_cues`) makes it the newest context of that
  channel's next final, for ``OWN_CUE_S``.
- **Partials** never show a digit run a final could redact: every run of three or more
  digits (any digits while a context is open or a final is held) is replaced by
  ``[DIGITS]``, and entities found in the partial by their tags.
- **Keypad**: in secure mode (``call.secure_changed``, or the ``secure_dtmf`` rule) a DTMF
  event's digit becomes the ``dtmf`` tag and its time span is reported for the recording.
- **Spoken replies** (``tts.*`` text) are redacted too (a bot reading a number back).

The processor is ``redacting`` (raw sinks get the event as it was) and ``fail_closed`` (an
event it fails on is dropped, never passed on unredacted).

Layer: pure core.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.config import RedactionConfig
from gateway.events.types import (
    CallEnded,
    CallOffered,
    CallSecureChanged,
    DtmfReceived,
    GatewayEvent,
    Redaction,
    RedactionApplied,
    RedactionSpan,
    ReplyInterrupted,
    ReplyStarted,
    TranscriptFinal,
    TranscriptPartial,
    TranscriptWord,
)
from gateway.redaction.detect import asked_for, detect, trailing_cues
from gateway.redaction.entities import (
    BUILTIN_ENTITIES,
    CARD,
    CVV,
    DTMF,
    EMAIL,
    CustomPattern,
    Found,
)
from gateway.redaction.numbers import digit_runs

PARTIAL_MASK = "[DIGITS]"
PARTIAL_PENDING = "[PENDING]"
"""What a partial shows after an e-mail cue (``my email is [PENDING]``) or for a word with
an ``@``: an address is only found once it is complete, so its pieces never show early."""
_EMAIL_CUES = frozenset({"email", "e-mail", "emails", "mail", "address"})
MAX_HELD = 8
"""At most this many finals of a channel are held together; the next one releases them."""
PARTIAL_RUN = 3
"""Digit runs at least this long are masked in partials (any length in a context)."""
HOLD_RUN = (3, 15)
"""A final whose trailing digit run (joined with the finals held before it) has this many
digits (inclusive) is held: fewer than a card, more than a quantity."""
AGENT = "agent"
OWN_CUE_S = 5.0
"""How long a customer's final that ends in a cue (``my social security number is``) makes
that entity the context of the channel's next final (the ASR cut the number off)."""

Transcript = TranscriptFinal | TranscriptPartial
T = TypeVar("T")


# ------------------------------------------------------------------ policy

@dataclass(frozen=True, slots=True)
class Policy:
    """What the config says, in the form the detectors and the replacer use."""

    entities: tuple[str, ...]
    last4: bool
    tags: dict[str, str]
    custom: tuple[CustomPattern, ...]
    context_window_s: float
    hold_s: float
    secure_dtmf: str

    @classmethod
    def from_config(cls, config: RedactionConfig) -> Policy:
        actions = {name: getattr(config.entities, name) for name in BUILTIN_ENTITIES}
        tags = {f.name: getattr(config.tags, f.name) for f in dataclasses.fields(config.tags)}
        for c in config.custom:
            tags[c.name] = c.tag or f"[{c.name.upper()}]"
        return cls(entities=tuple(e for e, a in actions.items() if a != "off"),
                   last4=actions[CARD] == "last4", tags=tags,
                   custom=tuple(CustomPattern(c.name, c.pattern) for c in config.custom),
                   context_window_s=config.context_window_s, hold_s=config.hold_s,
                   secure_dtmf=config.secure_dtmf)

    def tag(self, found: Found, show_last4: bool) -> str:
        tag = self.tags.get(found.entity, f"[{found.entity.upper()}]")
        if found.entity == CARD and self.last4 and show_last4 and found.last4:
            if tag.endswith("]"):
                return f"{tag[:-1]} ****{found.last4}]"
            return f"{tag} ****{found.last4}"
        return tag


# ------------------------------------------------------------------ per-call state

@dataclass(slots=True)
class _Channel:
    held: list[TranscriptFinal] = field(default_factory=list)
    deadline: float | None = None
    cues: tuple[str, ...] = ()       # what this channel's last final announced (trailing_cues)
    cues_until: float = 0.0

    def own_cues(self, now: float) -> tuple[str, ...]:
        return self.cues if now < self.cues_until else ()


@dataclass(slots=True)
class _Conversation:
    channels: dict[str, _Channel] = field(default_factory=dict)
    context: dict[str, float] = field(default_factory=dict)   # entity -> open until (now)

    def open_context(self, now: float) -> tuple[str, ...]:
        """The entities asked for and still open, oldest question first (the detectors try
        the newest first: "and the security code?" after the card number)."""
        return tuple(e for e, until in sorted(self.context.items(), key=lambda kv: kv[1])
                     if until > now)

    def channel(self, name: str) -> _Channel:
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = _Channel()
        return ch


# ------------------------------------------------------------------ text replacement

@dataclass(frozen=True, slots=True)
class _Segment:
    """One event's tokens inside a joined detection: tokens [offset, offset + count)."""

    offset: int
    count: int


def _tokens_of_words(event: Transcript) -> list[str]:
    return [w.word for w in event.words]


def _tokens_of_text(event: Transcript | ReplyStarted | ReplyInterrupted) -> list[str]:
    return event.text.split()


def _found_in(found: Sequence[Found], seg: _Segment) -> list[tuple[Found, int, int, bool]]:
    """The entities overlapping one segment, clipped to it: (found, start, end, is_last_part)
    with start/end relative to the segment."""
    out = []
    lo, hi = seg.offset, seg.offset + seg.count
    for f in found:
        if f.end <= lo or f.start >= hi:
            continue
        out.append((f, max(f.start, lo) - lo, min(f.end, hi) - lo, f.end <= hi))
    return out


def _splice(items: Sequence[T], pieces: Sequence[tuple[int, int, T]]) -> list[T]:
    """``items`` with each ordered, disjoint ``(start, end, item)`` piece: the items
    [start, end) replaced by that one item."""
    out: list[T] = []
    cursor = 0
    for start, end, item in pieces:
        out.extend(items[cursor:start])
        out.append(item)
        cursor = end
    out.extend(items[cursor:])
    return out


def _word_over(words: Sequence[TranscriptWord], start: int, end: int, text: str,
               confidence: float) -> TranscriptWord:
    """One word standing for ``words[start:end]``, spanning their times."""
    return TranscriptWord(word=text, start_s=words[start].start_s, end_s=words[end - 1].end_s,
                          confidence=confidence)


def _replace_tokens(tokens: Sequence[str], parts: Sequence[tuple[Found, int, int, bool]],
                    policy: Policy) -> list[str]:
    return _splice(tokens, [(start, end, policy.tag(found, last))
                            for found, start, end, last in parts])


def _replace_words(words: Sequence[TranscriptWord], parts: Sequence[tuple[Found, int, int, bool]],
                   policy: Policy) -> tuple[list[TranscriptWord], list[RedactionSpan]]:
    out = _splice(words, [(start, end, _word_over(words, start, end, policy.tag(found, last),
                                                  min(w.confidence for w in words[start:end])))
                          for found, start, end, last in parts])
    spans = [RedactionSpan(entity=found.entity, start_s=words[start].start_s,
                           end_s=words[end - 1].end_s) for found, start, end, _last in parts]
    return out, spans


def _segments(tokens: Sequence[Sequence[str]]) -> list[_Segment]:
    segs, offset = [], 0
    for toks in tokens:
        segs.append(_Segment(offset, len(toks)))
        offset += len(toks)
    return segs


@dataclass(frozen=True, slots=True)
class _Redacted:
    event: Transcript
    spans: tuple[RedactionSpan, ...]


def _redact_group(events: Sequence[Transcript], context: tuple[str, ...], policy: Policy
                  ) -> list[_Redacted]:
    """Detect over the events' tokens joined (words and text separately) and redact each."""
    word_tokens = [_tokens_of_words(e) for e in events]
    text_tokens = [_tokens_of_text(e) for e in events]
    word_found = _detect([t for toks in word_tokens for t in toks], context, policy)
    text_found = _detect([t for toks in text_tokens for t in toks], context, policy)
    word_segs = _segments(word_tokens)
    text_segs = _segments(text_tokens)
    out = []
    for i, event in enumerate(events):
        out.append(_redact_one(event, _found_in(word_found, word_segs[i]),
                               _found_in(text_found, text_segs[i]), text_tokens[i], policy))
    return out


def _detect(tokens: Sequence[str], context: tuple[str, ...], policy: Policy) -> list[Found]:
    if not tokens:
        return []
    return detect(tokens, context=context, custom=policy.custom, entities=policy.entities)


Part = tuple[Found, int, int, bool]


def _char_ranges(tokens: Sequence[str]) -> list[tuple[int, int]]:
    out, pos = [], 0
    for t in tokens:
        out.append((pos, pos + len(t)))
        pos += len(t)
    return out


def _aligned(text_tokens: Sequence[str], words: Sequence[str], in_text: Sequence[Part]
             ) -> list[Part] | None:
    """The text's entities on the words, by characters (spaces removed: Whisper's word pieces
    ``'4539,' '1488' '-0343'`` are the text ``4539, 1488-0343``); ``None`` when the two do not
    spell the same characters."""
    pieces = [w.strip() for w in words]
    if "".join(text_tokens).lower() != "".join(pieces).lower():
        return None
    text_at, word_at = _char_ranges(text_tokens), _char_ranges(pieces)
    out: list[Part] = []
    for found, start, end, last in in_text:
        lo, hi = text_at[start][0], text_at[end - 1][1]
        hit = [i for i, (a, b) in enumerate(word_at) if a < hi and b > lo]
        if not hit:
            return None
        out.append((found, hit[0], hit[-1] + 1, last))
    return out


def _merged(parts: Sequence[Part]) -> list[Part]:
    """Overlapping parts as one (the first's entity), in order."""
    out: list[Part] = []
    for part in sorted(parts, key=lambda p: (p[1], -p[2])):
        if out and part[1] < out[-1][2]:
            f, s, e, last = out[-1]
            out[-1] = (f, s, max(e, part[2]), last or part[3])
        else:
            out.append(part)
    return out


def _word_parts(event: Transcript, in_words: Sequence[Part], in_text: Sequence[Part],
                text_tokens: Sequence[str]) -> list[Part]:
    """What to replace in the words: what the words' own detection found, plus what the
    text's found, carried over by characters; when that cannot be done and the text found
    something, every word (better no word timing than a leaked number)."""
    if not in_text or not event.words:
        return list(in_words)
    carried = _aligned(text_tokens, [w.word for w in event.words], in_text)
    if carried is None:
        return [(in_text[0][0], 0, len(event.words), True)]
    return _merged([*in_words, *carried])


def _redact_one(event: Transcript, in_words: Sequence[Part], in_text: Sequence[Part],
                text_tokens: Sequence[str], policy: Policy) -> _Redacted:
    if not in_words and not in_text:
        return _Redacted(event, ())
    words, spans = _replace_words(event.words,
                                  _word_parts(event, in_words, in_text, text_tokens), policy)
    text = " ".join(_replace_tokens(text_tokens, in_text, policy))
    covered = {s.entity for s in spans}
    # Found in the text but not in the words (no words at all): the utterance's whole span.
    spans += [RedactionSpan(entity=f.entity, start_s=event.start_s, end_s=event.end_s)
              for f, _s, _e, _l in in_text if f.entity not in covered and not event.words]
    entities = tuple(dict.fromkeys([f.entity for f, *_ in in_words] +
                                   [f.entity for f, *_ in in_text]))
    redacted = dataclasses.replace(event, text=text, words=tuple(words),
                                   redaction=Redaction(entities=entities, spans=tuple(spans)))
    return _Redacted(redacted, tuple(spans))


def _applied(event: Transcript | DtmfReceived, spans: Sequence[RedactionSpan],
             segment: int | None) -> RedactionApplied:
    return RedactionApplied(call_id=event.call_id,
                            conversation_id=getattr(event, "conversation_id", None),
                            channel=event.channel, source=event.TYPE, segment=segment,
                            spans=tuple(spans))


def _mask_partial(event: TranscriptPartial, context: tuple[str, ...], held: bool,
                  policy: Policy) -> TranscriptPartial:
    """Entities by their tags, then every remaining digit run of ``PARTIAL_RUN`` digits (any
    digits in a context or while a final is held) as ``[DIGITS]``."""
    (done,) = _redact_group([event], context, policy)
    partial = _pending_email(done.event, context)
    assert isinstance(partial, TranscriptPartial)
    shortest = 1 if (context or held) else PARTIAL_RUN
    text_tokens = partial.text.split()
    text_runs = _partial_runs(text_tokens, shortest)
    word_runs = _partial_runs([w.word for w in partial.words], shortest)
    if not text_runs and not word_runs:
        return partial
    text = " ".join(_collapse(text_tokens, text_runs))
    words = _collapse_words(partial.words, word_runs)
    return dataclasses.replace(partial, text=text, words=tuple(words))


def _partial_runs(tokens: Sequence[str], shortest: int) -> list[tuple[int, int]]:
    """Token ranges a partial masks: digit runs of ``shortest`` digits, and any other word
    holding that many digit characters (``GB82WEST1234``: an IBAN being read)."""
    ranges = [(r.start, r.end) for r in digit_runs(tokens) if len(r.digits) >= shortest]
    inside = {i for a, b in ranges for i in range(a, b)}
    ranges += [(i, i + 1) for i, t in enumerate(tokens)
               if i not in inside and sum(c.isdigit() for c in t) >= shortest]
    return sorted(ranges)


def _email_tail(tokens: Sequence[str], asked: bool) -> int | None:
    """Where a partial's possible e-mail address starts: after its last e-mail cue, at the
    first word with an ``@``, or (the agent asked for the address) at its start."""
    low = [t.lower().strip(".,!?;:'\"") for t in tokens]
    cues = [i for i, t in enumerate(low) if t in _EMAIL_CUES]
    ats = [i for i, t in enumerate(tokens) if "@" in t]
    starts = ([cues[-1] + 1] if cues else []) + ats[:1] + ([0] if asked else [])
    start = min(starts) if starts else None
    return start if start is not None and start < len(tokens) else None


def _pending_email(event: Transcript, context: tuple[str, ...]) -> Transcript:
    asked = EMAIL in context
    text_tokens = event.text.split()
    t_at = _email_tail(text_tokens, asked)
    w_at = _email_tail([w.word for w in event.words], asked)
    if t_at is None and w_at is None:
        return event
    text = event.text if t_at is None else " ".join([*text_tokens[:t_at], PARTIAL_PENDING])
    words = list(event.words)
    if w_at is not None:
        words = _splice(words, [(w_at, len(words), _word_over(
            words, w_at, len(words), PARTIAL_PENDING, words[w_at].confidence))])
    return dataclasses.replace(event, text=text, words=tuple(words))


def _collapse(tokens: Sequence[str], runs: Sequence[tuple[int, int]]) -> list[str]:
    return _splice(tokens, [(start, end, PARTIAL_MASK) for start, end in runs])


def _collapse_words(words: Sequence[TranscriptWord], runs: Sequence[tuple[int, int]]
                    ) -> list[TranscriptWord]:
    return _splice(words, [(start, end, _word_over(words, start, end, PARTIAL_MASK,
                                                   words[start].confidence))
                           for start, end in runs])


def _ends_in_digits(events: Sequence[TranscriptFinal], context: tuple[str, ...]) -> bool:
    """Whether the finals' joined text ends in a digit run that could be the start of a
    longer number (a card read in groups): ``HOLD_RUN`` digits, or any short run while a
    context is open."""
    tokens = [t for e in events for t in e.text.split()]
    runs = digit_runs(tokens)
    if not runs or runs[-1].end < len(tokens):
        return False
    lo, hi = HOLD_RUN
    return (1 if context else lo) <= len(runs[-1].digits) <= hi


# ------------------------------------------------------------------ the processor

class Redactor:
    """The redaction processor (see the module docstring)."""

    name = "redaction"
    fail_closed = True
    redacting = True

    def __init__(self, config: RedactionConfig, previous: Redactor | None = None) -> None:
        self.policy = Policy.from_config(config)
        # State is per conversation (an agent leg and a customer leg joined by a correlation
        # header are two calls of one conversation: the agent's question opens the context
        # for the customer's call); secure mode is per call.
        self._calls: dict[str, _Conversation] = previous._calls if previous is not None else {}
        self._conv_of: dict[str, str] = previous._conv_of if previous is not None else {}
        self._secure_calls: set[str] = (previous._secure_calls if previous is not None
                                        else set())
        # The channels holding finals (few: asked after every event, so no scan of all calls)
        self._holding: dict[int, tuple[_Conversation, _Channel]] = (
            previous._holding if previous is not None else {})
        self._raw: dict[int, GatewayEvent] = {}

    # -------------------------------------------------------------- Processor
    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        self._raw.clear()
        if isinstance(event, TranscriptFinal):
            return self._final(event, now)
        if isinstance(event, TranscriptPartial):
            return self._partial(event, now)
        if isinstance(event, DtmfReceived):
            return self._dtmf(event, now)
        if isinstance(event, CallSecureChanged):
            (self._secure_calls.add if event.secure else self._secure_calls.discard)(
                event.call_id)
            return (event,)
        if isinstance(event, CallOffered):
            self._conv_of[event.call_id] = event.conversation_id
            return (event,)
        if isinstance(event, ReplyStarted | ReplyInterrupted):
            return (self._reply(event),)
        if isinstance(event, CallEnded):
            return [*self._release_call(event.call_id, now), event]
        return (event,)

    def next_deadline(self) -> float | None:
        deadlines = [ch.deadline for _c, ch in self._holding.values() if ch.deadline is not None]
        return min(deadlines) if deadlines else None

    def on_timer(self, now: float) -> Sequence[GatewayEvent]:
        self._raw.clear()
        out: list[GatewayEvent] = []
        for call, ch in list(self._holding.values()):
            if ch.deadline is not None and ch.deadline <= now:
                # judged at the deadline: a flush at close (now = inf) keeps the context
                out += self._release(call, ch, [], ch.deadline)
        return out

    def forget_call(self, call_id: str) -> None:
        key = self._conv_of.pop(call_id, call_id)
        self._secure_calls.discard(call_id)
        if key not in self._conv_of.values():
            gone = self._calls.pop(key, None)
            for ch in gone.channels.values() if gone is not None else ():
                self._holding.pop(id(ch), None)

    def raw_of(self, event: GatewayEvent) -> GatewayEvent | None:
        """The event as it came in, for an output of the last call that changed it."""
        return self._raw.get(id(event))

    # -------------------------------------------------------------- events
    def _call(self, call_id: str, conversation_id: str | None = None) -> _Conversation:
        """The state of the call's conversation (the call's own without one)."""
        if conversation_id is not None and call_id not in self._conv_of:
            self._conv_of[call_id] = conversation_id
        key = self._conv_of.get(call_id, call_id)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _Conversation()
        return call

    def _final(self, event: TranscriptFinal, now: float) -> list[GatewayEvent]:
        call = self._call(event.call_id, event.conversation_id)
        before: list[GatewayEvent] = []
        if event.channel == AGENT:
            # The agent speaking ends the customer's answer: what the customer's finals held
            # goes out first, judged under the question it answered.
            for name, other in call.channels.items():
                if name != AGENT:
                    before += self._release(call, other, [], now)
            self._learn_context(call, event, now)
        ch = call.channel(event.channel)
        context = self._context_for(call, event.channel, now)
        if (self.policy.hold_s > 0 and len(ch.held) < MAX_HELD
                and _ends_in_digits([*ch.held, event], context)):
            ch.held.append(event)
            if ch.deadline is None:
                ch.deadline = now + self.policy.hold_s
                self._holding[id(ch)] = (call, ch)
            return before
        out = before + self._release(call, ch, [event], now)
        if event.channel != AGENT:
            ch.cues = tuple(sorted(trailing_cues(event.text.split())))
            ch.cues_until = now + OWN_CUE_S
        return out

    def _release(self, call: _Conversation, ch: _Channel, more: list[TranscriptFinal], now: float
                 ) -> list[GatewayEvent]:
        group: list[Transcript] = [*ch.held, *more]
        ch.held, ch.deadline = [], None
        self._holding.pop(id(ch), None)
        if not group:
            return []
        context = self._context_for(call, group[-1].channel, now)
        out: list[GatewayEvent] = []
        for original, done in zip(group, _redact_group(group, context, self.policy),
                                  strict=True):
            out.append(done.event)
            if done.event is not original:
                self._raw[id(done.event)] = original
            if done.spans:
                out.append(_applied(done.event, done.spans, done.event.segment))
        return out

    def _release_call(self, call_id: str, now: float) -> list[GatewayEvent]:
        call = self._calls.get(self._conv_of.get(call_id, call_id))
        if call is None:
            return []
        out: list[GatewayEvent] = []
        for ch in call.channels.values():
            if any(e.call_id == call_id for e in ch.held):
                out += self._release(call, ch, [], now)
        return out

    def _partial(self, event: TranscriptPartial, now: float) -> list[GatewayEvent]:
        call = self._call(event.call_id, event.conversation_id)
        held = bool(call.channel(event.channel).held)
        masked = _mask_partial(event, self._context_for(call, event.channel, now), held,
                               self.policy)
        if masked is not event:
            self._raw[id(masked)] = event
        return [masked]

    def _dtmf(self, event: DtmfReceived, now: float) -> list[GatewayEvent]:
        if not self._secure(event.call_id, self._call(event.call_id), now):
            return [event]
        start, end = event.start_s, event.end_s
        spans = (() if start is None or end is None else
                 (RedactionSpan(entity=DTMF, start_s=start, end_s=end),))
        tag = self.policy.tags.get(DTMF, "[DTMF]")
        masked = dataclasses.replace(event, digit=tag)
        self._raw[id(masked)] = event
        return [masked, _applied(masked, spans, None)] if spans else [masked]

    def _reply(self, event: ReplyStarted | ReplyInterrupted) -> GatewayEvent:
        tokens = _tokens_of_text(event)
        found = _detect(tokens, (), self.policy)
        if not found:
            return event
        parts = [(f, f.start, f.end, True) for f in found]
        redacted = dataclasses.replace(event, text=" ".join(
            _replace_tokens(tokens, parts, self.policy)))
        self._raw[id(redacted)] = event
        return redacted

    # -------------------------------------------------------------- context
    def _learn_context(self, call: _Conversation, event: TranscriptFinal, now: float) -> None:
        for entity in asked_for(event.text.split()):
            call.context[entity] = now + self.policy.context_window_s

    def _context_for(self, call: _Conversation, channel: str, now: float) -> tuple[str, ...]:
        """The agent's open questions count for the other channels, not for the agent; what
        the channel's own last final announced comes last (the newest)."""
        if channel == AGENT:
            return ()
        asked = call.open_context(now)
        own = call.channel(channel).own_cues(now)
        return (*(e for e in asked if e not in own), *own) if own else asked

    def _secure(self, call_id: str, call: _Conversation, now: float) -> bool:
        rule = self.policy.secure_dtmf
        if call_id in self._secure_calls or rule == "always":
            return True
        asked = call.open_context(now)
        return rule == "after_card_request" and (CARD in asked or CVV in asked)
