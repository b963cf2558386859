"""Consent per call and channel: what the call's facts say, as decisions with evidence (pure).

A call's material (audio, transcripts) may be used for a purpose (``consent.purpose``, e.g.
``asr_training``) only with a recorded grant for that channel. Nothing here grants by
default: a channel that no source decides stays *not consented*.

At offer time :func:`decide` reads the call's :class:`ConsentFacts` (the INVITE's headers,
the signalling source, the From/To/Request-URI users, SIPREC extension data) and returns a
:class:`ChannelConsent` per channel some source decided. Sources, in this order; the first
one that decides a channel decides it:

1. the header ``consent.header`` (``X-Consent``): a grant or deny value
   (``consent.grant_values`` / ``deny_values``, case-insensitive), optionally followed by
   ``;channels=agent,customer`` or as ``granted; channel=customer``; without channels it is
   for the call's own channels;
2. SIPREC metadata: element (or attribute) ``consent.siprec_element`` in a participant's
   extension data decides that participant's channel, in the session's data every channel;
3. ``[[consent.rules]]``, first match wins (``header``/``to_user``/``from_user``/
   ``request_user`` against ``pattern``, ``source`` against ``cidr``).

:class:`IvrQuestion` is the keypad question (``consent.ivr_prompt``): a digit from a
channel answers for that channel; no answer within ``ivr_timeout_s`` after the prompt is a
decline. :class:`ConsentRecord` is what the store keeps. Evidence is short text that
never carries personal data (no numbers or URIs of the parties: rule names, header names
and the value given).

Layer: pure core.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.config import ConsentConfig, ConsentRule

CHANNELS: Final = ("agent", "customer")
Hints = tuple[tuple[str, str], ...]

SOURCE_API: Final = "api"
SOURCE_CLI: Final = "cli"
SOURCE_IVR: Final = "ivr_dtmf"
SOURCE_SIPREC: Final = "siprec"


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One consent decision, as stored: a grant or a decline of ``channel`` for ``purpose``."""

    conversation_id: str
    call_id: str
    channel: str
    granted: bool
    purpose: str
    source: str
    """``header:X-Consent``, ``rule:<name>``, ``siprec``, ``ivr_dtmf``, ``api``, ``cli``."""
    at: float
    """Unix seconds."""
    policy_version: str
    evidence: str
    """Short text, never personal data."""

    def to_dict(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id, "call_id": self.call_id,
                "channel": self.channel, "granted": self.granted, "purpose": self.purpose,
                "source": self.source, "at": self.at, "policy_version": self.policy_version,
                "evidence": self.evidence}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConsentRecord:
        return cls(conversation_id=str(d["conversation_id"]), call_id=str(d["call_id"]),
                   channel=str(d["channel"]), granted=bool(d["granted"]),
                   purpose=str(d["purpose"]), source=str(d["source"]), at=float(d["at"]),
                   policy_version=str(d["policy_version"]), evidence=str(d["evidence"]))


@dataclass(frozen=True, slots=True)
class ChannelConsent:
    """What a source decided for one channel (before it is a record: no ids, no time)."""

    channel: str
    granted: bool
    source: str
    evidence: str

    def record(self, conversation_id: str, call_id: str, config: ConsentConfig,
               at: float, purpose: str | None = None) -> ConsentRecord:
        return ConsentRecord(conversation_id=conversation_id, call_id=call_id,
                             channel=self.channel, granted=self.granted,
                             purpose=purpose or config.purpose, source=self.source, at=at,
                             policy_version=config.policy_version, evidence=self.evidence)


@dataclass(frozen=True, slots=True)
class ConsentFacts:
    """What the policy reads of an offered call; ``channels`` are the call's own."""

    channels: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()
    source_ip: str = ""
    from_user: str | None = None
    to_user: str | None = None
    request_user: str | None = None
    session_hints: Hints = ()
    """SIPREC session (and recording-level) extension data: (local name, text)."""
    channel_hints: tuple[tuple[str, Hints], ...] = field(default_factory=tuple)
    """(channel, that stream's participant's extension data) per SIPREC stream."""


class ConsentValueError(ValueError):
    """A consent value or channel list that the policy cannot read."""


class ConsentRefused(Exception):
    """A consent command (control API, CLI) that cannot be done: an HTTP-like status and why
    (400 bad value, 404 unknown call or conversation, 409 withdrawn, 503 consent off)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decide(config: ConsentConfig, facts: ConsentFacts) -> tuple[ChannelConsent, ...]:
    """The decided channels, in the order of ``facts.channels``; undecided ones are absent."""
    if not config.enabled:
        return ()
    own = tuple(dict.fromkeys(facts.channels))
    decided: dict[str, ChannelConsent] = {}
    for source in (_from_header, _from_siprec, _from_rules):
        for decision in source(config, facts, own):
            if decision.channel in own:
                decided.setdefault(decision.channel, decision)
    return tuple(decided[ch] for ch in own if ch in decided)


def grant_word(config: ConsentConfig, value: str) -> bool | None:
    """True for a grant value, False for a deny value, None for anything else."""
    word = value.strip().lower()
    if word in {v.lower() for v in config.grant_values}:
        return True
    if word in {v.lower() for v in config.deny_values}:
        return False
    return None


def parse_channels(values: Sequence[str], own: Sequence[str]) -> tuple[str, ...]:
    """Channel names (``agent``/``customer``); empty: ``own``. ConsentValueError otherwise."""
    wanted = tuple(dict.fromkeys(v.strip().lower() for v in values if v.strip()))
    bad = [v for v in wanted if v not in CHANNELS]
    if bad:
        raise ConsentValueError(f"unknown channel {bad[0]!r}: must be agent or customer")
    return wanted or tuple(own)


# --------------------------------------------------------------------------- sources

def _from_header(config: ConsentConfig, facts: ConsentFacts,
                 own: tuple[str, ...]) -> list[ChannelConsent]:
    if not config.header:
        return []
    wanted = config.header.lower()
    values = [v for name, v in facts.headers if name.lower() == wanted]
    if not values:
        return []
    value = values[0]
    word, _, params = value.partition(";")
    granted = grant_word(config, word)
    if granted is None:
        return []
    try:
        channels = parse_channels(_channel_param(params), own)
    except ConsentValueError:
        return []
    evidence = f"{config.header}: {_short(value)}"
    return [ChannelConsent(ch, granted, f"header:{config.header}", evidence) for ch in channels]


def _channel_param(params: str) -> list[str]:
    """``channels=agent,customer`` (or ``channel=``) of a header's parameters."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() in ("channel", "channels"):
            return value.replace(" ", ",").split(",")
    return []


def _from_siprec(config: ConsentConfig, facts: ConsentFacts,
                 own: tuple[str, ...]) -> list[ChannelConsent]:
    element = config.siprec_element.lower()
    if not element:
        return []
    out = []
    for channel, hints in facts.channel_hints:
        granted = _hint_value(config, element, hints)
        if granted is not None:
            out.append(ChannelConsent(channel, granted, SOURCE_SIPREC,
                                      f"participant metadata <{element}>: "
                                      f"{'granted' if granted else 'denied'}"))
    granted = _hint_value(config, element, facts.session_hints)
    if granted is not None:
        out += [ChannelConsent(ch, granted, SOURCE_SIPREC, f"session metadata <{element}>: "
                               f"{'granted' if granted else 'denied'}") for ch in own]
    return out


def _hint_value(config: ConsentConfig, element: str, hints: Hints) -> bool | None:
    """The element's value (``<consent>yes</consent>``) or an attribute (``consent=yes``)."""
    for name, text in hints:
        if name == element:
            return grant_word(config, text)
        for token in text.split():
            key, eq, value = token.partition("=")
            if eq and key.lower() == element:
                return grant_word(config, value.strip("\"'"))
    return None


def _from_rules(config: ConsentConfig, facts: ConsentFacts,
                own: tuple[str, ...]) -> list[ChannelConsent]:
    for rule in config.rules:
        why = _rule_match(rule, facts)
        if why is not None:
            channels = rule.channels or own
            return [ChannelConsent(ch, rule.grant, f"rule:{rule.name}", why) for ch in channels]
    return []


def _rule_match(rule: ConsentRule, facts: ConsentFacts) -> str | None:
    """Why ``rule`` matches (no matched value: that may be a number), or None."""
    if rule.match == "source":
        try:
            ip = ipaddress.ip_address(facts.source_ip)
        except ValueError:
            return None
        return f"source in {rule.cidr}" if rule.cidr is not None and ip in rule.cidr else None
    if rule.match == "header":
        wanted = rule.header.lower()
        values = [v for name, v in facts.headers if name.lower() == wanted]
        subject = f"header {rule.header}"
    else:
        value = {"to_user": facts.to_user, "from_user": facts.from_user,
                 "request_user": facts.request_user}.get(rule.match)
        values = [] if value is None else [value]
        subject = rule.match.replace("_", " ")
    if rule.pattern is not None and any(rule.pattern.search(v) for v in values):
        return f"{subject} matched rule {rule.name!r}"
    return None


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --------------------------------------------------------------------------- IVR

class IvrQuestion:
    """The keypad question of one call: a digit answers for the channel that pressed it.

    Digits count from the moment the prompt is queued; the timeout runs from
    :meth:`prompt_done` (the prompt finished, was cut or failed). Once every channel asked
    has answered, or the time is up, the question is over (:attr:`done`).
    """

    def __init__(self, config: ConsentConfig, channels: Sequence[str]) -> None:
        self.config = config
        self.waiting: list[str] = list(dict.fromkeys(channels))
        self.deadline: float | None = None

    @property
    def done(self) -> bool:
        return not self.waiting

    def prompt_done(self, now: float) -> None:
        if self.deadline is None:
            self.deadline = now + self.config.ivr_timeout_s

    def on_digit(self, channel: str, digit: str) -> ChannelConsent | None:
        """The decision a digit makes, or None (another digit, or not asked of ``channel``)."""
        if channel not in self.waiting:
            return None
        if digit == self.config.ivr_grant_digit:
            granted = True
        elif digit == self.config.ivr_deny_digit:
            granted = False
        else:
            return None
        self.waiting.remove(channel)
        return ChannelConsent(channel, granted, SOURCE_IVR,
                              f"keypad {digit} after the consent prompt")

    def on_timer(self, now: float) -> tuple[ChannelConsent, ...]:
        """At the deadline: a decline for each channel that did not answer."""
        if self.deadline is None or now < self.deadline or not self.waiting:
            return ()
        late, self.waiting = self.waiting, []
        why = f"no keypad answer within {self.config.ivr_timeout_s:g} s of the prompt"
        return tuple(ChannelConsent(ch, False, SOURCE_IVR, why) for ch in late)


def latest_per_channel(records: Sequence[ConsentRecord],
                       purpose: str | None = None) -> dict[str, ConsentRecord]:
    """The latest record of each channel (by ``at``, then order), optionally of one purpose."""
    latest: dict[str, ConsentRecord] = {}
    for rec in records:
        if purpose is not None and rec.purpose != purpose:
            continue
        held = latest.get(rec.channel)
        if held is None or rec.at >= held.at:
            latest[rec.channel] = rec
    return latest
