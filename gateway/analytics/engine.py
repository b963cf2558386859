"""The rules processor of the event stage: phrase rules on the redacted finals of each
conversation, with categories, compliance checks and hints for the agent's screen.

It runs after redaction, so it matches the text the sinks get (``[CARD]`` where a card
number was). State is per **conversation** (the calls joined by ``X-Conversation-Id``; a
call without one is its own), dropped when its last call is forgotten.

**Matching.** Each ``transcript.final`` (partials are not matched) is normalised
(:mod:`gateway.analytics.text`) and every rule's phrases are found in one pass
(:class:`gateway.analytics.rules.PhraseIndex`); a phrase counts for a rule when the final's
channel is the rule's (``agent``, ``customer``, ``either``) and the match is in the rule's
window. Rules are evaluated in the order that puts a rule after the one it follows.

**Windows**, judged on the conversation timeline (the transcripts' ``start_s``/``end_s``
and word times; the match's own words' times when the final has them):

- ``first_s = N``: the matched words begin within the first N s;
- ``last_s = N``: they begin within the last N s of the conversation: decided when it
  ends (its last ``call.ended``; the end is the later of its last final's end and its last
  call's answer + duration), the outcomes go out just before that ``call.ended``;
- ``after = "rule"`` (and ``within_s = N``): they begin at or after the start of a match of
  that rule (its window included), and within N s of that match's end (no ``within_s``:
  any time after). A rule without phrases matches wherever its ``after`` rule matches.

**Outcomes.** ``category``: a ``category.matched``; ``hint``: an ``assist.hint`` (its
``call_id`` is the conversation's agent call, where the agent's screen listens); both once
per conversation, or once per matching final with ``once = false``. ``compliance``:

- *required* (the default): a check opens at the conversation's start (deadline
  ``first_s``, or its end) or at each match of its ``after`` rule (deadline ``within_s``
  after that match, or the end; once, or again after each result with ``once = false``).
  A match in time is a ``compliance.passed`` with the evidence; none by the deadline a
  ``compliance.missed`` (reason ``deadline``), none by the end one with reason ``ended``.
  With ``last_s``: judged at the end on the last N s;
- *forbidden* (``forbidden = true``): a match in the window is a ``compliance.missed``
  (reason ``said``); none in the whole conversation a ``compliance.passed`` at its end.

**Time base of deadlines.** Matches are judged on the conversation timeline; the timer is
on the bus clock (``now``). The processor anchors the timeline at the ``now`` of the
conversation's first ``call.answered`` (before one: its first event, less that event's
``end_s`` when it is a transcript) and fires a deadline ``d`` at ``anchor + d + late_s``:
``late_s`` (``analytics.late_s``, 5 s) is the allowance for a final that arrives after
what it says was said (ASR latency, a final held by redaction). A final said by the
deadline passes even when it arrives within that allowance; one said after it does not.

**Reload.** A new processor takes over its predecessor's conversations: the rules still
configured (by name) go on with their new definitions, pending checks keep their
deadlines (re-timed with the new ``late_s``), and rules added by the reload apply from the
next conversation on.

Layer: pure core.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from gateway.analytics.rules import AGENT, CATEGORY, HINT, Hit, PhraseIndex, Rule, compile_rules
from gateway.analytics.text import Word, normalise
from gateway.config import AnalyticsConfig
from gateway.events.processing import ProcessorBase
from gateway.events.types import (
    AssistHint,
    CallAnswered,
    CallEnded,
    CallOffered,
    CategoryMatched,
    ComplianceMissed,
    CompliancePassed,
    Evidence,
    GatewayEvent,
    TranscriptFinal,
)

MAX_TRIGGERS = 16
"""Matches of a rule kept per conversation for the rules that follow it (newest)."""
REQUIRED, FORBIDDEN = "required", "forbidden"


# ------------------------------------------------------------------ per-conversation state

@dataclass(slots=True)
class _Call:
    channels: set[str] = field(default_factory=set)
    answered_at: float | None = None
    end_s: float = 0.0               # answer + duration on the timeline, once ended
    ended: bool = False


@dataclass(slots=True)
class _Check:
    """A required phrase being waited for."""

    serial: int
    rule: str
    since_s: float                   # matches beginning from here count
    deadline_s: float | None         # timeline; None: by the end
    trigger: Evidence | None
    due: float | None = None         # bus clock: anchor + deadline + late_s


@dataclass(slots=True)
class _Conversation:
    key: str
    conversation_id: str | None
    anchor: float
    rules: frozenset[str]
    calls: dict[str, _Call] = field(default_factory=dict)
    answered: bool = False
    fired: set[str] = field(default_factory=set)
    checks: dict[str, _Check] = field(default_factory=dict)
    triggers: dict[str, list[Evidence]] = field(default_factory=dict)
    tail: dict[str, list[Evidence]] = field(default_factory=dict)
    last_end_s: float = 0.0
    ended: bool = False

    def call_for(self, channel: str) -> str:
        """A call of the conversation that carries ``channel`` (else its first call)."""
        for call_id, call in self.calls.items():
            if channel in call.channels:
                return call_id
        return next(iter(self.calls))


@dataclass(slots=True)
class _Final:
    """One final as the rules see it: its normalised words and where each came from."""

    event: TranscriptFinal
    tokens: list[str]
    times: list[tuple[float, float]]
    words: list[Word]

    @classmethod
    def of(cls, event: TranscriptFinal) -> _Final:
        if event.words:
            tokens = [w.word for w in event.words]
            times = [(w.start_s, w.end_s) for w in event.words]
        else:
            tokens = event.text.split()
            times = [(event.start_s, event.end_s)] * len(tokens)
        return cls(event, tokens, times, normalise(tokens))

    def evidence(self, hit: Hit) -> Evidence:
        first, end = self.words[hit.start].first, self.words[hit.end - 1].end
        e = self.event
        return Evidence(call_id=e.call_id, channel=e.channel, segment=e.segment, text=e.text,
                        phrase=hit.phrase.text, matched=" ".join(self.tokens[first:end]),
                        score=round(hit.score, 3), start_s=e.start_s, end_s=e.end_s,
                        match_start_s=self.times[first][0],
                        match_end_s=self.times[end - 1][1])


# ------------------------------------------------------------------ the processor

class RulesProcessor(ProcessorBase):
    """The analytics rules processor (see the module docstring)."""

    name = "analytics"
    fail_closed = False
    redacting = False

    def __init__(self, config: AnalyticsConfig, previous: RulesProcessor | None = None
                 ) -> None:
        self.rules = compile_rules(config)
        self.late_s = config.late_s
        self._by_name = {r.name: r for r in self.rules}
        self._followers: dict[str, list[Rule]] = {}
        for rule in self.rules:
            if rule.after:
                self._followers.setdefault(rule.after, []).append(rule)
        self._index = PhraseIndex(self.rules)
        self._convs: dict[str, _Conversation] = {}
        self._call_conv: dict[str, str] = {}
        self._heap: list[tuple[float, int, str, str]] = []   # due, serial, conv key, rule
        self._serial: Iterator[int] = itertools.count()
        if previous is not None:
            self._take_over(previous)

    # -------------------------------------------------------------- Processor
    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        if isinstance(event, TranscriptFinal):
            return [event, *self._final(event, now)]
        if isinstance(event, CallEnded):
            return [*self._ended(event), event]
        if isinstance(event, CallOffered | CallAnswered):
            self._joined(event, now)
        return (event,)

    def next_deadline(self) -> float | None:
        while self._heap and self._stale(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def on_timer(self, now: float) -> Sequence[GatewayEvent]:
        out: list[GatewayEvent] = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if self._stale(entry):
                continue
            conv = self._convs[entry[2]]
            check = conv.checks.pop(entry[3])
            rule = self._by_name[check.rule]
            out.append(_missed(conv, rule, conv.call_for(_channel_of(rule)), "deadline",
                               None, check))
        return out

    def forget_call(self, call_id: str) -> None:
        key = self._call_conv.pop(call_id, None)
        conv = self._convs.get(key) if key is not None else None
        if conv is None:
            return
        conv.calls.pop(call_id, None)
        if not conv.calls:
            del self._convs[conv.key]

    # -------------------------------------------------------------- conversations
    def _conversation(self, call_id: str, conversation_id: str | None, now: float,
                      offset_s: float = 0.0) -> tuple[_Conversation, _Call]:
        key = self._call_conv.setdefault(call_id, conversation_id or call_id)
        conv = self._convs.get(key)
        if conv is None:
            conv = self._convs[key] = _Conversation(key, conversation_id, now - offset_s,
                                                    frozenset(self._by_name))
            for rule in self.rules:
                if rule.required and not rule.after and rule.last_s is None:
                    self._open(conv, rule, None)
        call = conv.calls.get(call_id)
        if call is None:
            call = conv.calls[call_id] = _Call()
        return conv, call

    def _joined(self, event: CallOffered | CallAnswered, now: float) -> None:
        conv, call = self._conversation(event.call_id, event.conversation_id, now)
        call.channels.update(event.channels)
        if isinstance(event, CallOffered) and event.channel:
            call.channels.add(event.channel)
        if isinstance(event, CallAnswered):
            call.answered_at = now
            if not conv.answered:              # the timeline starts with the first answer
                conv.answered, conv.anchor = True, now
                for check in conv.checks.values():
                    self._schedule(conv, check)

    def _take_over(self, previous: RulesProcessor) -> None:
        self._convs, self._call_conv = previous._convs, previous._call_conv
        self._serial = previous._serial
        for conv in self._convs.values():
            conv.rules = conv.rules & self._by_name.keys()
            conv.checks = {name: c for name, c in conv.checks.items() if name in conv.rules}
            for check in conv.checks.values():
                self._schedule(conv, check)

    # -------------------------------------------------------------- finals
    def _final(self, event: TranscriptFinal, now: float) -> list[GatewayEvent]:
        conv, call = self._conversation(event.call_id, event.conversation_id, now,
                                        event.end_s)
        call.channels.add(event.channel)
        if conv.ended:
            return []
        conv.last_end_s = max(conv.last_end_s, event.end_s)
        final = _Final.of(event)
        hits: dict[int, list[Hit]] = {}
        for hit in self._index.find([w.stem for w in final.words],
                                    [w.surface for w in final.words]):
            hits.setdefault(hit.phrase.rule, []).append(hit)
        return self._evaluate(conv, final, hits)

    def _evaluate(self, conv: _Conversation, final: _Final, hits: dict[int, list[Hit]]
                  ) -> list[GatewayEvent]:
        """The rules with hits in this final, and those without phrases that follow a rule
        that matched, in evaluation order."""
        todo = sorted(hits)
        fresh: dict[str, list[Evidence]] = {}
        out: list[GatewayEvent] = []
        while todo:
            rule = self.rules[heapq.heappop(todo)]
            if rule.name not in conv.rules:
                continue
            if rule.phrases:
                found = [final.evidence(h) for h in hits.get(rule.index, ())
                         if rule.hears(final.event.channel)]
            else:
                found = fresh.get(rule.after, [])
            matched = self._matched(conv, rule, found, out)
            if matched:
                fresh[rule.name] = matched
                for follower in self._followers.get(rule.name, ()):
                    if not follower.phrases and follower.index not in todo:
                        heapq.heappush(todo, follower.index)
        return out

    def _matched(self, conv: _Conversation, rule: Rule, found: list[Evidence],
                 out: list[GatewayEvent]) -> list[Evidence]:
        """Act on a rule's matches in one final; the ones in its window."""
        if not found:
            return []
        if rule.last_s is not None:
            self._keep_tail(conv, rule, found)
            return []
        if rule.required:
            said = self._said(conv, rule, found)
            if said is None:
                return []
            out.append(said)
            matched = [said.evidence] if said.evidence is not None else []
        else:
            matched = [e for e in found if self._in_window(conv, rule, e)]
            if not matched:
                return []
            if not (rule.once and rule.name in conv.fired):
                conv.fired.add(rule.name)
                out.append(self._outcome(conv, rule, matched[0]))
        triggers = conv.triggers.setdefault(rule.name, [])
        triggers.extend(matched)
        del triggers[:-MAX_TRIGGERS]
        for follower in self._followers.get(rule.name, ()):
            if follower.required:
                self._open(conv, follower, matched[0])
        return matched

    def _in_window(self, conv: _Conversation, rule: Rule, e: Evidence) -> bool:
        if rule.first_s is not None:
            return e.match_start_s <= rule.first_s
        if rule.after:
            trigger = _latest(conv.triggers.get(rule.after, ()), e.match_start_s)
            return trigger is not None and (
                rule.within_s is None or e.match_start_s <= trigger.match_end_s + rule.within_s)
        return True

    def _outcome(self, conv: _Conversation, rule: Rule, e: Evidence) -> GatewayEvent:
        """The event of a category, hint or forbidden rule that matched."""
        if rule.kind == CATEGORY:
            return CategoryMatched(call_id=e.call_id, conversation_id=conv.conversation_id,
                                   rule=rule.name, evidence=e)
        if rule.kind == HINT:
            return AssistHint(call_id=conv.call_for(AGENT), conversation_id=conv.conversation_id,
                              rule=rule.name, hint=rule.hint, evidence=e)
        trigger = _latest(conv.triggers.get(rule.after, ()), e.match_start_s)
        return ComplianceMissed(call_id=e.call_id, conversation_id=conv.conversation_id,
                                rule=rule.name, check=FORBIDDEN, reason="said", evidence=e,
                                trigger=trigger, deadline_s=None)

    # -------------------------------------------------------------- required checks
    def _open(self, conv: _Conversation, rule: Rule, trigger: Evidence | None) -> None:
        if rule.name in conv.checks or (rule.once and rule.name in conv.fired):
            return
        conv.fired.add(rule.name)
        if trigger is None:
            since, deadline = 0.0, rule.first_s
        else:
            since = trigger.match_start_s
            deadline = None if rule.within_s is None else trigger.match_end_s + rule.within_s
        check = conv.checks[rule.name] = _Check(next(self._serial), rule.name, since,
                                                deadline, trigger)
        self._schedule(conv, check)

    def _schedule(self, conv: _Conversation, check: _Check) -> None:
        if check.deadline_s is None:
            return
        check.due = conv.anchor + check.deadline_s + self.late_s
        heapq.heappush(self._heap, (check.due, check.serial, conv.key, check.rule))

    def _stale(self, entry: tuple[float, int, str, str]) -> bool:
        due, serial, key, name = entry
        conv = self._convs.get(key)
        check = conv.checks.get(name) if conv is not None else None
        return check is None or check.serial != serial or check.due != due

    def _said(self, conv: _Conversation, rule: Rule, found: list[Evidence]
              ) -> CompliancePassed | None:
        """The check of a required rule passed by one of these matches, if one is in time."""
        check = conv.checks.get(rule.name)
        if check is None:
            return None
        for e in found:
            late = check.deadline_s is not None and e.match_start_s > check.deadline_s
            if e.match_start_s >= check.since_s and not late:
                del conv.checks[rule.name]
                return _passed(conv, rule, e.call_id, e, check)
        return None

    # -------------------------------------------------------------- conversation end
    def _keep_tail(self, conv: _Conversation, rule: Rule, found: list[Evidence]) -> None:
        """Matches of a ``last_s`` rule that may still turn out to be in the last N s."""
        assert rule.last_s is not None
        since = conv.last_end_s - rule.last_s
        tail = conv.tail.setdefault(rule.name, [])
        tail.extend(found)
        tail[:] = [e for e in tail if e.match_start_s >= since]

    def _ended(self, event: CallEnded) -> list[GatewayEvent]:
        key = self._call_conv.get(event.call_id)
        conv = self._convs.get(key) if key is not None else None
        if conv is None or conv.ended:
            return []
        call = conv.calls.setdefault(event.call_id, _Call())
        call.ended = True
        if call.answered_at is not None and event.answered:
            call.end_s = call.answered_at - conv.anchor + event.duration_s
        if not all(c.ended for c in conv.calls.values()):
            return []
        conv.ended = True
        end_s = max(conv.last_end_s, *(c.end_s for c in conv.calls.values()))
        return self._judge_end(conv, event.call_id, end_s)

    def _judge_end(self, conv: _Conversation, call_id: str, end_s: float
                   ) -> list[GatewayEvent]:
        out: list[GatewayEvent] = []
        for rule in self.rules:
            if rule.name not in conv.rules:
                continue
            if rule.last_s is not None:
                out += self._judge_tail(conv, rule, call_id, end_s)
            elif rule.forbidden and rule.name not in conv.fired:
                out.append(_passed(conv, rule, call_id, None, None))
        for check in sorted(conv.checks.values(), key=lambda c: c.serial):
            late = check.deadline_s is not None and check.deadline_s <= end_s
            out.append(_missed(conv, self._by_name[check.rule], call_id,
                               "deadline" if late else "ended", None, check))
        conv.checks.clear()
        return out

    def _judge_tail(self, conv: _Conversation, rule: Rule, call_id: str, end_s: float
                    ) -> list[GatewayEvent]:
        assert rule.last_s is not None
        found = [e for e in conv.tail.get(rule.name, ()) if e.match_start_s >= end_s - rule.last_s]
        if rule.required:
            return [_passed(conv, rule, call_id, found[0], None) if found
                    else _missed(conv, rule, call_id, "ended", None, None)]
        if not found:
            return [_passed(conv, rule, call_id, None, None)] if rule.forbidden else []
        return [self._outcome(conv, rule, e) for e in (found[:1] if rule.once else found)]


# ------------------------------------------------------------------ helpers

def _latest(triggers: Sequence[Evidence], before_s: float) -> Evidence | None:
    """The newest trigger that begins at or before ``before_s``."""
    for trigger in reversed(triggers):
        if trigger.match_start_s <= before_s:
            return trigger
    return None


def _channel_of(rule: Rule) -> str:
    return AGENT if rule.channel == "either" else rule.channel


def _check_name(rule: Rule) -> str:
    return FORBIDDEN if rule.forbidden else REQUIRED


def _passed(conv: _Conversation, rule: Rule, call_id: str, evidence: Evidence | None,
            check: _Check | None) -> CompliancePassed:
    return CompliancePassed(call_id=call_id, conversation_id=conv.conversation_id,
                            rule=rule.name, check=_check_name(rule), evidence=evidence,
                            trigger=check.trigger if check else None,
                            deadline_s=check.deadline_s if check else None)


def _missed(conv: _Conversation, rule: Rule, call_id: str, reason: str,
            evidence: Evidence | None, check: _Check | None) -> ComplianceMissed:
    return ComplianceMissed(call_id=call_id, conversation_id=conv.conversation_id,
                            rule=rule.name, check=_check_name(rule), reason=reason,
                            evidence=evidence, trigger=check.trigger if check else None,
                            deadline_s=check.deadline_s if check else None)
