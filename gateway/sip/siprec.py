"""SIPREC (RFC 7866) recording sessions: metadata parsing (RFC 7865) and agent/customer mapping.

Pure module: no I/O, no clocks, no logging.

A Session Recording Client (an SBC or PBX) sends the gateway an INVITE with ``Require: siprec``
and ``+sip.src`` in Contact, whose ``multipart/mixed`` body holds an SDP offer with one
``a=label``-ed audio m-line per recorded participant and an ``application/rs-metadata+xml``
document (Content-Disposition ``recording-session``) that ties labels to participants:

    stream (label) -> stream_id -> participantstreamassoc <send> -> participant (nameID aor)

* :func:`parse_metadata` parses that document with defusedxml (no DTD, no entities, no
  external references) into a frozen :class:`RecordingMetadata`;
* :func:`is_siprec_invite` tells a recording INVITE from an ordinary call;
* :func:`map_roles` decides which m-line is the ``agent`` and which the ``customer``, and says
  why for every m-line.

Layer: pure core.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple, cast

import defusedxml.ElementTree as defused_et  # type: ignore[import-untyped,unused-ignore]
from defusedxml import DefusedXmlException  # type: ignore[import-untyped,unused-ignore]

from gateway.sip.message import Headers
from gateway.sip.multipart import BodyPart
from gateway.sip.sdp import SessionDescription

NS_RECORDING: Final = "urn:ietf:params:xml:ns:recording:1"
NS_RECORDING_DRAFT: Final = "urn:ietf:params:xml:ns:recording"
METADATA_CONTENT_TYPE: Final = "application/rs-metadata+xml"
RECORDING_DISPOSITION: Final = "recording-session"
SIPREC_OPTION_TAG: Final = "siprec"
SRC_FEATURE_TAG: Final = "+sip.src"
AGENT: Final = "agent"
CUSTOMER: Final = "customer"
FALLBACKS: Final = ("mline_order", "customer")

Hints = tuple[tuple[str, str], ...]

_SRC_FEATURE_RE = re.compile(r";\s*\+sip\.src\s*(?=$|[;=>,\s])", re.IGNORECASE)
_URI_SCHEME_RE = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)


class SiprecError(ValueError):
    """Malformed or hostile recording metadata (the caller answers 400, or goes on without it)."""


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Participant:
    """A recorded party. ``disassociated``: it left the session (participantsessionassoc
    with ``<disassociate-time>``), e.g. the transferring party after a transfer. ``hints``:
    (local name lower-cased, text) of every vendor/extension element inside it, in document
    order (``<apkt:callerOrig>true</apkt:callerOrig>`` -> ``("callerorig", "true")``)."""

    participant_id: str
    aor: str | None
    name: str | None
    send: tuple[str, ...]
    recv: tuple[str, ...]
    disassociated: bool = False
    hints: Hints = ()


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A recorded stream: ``label`` is the ``a=label`` of its m-line in the SDP."""

    stream_id: str
    label: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class RecordingMetadata:
    """What an rs-metadata document says; participants and streams in document order."""

    session_id: str | None
    participants: tuple[Participant, ...]
    streams: tuple[StreamInfo, ...]
    raw_size: int
    hints: Hints = ()

    def participant_for_label(self, label: str) -> Participant | None:
        """The participant that SENDS the stream labelled ``label``, or None."""
        return self.binding_for_label(label)[0]

    def binding_for_label(self, label: str) -> tuple[Participant | None, str]:
        """The participant that sends the stream labelled ``label``, and how that is known.

        A ``<send>`` association wins; participants still in the session win over
        disassociated ones; among several senders the last one in the document (the newest)
        wins. Without a sender, when exactly two participants are in the session and one of
        them ``<recv>``s the stream, the other one sends it.
        """
        stream_ids = {stream.stream_id for stream in self.streams if stream.label == label}
        senders = [p for p in self.participants if stream_ids.intersection(p.send)]
        current = [p for p in senders if not p.disassociated] or senders
        if current:
            return current[-1], "participantstreamassoc <send>"
        present = [p for p in self.participants if not p.disassociated]
        receivers = [p for p in present if stream_ids.intersection(p.recv)]
        if len(present) == 2 and len(receivers) == 1:
            other = present[1 - present.index(receivers[0])]
            return other, f"the other participant ({receivers[0].participant_id}) <recv>s it"
        return None, ""

    def stream_labels(self) -> tuple[str, ...]:
        """Labels of the metadata streams, in document order."""
        return tuple(stream.label for stream in self.streams)


# --------------------------------------------------------------------------- parsing


@dataclass(slots=True)
class _ParticipantDraft:
    participant_id: str
    aor: str | None = None
    name: str | None = None
    send: list[str] = field(default_factory=list)
    recv: list[str] = field(default_factory=list)
    disassociated: bool = False
    hints: list[tuple[str, str]] = field(default_factory=list)

    def freeze(self) -> Participant:
        return Participant(self.participant_id, self.aor, self.name, tuple(self.send),
                           tuple(self.recv), self.disassociated, tuple(self.hints))


@dataclass(slots=True)
class _MetadataDraft:
    namespace: str
    session_id: str | None = None
    participants: dict[str, _ParticipantDraft] = field(default_factory=dict)
    streams: list[StreamInfo] = field(default_factory=list)
    hints: list[tuple[str, str]] = field(default_factory=list)

    def tag(self, local_name: str) -> str:
        return f"{{{self.namespace}}}{local_name}"

    def participant(self, participant_id: str) -> _ParticipantDraft:
        return self.participants.setdefault(participant_id, _ParticipantDraft(participant_id))


def _parse_tree(xml: bytes) -> ET.Element:
    try:
        root = defused_et.fromstring(
            xml, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise SiprecError(f"forbidden XML construct ({type(exc).__name__}): {exc}") from None
    except ET.ParseError as exc:
        raise SiprecError(f"malformed XML: {exc}") from None
    return cast(ET.Element, root)


def _namespace(root: ET.Element) -> str:
    for namespace in (NS_RECORDING, NS_RECORDING_DRAFT):
        if root.tag == f"{{{namespace}}}recording":
            return namespace
    raise SiprecError(
        f"root element is {root.tag!r}, expected 'recording' in namespace {NS_RECORDING!r}"
    )


def _required_attr(element: ET.Element, name: str, what: str) -> str:
    value = (element.get(name) or "").strip()
    if not value:
        raise SiprecError(f"<{what}> without a {name} attribute")
    return value


def _texts(element: ET.Element, tag: str) -> list[str]:
    return [text for child in element.findall(tag) if (text := (child.text or "").strip())]


def _first_text(element: ET.Element, tag: str) -> str | None:
    texts = _texts(element, tag)
    return texts[0] if texts else None


# RFC 7865 elements that are not hints (everything else inside a participant, session or
# group, in any namespace, is kept as a hint: vendors put their data in <extensiondata>).
_STANDARD: Final = frozenset({
    "nameid", "name", "aor", "send", "recv", "extensiondata", "sipsessionid", "group-ref",
    "start-time", "stop-time", "associate-time", "disassociate-time", "label", "content-type",
})  # fmt: skip


def _local(tag: object) -> str:
    return tag.rpartition("}")[2].lower() if isinstance(tag, str) else ""


def _hints(element: ET.Element) -> list[tuple[str, str]]:
    """(local name, text) of each non-standard descendant element with text (or attributes)."""
    found = []
    for child in element.iter():
        name = _local(child.tag)
        if child is element or not name or name in _STANDARD:
            continue
        text = (child.text or "").strip()
        if not text and child.attrib:
            text = " ".join(f"{_local(k)}={v}" for k, v in child.attrib.items())
        if text:
            found.append((name, text))
    return found


def _on_session(draft: _MetadataDraft, element: ET.Element) -> None:
    if draft.session_id is None:
        draft.session_id = (element.get("session_id") or "").strip() or None
    draft.hints += _hints(element)


def _on_group(draft: _MetadataDraft, element: ET.Element) -> None:
    draft.hints += _hints(element)


def _on_participant(draft: _MetadataDraft, element: ET.Element) -> None:
    participant = draft.participant(_required_attr(element, "participant_id", "participant"))
    for name_id in element.findall(draft.tag("nameID")):
        aor = (name_id.get("aor") or "").strip()
        if aor and participant.aor is None:
            participant.aor = aor
            participant.name = _first_text(name_id, draft.tag("name"))
    if participant.aor is None:  # early drafts: <aor> child instead of nameID
        participant.aor = _first_text(element, draft.tag("aor"))
    # Early drafts (and some SRCs) put <send>/<recv> directly in <participant>.
    participant.send += _texts(element, draft.tag("send"))
    participant.recv += _texts(element, draft.tag("recv"))
    participant.hints += _hints(element)


def _on_stream(draft: _MetadataDraft, element: ET.Element) -> None:
    stream_id = _required_attr(element, "stream_id", "stream")
    label = _first_text(element, draft.tag("label"))
    if label is None:
        raise SiprecError(f"<stream stream_id={stream_id!r}> has no <label>")
    session_id = (element.get("session_id") or "").strip() or None
    draft.streams.append(StreamInfo(stream_id, label, session_id))


def _on_stream_assoc(draft: _MetadataDraft, element: ET.Element) -> None:
    participant_id = _required_attr(element, "participant_id", "participantstreamassoc")
    participant = draft.participant(participant_id)  # a partial update may omit <participant>
    participant.send = _texts(element, draft.tag("send"))
    participant.recv = _texts(element, draft.tag("recv"))


def _on_session_assoc(draft: _MetadataDraft, element: ET.Element) -> None:
    participant_id = _required_attr(element, "participant_id", "participantsessionassoc")
    if element.find(draft.tag("disassociate-time")) is not None:
        draft.participant(participant_id).disassociated = True


_HANDLERS: Final[dict[str, Callable[[_MetadataDraft, ET.Element], None]]] = {
    "group": _on_group,
    "session": _on_session,
    "participant": _on_participant,
    "stream": _on_stream,
    "participantstreamassoc": _on_stream_assoc,
    "participantsessionassoc": _on_session_assoc,
}


def parse_metadata(xml: bytes, *, max_bytes: int = 64 * 1024) -> RecordingMetadata:
    """Parse an ``application/rs-metadata+xml`` document (RFC 7865, or the draft namespace).

    Raises :class:`SiprecError` for oversize input, malformed XML, any DTD/entity/external
    reference ("forbidden XML construct"), a foreign root element, or a participant, stream
    or association without its id attribute. Unknown elements are ignored.
    """
    if len(xml) > max_bytes:
        raise SiprecError(f"metadata is {len(xml)} bytes, limit is {max_bytes}")
    if not xml.strip():
        raise SiprecError("metadata is empty")
    root = _parse_tree(xml)
    draft = _MetadataDraft(_namespace(root))
    prefix = f"{{{draft.namespace}}}"
    for child in root:
        if isinstance(child.tag, str) and child.tag.startswith(prefix):
            handler = _HANDLERS.get(child.tag[len(prefix):])
            if handler is not None:
                handler(draft, child)
            elif _local(child.tag) == "extensiondata":   # recording-level vendor data
                draft.hints += _hints(child)
        elif isinstance(child.tag, str):                 # a vendor element at the top level
            draft.hints += _hints(child) or [(_local(child.tag), (child.text or "").strip())]
    participants = tuple(p.freeze() for p in draft.participants.values())
    return RecordingMetadata(draft.session_id, participants, tuple(draft.streams), len(xml),
                             tuple(h for h in draft.hints if h[1]))


# --------------------------------------------------------------------------- detection


def _has_metadata_part(parts: Sequence[BodyPart]) -> bool:
    return any(
        part.content_type == METADATA_CONTENT_TYPE or part.disposition == RECORDING_DISPOSITION
        for part in parts
    )


def is_siprec_invite(headers: Headers, parts: Sequence[BodyPart] = ()) -> bool:
    """True for a recording-session INVITE (RFC 7866 section 6.1.1).

    Any of: ``Require: siprec``; a Contact with the ``+sip.src`` feature tag; a body part of
    type ``application/rs-metadata+xml`` or disposition ``recording-session`` (``parts`` are
    the already split multipart body). ``Supported: siprec`` alone does not count: any UA
    may support the extension without this being a recording session.
    """
    if any(tag.lower() == SIPREC_OPTION_TAG for tag in headers.get_all("Require")):
        return True
    if any(_SRC_FEATURE_RE.search(contact) for contact in headers.get_all("Contact")):
        return True
    return _has_metadata_part(parts)


# --------------------------------------------------------------------------- role mapping


@dataclass(frozen=True, slots=True)
class RoleDecision:
    """The channel of one audio m-line (``mline_index`` into ``sdp.media``) and why."""

    label: str
    mline_index: int
    channel: str
    participant: Participant | None
    why: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """One thing :func:`map_roles` looked at, for the log.

    ``source``: the kind ("stream binding", "agent patterns", "metadata role", "metadata
    recorded party", "metadata caller and direction", "metadata caller", "label conventions",
    "metadata order", "m-line order"); ``says``: what it says, in words; ``outcome``:
    "binding" (which participant sends a stream), "decided" (it set the channels), "agrees" /
    "disagrees" (a weaker kind, checked against the decision), "conflict" (it gave both
    streams the same channel, so a weaker kind decided).
    """

    source: str
    says: str
    outcome: str

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "says": self.says, "outcome": self.outcome}


class RoleMapping(NamedTuple):
    """What :func:`map_roles` decided: a decision per audio m-line, warnings, and evidence."""

    decisions: tuple[RoleDecision, ...]
    warnings: tuple[str, ...]
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class SiprecRoleConfig:
    """How :func:`map_roles` tells agents from customers.

    ``agent_patterns`` are searched in a participant's aor and in its user part (so both
    ``^sip:1\\d{3}@`` and ``^1\\d{3}$`` work). ``caller_labels``: label values that SRCs use
    for the caller's stream, the customer on inbound contact-centre calls (compared
    case-insensitively). ``fallback``: "mline_order" (first audio m-line customer, second
    agent) or "customer" (both customer when nothing tells them apart).
    ``metadata_required``: :func:`map_roles` raises :class:`SiprecError` without metadata.
    """

    agent_patterns: tuple[re.Pattern[str], ...] = ()
    caller_labels: tuple[str, ...] = ("1", "a_leg", "inbound", "10", "caller")
    fallback: str = "mline_order"
    metadata_required: bool = False

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {self.fallback!r}")


# --------------------------------------------------------------------------- metadata marks
# What vendors write in <extensiondata> (matched on the element's local name, any namespace,
# case-insensitive). See tests/siprec_corpus/README.md for the shapes these come from.

_TRUE: Final = frozenset({"true", "yes", "1", "on", "y"})
_FALSE: Final = frozenset({"false", "no", "0", "off", "n"})
_ROLE_NAMES: Final = frozenset({"role", "participantrole", "partyrole", "callrole",
                                "participanttype", "partytype"})
_RECORDED_FLAGS: Final = frozenset({"recorded", "isrecorded", "recordeduser", "recordedparty",
                                    "monitored", "ismonitored", "recordingtarget", "istarget"})
_RECORDED_REFS: Final = frozenset({"recordeduser", "recordeduserid", "recordedparty",
                                   "recordedaor", "recordeduri", "monitoreduser", "targetuser",
                                   "userid", "recordedsubscriber"})
_ID_NAMES: Final = frozenset({"userid", "user", "aor", "uri", "extension", "dn", "number",
                              "agentid", "stationid"})
_CALLER_FLAGS: Final = frozenset({"callerorig", "iscaller", "caller", "isoriginator",
                                  "originator", "callingparty"})
_DIRECTION_NAMES: Final = frozenset({"direction", "calldirection", "call-direction", "calldir",
                                     "calltype", "callorigination", "origination"})
_AGENT_WORDS: Final = frozenset({"agent", "employee", "internal", "recorded"})
_CUSTOMER_WORDS: Final = frozenset({"customer", "external", "client"})
_CALLER_WORDS: Final = frozenset({"caller", "calling", "originator", "originating", "orig",
                                  "a-party", "aparty", "initiator"})
_CALLEE_WORDS: Final = frozenset({"callee", "called", "terminator", "terminating", "term",
                                  "b-party", "bparty", "answerer"})
_INBOUND_WORDS: Final = frozenset({"inbound", "incoming", "in", "terminating", "terminated",
                                   "mt", "received"})
_OUTBOUND_WORDS: Final = frozenset({"outbound", "outgoing", "out", "originating", "originated",
                                    "mo", "placed"})


@dataclass(frozen=True, slots=True)
class _Marks:
    """What the metadata says about one participant (each with the hint that says it)."""

    role: str | None = None          # AGENT / CUSTOMER
    role_hint: str = ""
    recorded_hint: str = ""          # non-empty: it is the recorded party
    caller: bool | None = None       # True caller, False callee
    caller_hint: str = ""


def _hint_text(name: str, value: str) -> str:
    return f"<{name}>{value}</{name}>"


def _same_party(reference: str, participant: Participant) -> bool:
    """A session-level reference (an aor, a user part, a vendor user id) names ``participant``."""
    ref = reference.strip().lower()
    names = {h[1].strip().lower() for h in participant.hints if h[0] in _ID_NAMES}
    if participant.aor:
        names |= {participant.aor.strip().lower(), _user_part(participant.aor).lower()}
    return bool(ref) and (ref in names or _user_part(ref) in names)


def _marks(participant: Participant | None, metadata: RecordingMetadata | None) -> _Marks:
    if participant is None:
        return _Marks()
    role = role_hint = recorded_hint = caller_hint = ""
    caller: bool | None = None
    for name, text in participant.hints:
        value, hint = text.strip().lower(), _hint_text(name, text.strip())
        if name in _ROLE_NAMES and not role_hint:
            if value in _AGENT_WORDS | _CUSTOMER_WORDS:
                role, role_hint = (AGENT if value in _AGENT_WORDS else CUSTOMER), hint
            elif value in _CALLER_WORDS | _CALLEE_WORDS and not caller_hint:
                caller, caller_hint = value in _CALLER_WORDS, hint
        if name in _RECORDED_FLAGS and value in _TRUE and not recorded_hint:
            recorded_hint = hint
        if name in _CALLER_FLAGS and value in _TRUE | _FALSE and not caller_hint:
            caller, caller_hint = value in _TRUE, hint
    for name, text in metadata.hints if metadata is not None else ():
        if name in _RECORDED_REFS and not recorded_hint and _same_party(text, participant):
            recorded_hint = f"session {_hint_text(name, text.strip())} names it"
    return _Marks(role or None, role_hint, recorded_hint, caller, caller_hint)


def _direction(metadata: RecordingMetadata | None) -> tuple[bool, str] | None:
    """(inbound?, the hint) from a session/recording-level direction element, or None."""
    for name, text in metadata.hints if metadata is not None else ():
        value = text.strip().lower()
        if name in _DIRECTION_NAMES and value in _INBOUND_WORDS | _OUTBOUND_WORDS:
            return value in _INBOUND_WORDS, _hint_text(name, text.strip())
    return None


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True, slots=True)
class _Stream:
    """An audio m-line being mapped: index, label ("" if none), sender and what it is marked."""

    index: int
    label: str
    participant: Participant | None
    marks: _Marks = _Marks()

    def describe(self) -> str:
        return f"label {self.label}" if self.label else f"m-line #{self.index}"

    def who(self) -> str:
        p = self.participant
        return f"participant {p.aor or p.participant_id}" if p is not None else "?"


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What one kind of evidence says about a pair: ``customer`` is the position (0/1) of the
    customer stream; None when it gave both streams ``same_channel`` (a conflict)."""

    source: str
    customer: int | None
    why: tuple[str, str]
    same_channel: str = ""


def _other(channel: str) -> str:
    return CUSTOMER if channel == AGENT else AGENT


def _user_part(aor: str) -> str:
    rest = _URI_SCHEME_RE.sub("", aor.strip().strip("<>"))
    return rest.partition("@")[0].partition(";")[0]


def _agent_pattern(participant: Participant | None, config: SiprecRoleConfig) -> str | None:
    """The agent pattern that the participant's aor (or its user part) matches, or None."""
    if participant is None or participant.aor is None:
        return None
    subjects = (participant.aor, _user_part(participant.aor))
    for pattern in config.agent_patterns:
        if any(pattern.search(subject) for subject in subjects):
            return pattern.pattern
    return None


def _agent_why(stream: _Stream, config: SiprecRoleConfig) -> str | None:
    hit = _agent_pattern(stream.participant, config)
    if hit is None or stream.participant is None:
        return None
    return f"participant {stream.participant.aor} matches agent pattern {hit!r}"


def _one_of(source: str, pair: Sequence[_Stream], hits: Sequence[str | None], channel: str,
            other_why: str) -> _Verdict | None:
    """``hits[i]`` says stream i is ``channel``: one hit decides, two are a conflict."""
    if hits[0] is not None and hits[1] is not None:
        return _Verdict(source, None, (hits[0], hits[1]), channel)
    marked = 0 if hits[0] is not None else 1
    hit = hits[marked]
    if hit is None:
        return None
    why = ["", ""]
    why[marked] = f"{hit}: {channel}"
    why[1 - marked] = f"{other_why} {hit}: {_other(channel)}"
    customer = marked if channel == CUSTOMER else 1 - marked
    return _Verdict(source, customer, (why[0], why[1]))


def _by_agent_pattern(pair: Sequence[_Stream], config: SiprecRoleConfig,
                      metadata: RecordingMetadata | None) -> _Verdict | None:
    hits = [_agent_why(stream, config) for stream in pair]
    return _one_of("agent patterns", pair, hits, AGENT, "the other stream's")


def _by_metadata_role(pair: Sequence[_Stream], config: SiprecRoleConfig,
                      metadata: RecordingMetadata | None) -> _Verdict | None:
    roles = [s.marks.role for s in pair]
    if roles[0] is None and roles[1] is None:
        return None
    channel = roles[0] or roles[1]
    assert channel is not None
    hits = [f"{s.who()} has role {s.marks.role_hint}" if s.marks.role == channel else None
            for s in pair]
    if roles[0] is not None and roles[1] is not None and roles[0] != roles[1]:
        hits = [f"{s.who()} has role {s.marks.role_hint}" if s.marks.role == AGENT else None
                for s in pair]
        channel = AGENT
    return _one_of("metadata role", pair, hits, channel, "the other stream's")


def _by_recorded_party(pair: Sequence[_Stream], config: SiprecRoleConfig,
                       metadata: RecordingMetadata | None) -> _Verdict | None:
    hits = [f"{s.who()} is the recorded party ({s.marks.recorded_hint})"
            if s.marks.recorded_hint else None for s in pair]
    return _one_of("metadata recorded party", pair, hits, AGENT, "the other stream's")


def _caller_hits(pair: Sequence[_Stream]) -> list[str | None] | None:
    """Which stream the caller sends (marked caller, or the other one marked callee)."""
    marks = [s.marks for s in pair]
    if marks[0].caller is None and marks[1].caller is None:
        return None
    hits: list[str | None] = [None, None]
    for i, s in enumerate(pair):
        if s.marks.caller is True:
            hits[i] = f"{s.who()} is the caller ({s.marks.caller_hint})"
        elif s.marks.caller is False and marks[1 - i].caller is None:
            hits[1 - i] = f"the other {pair[i].who()} is the callee ({s.marks.caller_hint})"
    return hits


def _by_caller_direction(pair: Sequence[_Stream], config: SiprecRoleConfig,
                         metadata: RecordingMetadata | None) -> _Verdict | None:
    direction, hits = _direction(metadata), _caller_hits(pair)
    if direction is None or hits is None:
        return None
    inbound, hint = direction
    call = f"an {'inbound' if inbound else 'outbound'} call ({hint})"
    hits = [f"{h} of {call}" if h else None for h in hits]
    return _one_of("metadata caller and direction", pair, hits,
                   CUSTOMER if inbound else AGENT, "the other stream's")


def _by_caller(pair: Sequence[_Stream], config: SiprecRoleConfig,
               metadata: RecordingMetadata | None) -> _Verdict | None:
    hits = _caller_hits(pair) if _direction(metadata) is None else None
    if hits is None:
        return None
    hits = [f"{h}, no direction given (inbound assumed)" if h else None for h in hits]
    return _one_of("metadata caller", pair, hits, CUSTOMER, "the other stream's")


def _by_label(pair: Sequence[_Stream], config: SiprecRoleConfig,
              metadata: RecordingMetadata | None) -> _Verdict | None:
    caller_labels = {label.casefold() for label in config.caller_labels}
    hits = [bool(s.label) and s.label.casefold() in caller_labels for s in pair]
    if hits[0] == hits[1]:
        if not hits[0]:
            return None
        first, second = (f"label {s.label} is a caller label" for s in pair)
        return _Verdict("label conventions", None, (first, second), CUSTOMER)
    caller = 0 if hits[0] else 1
    why = ["", ""]
    why[caller] = f"label {pair[caller].label} is a caller label: customer"
    why[1 - caller] = f"the other stream has caller label {pair[caller].label}: agent"
    return _Verdict("label conventions", caller, (why[0], why[1]))


def _by_metadata_order(pair: Sequence[_Stream], config: SiprecRoleConfig,
                       metadata: RecordingMetadata | None) -> _Verdict | None:
    labels = [s.label for s in pair]
    first = next((label for label in (metadata.stream_labels() if metadata else ())
                  if label and label in labels), None)
    if first is None:
        return None
    caller = labels.index(first)
    why = ["", ""]
    why[caller] = f"first stream in metadata (label {first}) is the caller's: customer"
    why[1 - caller] = f"label {first} comes first in metadata, so this one is the callee: agent"
    return _Verdict("metadata order", caller, (why[0], why[1]))


_EvidenceFn = Callable[[Sequence[_Stream], SiprecRoleConfig, RecordingMetadata | None],
                       _Verdict | None]
# Strongest first: the operator's patterns, then what the metadata says about the
# participants tied to the streams, then conventions about labels and order.
_EVIDENCE: Final[tuple[_EvidenceFn, ...]] = (
    _by_agent_pattern, _by_metadata_role, _by_recorded_party, _by_caller_direction,
    _by_caller, _by_label, _by_metadata_order,
)


def _by_mline_order() -> _Verdict:
    return _Verdict("m-line order", 0, ("first audio m-line: customer (fallback mline_order)",
                                        "second audio m-line: agent (fallback mline_order)"))


def _says(pair: Sequence[_Stream], verdict: _Verdict) -> str:
    return "; ".join(f"{s.describe()}: {why}" for s, why in zip(pair, verdict.why, strict=True))


def _decide(pair: Sequence[_Stream], verdict: _Verdict,
            conflicts: Sequence[_Verdict]) -> tuple[tuple[RoleDecision, ...], list[str]]:
    assert verdict.customer is not None
    channels = [AGENT, AGENT]
    channels[verdict.customer] = CUSTOMER
    warnings = []
    note = ""
    for conflict in conflicts:
        flipped = pair[channels.index(_other(conflict.same_channel))]
        warnings.append(
            f"both streams mapped to {conflict.same_channel} by {conflict.source} "
            f"({'; '.join(conflict.why)}): {flipped.describe()} forced to "
            f"{_other(conflict.same_channel)} by {verdict.source}"
        )
        note += f" (both were {conflict.same_channel} by {conflict.source})"
    decisions = tuple(
        RoleDecision(s.label, s.index, channel, s.participant, f"{why}{note}")
        for s, channel, why in zip(pair, channels, verdict.why, strict=True)
    )
    return decisions, warnings


def _both_customer(pair: Sequence[_Stream]) -> tuple[tuple[RoleDecision, ...], list[str]]:
    why = "nothing tells agent from customer: customer (fallback customer)"
    decisions = tuple(RoleDecision(s.label, s.index, CUSTOMER, s.participant, why) for s in pair)
    return decisions, ["no evidence tells the two streams apart: both mapped to customer "
                       "(fallback customer)"]


_Mapped = tuple[tuple[RoleDecision, ...], list[str], list[Evidence]]


def _map_pair(pair: Sequence[_Stream], metadata: RecordingMetadata | None,
              config: SiprecRoleConfig) -> _Mapped:
    """The first kind of evidence that tells the two apart decides; every kind is logged."""
    conflicts: list[_Verdict] = []
    winner: _Verdict | None = None
    evidence: list[Evidence] = []
    for kind in _EVIDENCE:
        verdict = kind(pair, config, metadata)
        if verdict is None:
            continue
        if verdict.customer is None:
            outcome = "conflict" if winner is None else "disagrees"
            if winner is None:
                conflicts.append(verdict)
        elif winner is None:
            winner, outcome = verdict, "decided"
        else:
            outcome = "agrees" if verdict.customer == winner.customer else "disagrees"
        evidence.append(Evidence(verdict.source, _says(pair, verdict), outcome))
    if winner is None and config.fallback == "customer" and not conflicts:
        decisions, warnings = _both_customer(pair)
        return decisions, warnings, [*evidence, Evidence("fallback customer", decisions[0].why,
                                                         "decided")]
    if winner is None:
        winner = _by_mline_order()
        evidence.append(Evidence(winner.source, _says(pair, winner), "decided"))
    decisions, warnings = _decide(pair, winner, conflicts)
    return decisions, warnings, evidence


def _single_why(stream: _Stream, config: SiprecRoleConfig) -> tuple[str, str] | None:
    """(channel, why) from the evidence that speaks about one stream alone, or None."""
    agent_why = _agent_why(stream, config)
    if agent_why is not None:
        return AGENT, f"{agent_why}: agent"
    if stream.marks.role is not None:
        return stream.marks.role, f"{stream.who()} has role {stream.marks.role_hint}"
    if stream.marks.recorded_hint:
        return AGENT, f"{stream.who()} is the recorded party ({stream.marks.recorded_hint}): agent"
    return None


def _map_each(streams: Sequence[_Stream], config: SiprecRoleConfig) -> _Mapped:
    """One stream, or more than two: agent only where a pattern or the metadata says so."""
    decisions = []
    for stream in streams:
        said = _single_why(stream, config)
        if said is not None:
            channel, why = said
        elif len(streams) == 1:
            channel, why = CUSTOMER, "only one audio stream and no agent pattern matches: customer"
        else:
            channel, why = CUSTOMER, "no agent pattern matches: customer"
        decisions.append(RoleDecision(stream.label, stream.index, channel, stream.participant, why))
    warnings = []
    if len(streams) > 2:
        warnings.append(f"{len(streams)} audio streams: only agent patterns and metadata roles "
                        "tell them apart")
    evidence = [Evidence("per stream", f"{s.describe()}: {d.why}", "decided")
                for s, d in zip(streams, decisions, strict=True)]
    return tuple(decisions), warnings, evidence


# --------------------------------------------------------------------------- consistency


def _audio_streams(sdp: SessionDescription, metadata: RecordingMetadata | None
                   ) -> tuple[list[_Stream], list[Evidence]]:
    streams, evidence = [], []
    for index, media in enumerate(sdp.media):
        if media.media != "audio" or media.port == 0:
            continue
        label = media.label or ""
        participant, how = (metadata.binding_for_label(label) if metadata and label
                            else (None, ""))
        stream = _Stream(index, label, participant, _marks(participant, metadata))
        if participant is not None:
            evidence.append(Evidence("stream binding",
                                     f"{stream.describe()} is sent by {stream.who()} ({how})",
                                     "binding"))
        streams.append(stream)
    return streams, evidence


def _sdp_warnings(streams: Sequence[_Stream]) -> list[str]:
    warnings = [f"m-line #{s.index} has no a=label" for s in streams if not s.label]
    labels = [s.label for s in streams if s.label]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    warnings += [f"label {label} appears on more than one m-line" for label in duplicates]
    return warnings


def _metadata_warnings(sdp: SessionDescription, streams: Sequence[_Stream],
                       metadata: RecordingMetadata) -> list[str]:
    if not metadata.streams:
        return ["metadata has no <stream> elements: participants cannot be tied to m-lines"]
    known = set(metadata.stream_labels())
    in_sdp = {media.label for media in sdp.media if media.label}
    warnings = [f"label {s.label} in SDP has no stream in metadata"
                for s in streams if s.label and s.label not in known]
    warnings += [f"metadata stream label {label} not in SDP"
                 for label in dict.fromkeys(metadata.stream_labels()) if label not in in_sdp]
    if metadata.participants:
        warnings += [f"stream label {s.label} has no sending participant in metadata"
                     for s in streams if s.label in known and s.participant is None]
    return warnings


def map_roles(
    sdp: SessionDescription,
    metadata: RecordingMetadata | None,
    config: SiprecRoleConfig,
) -> RoleMapping:
    """Decide ``agent``/``customer`` per audio m-line (port 0 skipped), with warnings and the
    evidence looked at (every kind that said something, and which one decided).

    Streams are tied to participants by the metadata (stream label -> stream_id ->
    participantstreamassoc ``<send>``, or the other party's ``<recv>``). Evidence, strongest
    first: (1) a participant aor matches an agent pattern -> agent; (2) the metadata gives a
    participant a role (agent/customer); (3) the metadata marks the recorded party (the
    subscriber the SRC records for) -> agent; (4) the metadata says who the caller is and which
    way the call went (inbound: the caller is the customer; outbound: the agent); (5) the
    metadata says who the caller is, no direction -> the caller is the customer (inbound
    assumed); (6) label conventions (a caller label -> customer); (7) metadata order (the
    first metadata stream is the caller's -> customer); (8) m-line order (first customer,
    second agent) or, with fallback "customer", both customer. With two streams the result is
    always one agent and one customer (except fallback "customer" with no evidence at all):
    when a stronger kind gives both streams the same channel, the next kind picks which one
    flips, with a warning. One stream, or more than two: agent where (1)-(3) say so, else
    customer.
    """
    if metadata is None and config.metadata_required:
        raise SiprecError("recording metadata is required but the INVITE carries none")
    streams, bindings = _audio_streams(sdp, metadata)
    warnings = _sdp_warnings(streams)
    if metadata is not None:
        warnings += _metadata_warnings(sdp, streams, metadata)
    if not streams:
        return RoleMapping((), (*warnings, "no active audio m-line to map"), tuple(bindings))
    if len(streams) == 2:
        decisions, more, evidence = _map_pair(streams, metadata, config)
    else:
        decisions, more, evidence = _map_each(streams, config)
    return RoleMapping(decisions, (*warnings, *more), (*bindings, *evidence))
