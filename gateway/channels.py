"""Which leg is the agent and which the customer, and which calls form one conversation (pure).

:class:`ChannelMapper` applies ``[channels]`` rules in order; the first match wins, otherwise
``channels.default``. Header rules only see the headers the SIP layer copied into the
call's metadata (``sip.copy_headers``); any :class:`CallFacts` will do (the SIP side's
``CallMetadata`` is one), so this module does not depend on the SIP package.

:class:`ConversationJoiner` pairs two calls that carry the same correlation header value
(a PBX forking the agent and the customer side as two calls). Pairing rules:

* a call without the header (or with an empty value) is a one-leg conversation of its own;
* a call whose value matches a *waiting* leg joins it; the conversation is then complete and
  nobody waits on that value any more;
* if both legs were classified the same, the second leg gets the other channel (the first
  one keeps its own: it may already be recorded and transcribed under it);
* a third call with the same value starts a new conversation and becomes the waiting leg for
  that value (so a fourth would pair with it): conversations are pairs in arrival order;
* a leg waits at most ``wait_s``; after that (or after :meth:`ConversationJoiner.remove`)
  a later call with the same value starts a new conversation.

Layer: pure core.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import unquote

from gateway.config import ChannelRule, ChannelsConfig

CHANNELS: Final = ("agent", "customer")
_URI_SCHEMES: Final = ("sip:", "sips:", "tel:")


class CallFacts(Protocol):
    """What the rules and the joiner read of a call (``gateway.sip.dialog.CallMetadata``)."""

    @property
    def from_uri(self) -> str: ...

    @property
    def to_uri(self) -> str: ...

    @property
    def request_uri(self) -> str: ...

    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...


class ChannelError(ValueError):
    """Base class of this module's errors."""


class UnknownChannelError(ChannelError):
    """A channel name other than ``agent``/``customer``."""


class DuplicateCallError(ChannelError):
    """The same call id was added to the joiner twice."""


def other_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise UnknownChannelError(f"channel must be 'agent' or 'customer', got {channel!r}")
    return CHANNELS[1 - CHANNELS.index(channel)]


def uri_user(uri: str) -> str | None:
    """User part of a sip:/sips:/tel: URI (``<...>`` and a display name allowed), else None.

    Minimal parse: the text after the scheme up to ``@`` or ``;`` (and a ``:password``
    cut off), percent-decoded. A sip: URI without ``@`` has no user part.
    """
    text = uri.strip()
    if "<" in text:
        text = text[text.index("<") + 1:].partition(">")[0]
    scheme = next((s for s in _URI_SCHEMES if text.lower().startswith(s)), None)
    if scheme is None:
        return None
    rest = text[len(scheme):]
    if scheme != "tel:":
        if "@" not in rest:
            return None
        rest = rest.partition("@")[0].partition(":")[0]
    user = unquote(rest.partition(";")[0])
    return user or None


# --------------------------------------------------------------------------- mapping

@dataclass(frozen=True, slots=True)
class ChannelDecision:
    """``channel`` for a leg; ``rule_index`` of the rule that decided (None = the default)."""

    channel: str
    rule_index: int | None
    why: str


def header_values(meta: CallFacts, name: str) -> tuple[str, ...]:
    """Every value of header ``name`` (case-insensitive) in the call's copied headers."""
    wanted = name.lower()
    return tuple(value for header, value in meta.headers if header.lower() == wanted)


class ChannelMapper:
    def __init__(self, config: ChannelsConfig) -> None:
        other_channel(config.default)  # validates
        for rule in config.rules:
            other_channel(rule.channel)
        self.config = config

    def classify(self, meta: CallFacts,
                 siprec_participant: str | None = None) -> ChannelDecision:
        for index, rule in enumerate(self.config.rules):
            why = self._match(rule, meta, siprec_participant)
            if why is not None:
                return ChannelDecision(rule.channel, index, f"rule {index}: {why}")
        default = self.config.default
        return ChannelDecision(default, None, f"no rule matched: default {default}")

    @staticmethod
    def _match(rule: ChannelRule, meta: CallFacts,
               siprec_participant: str | None) -> str | None:
        """Why ``rule`` matches, or None if it does not."""
        subject, values = _subject(rule, meta, siprec_participant)
        for value in values:
            if rule.pattern.search(value):
                return f"{subject} {value!r} matched {rule.pattern.pattern!r}"
        return None


def _subject(rule: ChannelRule, meta: CallFacts,
             siprec_participant: str | None) -> tuple[str, tuple[str, ...]]:
    """(what the rule looks at, in words; the values it is matched against)."""
    if rule.match == "header":
        return f"header {rule.header}", header_values(meta, rule.header)
    if rule.match == "siprec_participant":
        return "siprec participant", () if siprec_participant is None else (siprec_participant,)
    uris = {"to_user": meta.to_uri, "from_user": meta.from_uri,
            "request_user": meta.request_uri}
    if rule.match not in uris:
        raise ChannelError(f"unknown rule match {rule.match!r}")
    user = uri_user(uris[rule.match])
    return rule.match.replace("_", " "), () if user is None else (user,)


# --------------------------------------------------------------------------- joining

@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation: its legs as (call_id, channel), in arrival order."""

    conversation_id: str
    legs: tuple[tuple[str, str], ...]
    why: str = ""

    def channel_of(self, call_id: str) -> str:
        for leg_call_id, channel in self.legs:
            if leg_call_id == call_id:
                return channel
        raise KeyError(call_id)


@dataclass(frozen=True, slots=True)
class _Waiting:
    conversation: Conversation
    since: float


class ConversationJoiner:
    """Two calls with the same correlation header value become one two-channel conversation.

    ``header`` "" disables joining: every call is its own conversation. ``id_factory``
    makes fresh conversation ids (random UUID hex by default).
    """

    def __init__(self, header: str, *, wait_s: float = 10.0,
                 id_factory: Callable[[], str] | None = None) -> None:
        if wait_s < 0:
            raise ValueError(f"wait_s must be >= 0, got {wait_s}")
        self.header = header
        self.wait_s = wait_s
        self._new_id = id_factory or (lambda: uuid.uuid4().hex)
        self._waiting: dict[str, _Waiting] = {}      # correlation value -> first leg
        self._by_call: dict[str, Conversation] = {}  # call_id -> its conversation

    def add(self, call_id: str, meta: CallFacts, channel: str, now: float) -> Conversation:
        other_channel(channel)  # validates
        if call_id in self._by_call:
            raise DuplicateCallError(f"call {call_id!r} was already added")
        self.expire(now)
        value = self._value(meta)
        if value is None:
            why = f"no {self.header or 'correlation'} header: single-leg conversation"
            return self._store(call_id, Conversation(self._new_id(), ((call_id, channel),), why))
        first = self._waiting.pop(value, None)
        if first is None:
            why = f"{self.header}={value!r}: first leg, waiting {self.wait_s:g} s for the other"
            conversation = Conversation(self._new_id(), ((call_id, channel),), why)
            self._waiting[value] = _Waiting(conversation, now)
            return self._store(call_id, conversation)
        return self._join(first.conversation, call_id, channel, value)

    def _join(self, first: Conversation, call_id: str, channel: str,
              value: str) -> Conversation:
        first_call, first_channel = first.legs[0]
        why = f"{self.header}={value!r}: joined call {first_call!r}"
        if channel == first_channel:
            channel = other_channel(channel)
            why += f"; both legs were {first_channel}, this one becomes {channel}"
        joined = Conversation(first.conversation_id, (*first.legs, (call_id, channel)), why)
        self._by_call[first_call] = joined
        return self._store(call_id, joined)

    def _store(self, call_id: str, conversation: Conversation) -> Conversation:
        self._by_call[call_id] = conversation
        return conversation

    def _value(self, meta: CallFacts) -> str | None:
        if not self.header:
            return None
        values = header_values(meta, self.header)
        value = values[0].strip() if values else ""
        return value or None

    def conversation_of(self, call_id: str) -> Conversation | None:
        return self._by_call.get(call_id)

    def remove(self, call_id: str) -> None:
        """Forget a call (it ended); a leg still waiting stops waiting. Unknown ids: no-op."""
        conversation = self._by_call.pop(call_id, None)
        if conversation is None:
            return
        for value, waiting in list(self._waiting.items()):
            if waiting.conversation.legs[0][0] == call_id:
                del self._waiting[value]

    def expire(self, now: float) -> None:
        """Legs waiting ``wait_s`` or longer stop waiting (they stay one-leg conversations)."""
        for value, waiting in list(self._waiting.items()):
            if now - waiting.since >= self.wait_s:
                del self._waiting[value]

    @property
    def waiting(self) -> int:
        """How many legs are waiting for a partner."""
        return len(self._waiting)

