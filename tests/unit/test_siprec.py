"""Tests for gateway.sip.siprec: RFC 7865 metadata parsing, SIPREC detection, role mapping.

Corpus files (tests/siprec_corpus) are written by hand in the shapes SRCs send; the expected
participants, labels and channels below were read off those files, not produced by the code.
"""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import pytest

from gateway.sip.message import Headers, SipRequest, parse_message
from gateway.sip.multipart import BodyPart, find_part, parse_multipart
from gateway.sip.sdp import SessionDescription, parse_sdp
from gateway.sip.siprec import (
    NS_RECORDING,
    NS_RECORDING_DRAFT,
    RecordingMetadata,
    RoleDecision,
    RoleMapping,
    SiprecError,
    SiprecRoleConfig,
    is_siprec_invite,
    map_roles,
    parse_metadata,
)

CORPUS = Path(__file__).resolve().parents[1] / "siprec_corpus"
EXTENSIONS = SiprecRoleConfig(agent_patterns=(re.compile(r"^sip:1\d{3}@"),))
NO_PATTERNS = SiprecRoleConfig()

CUSTOMER_AOR = "sip:+15551234567@carrier.example.net"
AGENT_AOR = "sip:1001@pbx.example.com"


def metadata(name: str) -> RecordingMetadata:
    return parse_metadata((CORPUS / name).read_bytes())


def sdp_file(name: str) -> SessionDescription:
    return parse_sdp((CORPUS / name).read_bytes())


def make_sdp(*labels: str | None, media: tuple[str, ...] = (),
             ports: tuple[int, ...] = ()) -> SessionDescription:
    """An SRC-style offer: one sendonly PCMU m-line per label (None: no a=label)."""
    lines = ["v=0", "o=SRC 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0"]
    for index, label in enumerate(labels):
        kind = media[index] if media else "audio"
        port = ports[index] if ports else 30000 + 2 * index
        lines += [f"m={kind} {port} RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=sendonly"]
        lines += [f"a=label:{label}"] if label is not None else []
    return parse_sdp(("\r\n".join(lines) + "\r\n").encode())


def invite(name: str) -> tuple[SipRequest, tuple[BodyPart, ...]]:
    request = parse_message((CORPUS / name).read_bytes())
    assert isinstance(request, SipRequest)
    content_type = request.headers.get("Content-Type")
    assert content_type is not None
    return request, parse_multipart(content_type, request.body)


def summary(decisions: tuple[RoleDecision, ...]) -> list[tuple[str, int, str]]:
    return [(d.label, d.mline_index, d.channel) for d in decisions]


# --------------------------------------------------------------------------- parsing: corpus


def test_generic_rfc7866() -> None:
    meta = metadata("generic_rfc7866.xml")
    assert meta.session_id == "mX3t0aJ9SK2vQe1Lr8bPdg=="
    assert meta.raw_size == (CORPUS / "generic_rfc7866.xml").stat().st_size
    customer, agent = meta.participants
    assert (customer.participant_id, customer.aor, customer.name) == (
        "p8Hc2WmTQfG6yK0dZr5nAQ==", CUSTOMER_AOR, "Pat Customer")
    assert customer.send == ("u2VvG1xhR0yMZp6c4QeTnw==",)
    assert customer.recv == ("d7LkP0s2TnqXb5Yw8HfJcA==",)
    assert (agent.aor, agent.name, agent.send) == (AGENT_AOR, "Alice Agent",
                                                   ("d7LkP0s2TnqXb5Yw8HfJcA==",))
    assert [(s.stream_id, s.label, s.session_id) for s in meta.streams] == [
        ("u2VvG1xhR0yMZp6c4QeTnw==", "96", "mX3t0aJ9SK2vQe1Lr8bPdg=="),
        ("d7LkP0s2TnqXb5Yw8HfJcA==", "97", "mX3t0aJ9SK2vQe1Lr8bPdg=="),
    ]
    assert meta.participant_for_label("96") == customer
    assert meta.participant_for_label("97") == agent
    assert meta.participant_for_label("5") is None


def test_broadworks_style_ignores_vendor_elements() -> None:
    meta = metadata("broadworks.xml")
    assert meta.stream_labels() == ("2", "1")
    assert [(p.aor, p.name) for p in meta.participants] == [
        ("sip:+12025550143@voip.example.net", "WIRELESS CALLER"),
        ("sip:+12025550188@voip.example.net", "Billing Queue Agent"),
    ]
    caller = meta.participant_for_label("1")
    assert caller is not None and caller.aor == "sip:+12025550143@voip.example.net"


def test_cisco_cube_style_interleaved_elements() -> None:
    meta = metadata("cisco_cube.xml")
    assert meta.session_id == "F6QfQ8gaEe6AAQAAvS1r2A=="
    assert [p.aor for p in meta.participants] == ["sip:1002@10.20.30.40",
                                                  "sip:+493012345678@10.20.30.1"]
    assert all(p.name is None for p in meta.participants)  # empty <nameID></nameID>
    label1, label2 = meta.participant_for_label("1"), meta.participant_for_label("2")
    assert label1 is not None and label1.aor == "sip:1002@10.20.30.40"
    assert label2 is not None and label2.aor == "sip:+493012345678@10.20.30.1"


def test_client_without_stream_elements() -> None:
    meta = metadata("no_streams.xml")
    assert meta.streams == ()
    assert [p.aor for p in meta.participants] == ["tel:+442079460123",
                                                  "sip:1044@pbx.example.co.uk"]
    assert all(p.send == () and p.recv == () for p in meta.participants)
    assert meta.participant_for_label("1") is None


def test_older_draft_namespace_with_send_inside_participant() -> None:
    meta = metadata("draft_participant_send.xml")
    caller, agent = meta.participants
    assert caller.send == ("ZHJhZnQtcy0xMA==",) and caller.recv == ("ZHJhZnQtcy0xMQ==",)
    assert meta.participant_for_label("10") == caller
    assert meta.participant_for_label("11") == agent
    assert agent.aor == "sip:agent-17@cc.example.org"


def test_reinvite_transfer_new_participant_sends_stream_1() -> None:
    meta = metadata("reinvite_transfer.xml")
    new, old = meta.participants
    assert (new.aor, new.disassociated) == ("sip:1003@10.20.30.41", False)
    assert (old.aor, old.disassociated) == ("sip:1002@10.20.30.40", True)
    # The old agent's association still lists stream 1 and comes last in the document:
    # only its disassociation makes the new agent the sender.
    assert old.send == new.send == ("F6RNcggaEe6AAwAAvS1r2A==",)
    assert meta.participant_for_label("1") == new
    assert meta.participant_for_label("2") is None  # partial update: customer not repeated


# --------------------------------------------------------------------------- parsing: hostile


@pytest.mark.parametrize(
    "name", ["billion_laughs.xml", "xxe_external_entity.xml", "xxe_parameter_entity.xml"]
)
def test_dtd_and_entities_are_forbidden_in_bounded_memory(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(SiprecError, match="forbidden XML construct"):
            parse_metadata(raw)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 2 * 1024 * 1024  # &lol9; alone would expand to ~3 GB


def test_hostile_metadata_inside_a_multipart_body() -> None:
    xml = (CORPUS / "billion_laughs.xml").read_bytes()
    raw = (b"--b\r\nContent-Type: application/rs-metadata+xml\r\n\r\n" + xml
           + b"\r\n--b--\r\n")
    part = find_part(parse_multipart("multipart/mixed;boundary=b", raw),
                     "application/rs-metadata+xml")
    assert part is not None
    with pytest.raises(SiprecError, match="forbidden XML construct"):
        parse_metadata(part.body)


def test_malformed_xml() -> None:
    with pytest.raises(SiprecError, match="malformed XML"):
        metadata("malformed.xml")


def test_foreign_root_element() -> None:
    with pytest.raises(SiprecError, match="conference-info"):
        metadata("wrong_namespace.xml")


def test_oversize_metadata() -> None:
    raw = (CORPUS / "oversize.xml").read_bytes()
    assert len(raw) > 64 * 1024
    with pytest.raises(SiprecError, match=f"{len(raw)} bytes, limit is 65536"):
        parse_metadata(raw)
    meta = parse_metadata(raw, max_bytes=128 * 1024)  # the document itself is valid
    assert [p.aor for p in meta.participants] == ["sip:+15550001111@carrier.example.net"]


def doc(inner: str, namespace: str = NS_RECORDING) -> bytes:
    return f'<recording xmlns="{namespace}">{inner}</recording>'.encode()


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b"", "empty"),
        (b"  \r\n", "empty"),
        (doc('<participant><nameID aor="sip:a@b"/></participant>'), "participant_id"),
        (doc('<stream session_id="s"><label>1</label></stream>'), "stream_id"),
        (doc('<stream stream_id="s1"/>'), "has no <label>"),
        (doc('<stream stream_id="s1"><label>  </label></stream>'), "has no <label>"),
        (doc("<participantstreamassoc><send>s1</send></participantstreamassoc>"),
         "participant_id"),
        (b'<recording xmlns="urn:ietf:params:xml:ns:recording:2"/>', "root element"),
        (b"<recording/>", "root element"),
    ],
)
def test_invalid_metadata(xml: bytes, message: str) -> None:
    with pytest.raises(SiprecError, match=message):
        parse_metadata(xml)


def test_draft_namespace_root_is_accepted() -> None:
    meta = parse_metadata(doc('<stream stream_id="s1"><label>7</label></stream>',
                              NS_RECORDING_DRAFT))
    assert meta.stream_labels() == ("7",)


def test_foreign_namespace_elements_are_ignored() -> None:
    meta = parse_metadata(doc(
        '<x:participant xmlns:x="urn:example:other" participant_id="evil">'
        '<x:nameID aor="sip:1000@x"/></x:participant>'
        "<unknown-element><participant/></unknown-element>"
    ))
    assert meta.participants == ()


def test_first_name_id_with_aor_wins_and_aor_child_fallback() -> None:
    meta = parse_metadata(doc(
        '<participant participant_id="p1"><nameID><name>no aor</name></nameID>'
        '<nameID aor="sip:first@x"><name>First</name></nameID>'
        '<nameID aor="sip:second@x"/></participant>'
        '<participant participant_id="p2"><aor>sip:early-draft@x</aor></participant>'
    ))
    assert [(p.aor, p.name) for p in meta.participants] == [
        ("sip:first@x", "First"), ("sip:early-draft@x", None)]


def test_association_for_undeclared_participant_creates_it() -> None:
    meta = parse_metadata(doc(
        '<stream stream_id="s1"><label>1</label></stream>'
        '<participantstreamassoc participant_id="later"><send>s1</send></participantstreamassoc>'
    ))
    sender = meta.participant_for_label("1")
    assert sender is not None and (sender.participant_id, sender.aor) == ("later", None)


def test_later_association_replaces_earlier_one() -> None:
    meta = parse_metadata(doc(
        '<participant participant_id="p1"><send>s1</send></participant>'
        '<participantstreamassoc participant_id="p1"><send>s2</send></participantstreamassoc>'
    ))
    assert meta.participants[0].send == ("s2",)


# --------------------------------------------------------------------------- is_siprec_invite


@pytest.mark.parametrize("name", ["invite_generic_crlf.sip", "invite_broadworks_lf.sip",
                                  "invite_cube_crlf.sip", "invite_no_metadata.sip"])
def test_corpus_invites_are_siprec(name: str) -> None:
    request, parts = invite(name)
    assert is_siprec_invite(request.headers, parts)
    assert is_siprec_invite(request.headers)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("Require", "timer, siprec")], True),
        ([("Require", "100rel")], False),
        ([("Supported", "siprec")], False),
        ([("k", "siprec, replaces")], False),
        ([("Contact", "<sip:src@192.0.2.1:5060>;+sip.src")], True),
        ([("m", "<sip:src@192.0.2.1>;expires=3600;+sip.src;audio")], True),
        ([("Contact", "<sip:src@192.0.2.1>;+SIP.SRC")], True),
        ([("Contact", "<sip:src@192.0.2.1>;+sip.srcx")], False),
        ([("Contact", '"+sip.src" <sip:src@192.0.2.1>')], False),
        ([("Contact", "<sip:alice@192.0.2.1>")], False),
        ([], False),
    ],
)
def test_is_siprec_invite_headers(headers: list[tuple[str, str]], expected: bool) -> None:
    assert is_siprec_invite(Headers(headers)) is expected


def test_is_siprec_invite_from_body_parts() -> None:
    sdp = BodyPart("application/sdp", (), None, (), b"v=0")
    metadata_part = BodyPart("application/rs-metadata+xml", (), None, (), b"<x/>")
    by_disposition = BodyPart("application/xml", (), "recording-session", (), b"<x/>")
    assert not is_siprec_invite(Headers(), (sdp,))
    assert is_siprec_invite(Headers(), (sdp, metadata_part))
    assert is_siprec_invite(Headers(), (sdp, by_disposition))


# --------------------------------------------------------------------------- roles: corpus


def corpus_roles(name: str, config: SiprecRoleConfig) -> RoleMapping:
    _, parts = invite(name)
    sdp_part = find_part(parts, "application/sdp")
    meta_part = find_part(parts, "application/rs-metadata+xml")
    assert sdp_part is not None
    meta = parse_metadata(meta_part.body) if meta_part is not None else None
    return map_roles(parse_sdp(sdp_part.body), meta, config)


def test_generic_agent_pattern_decides() -> None:
    decisions, warnings, _ = corpus_roles("invite_generic_crlf.sip", EXTENSIONS)
    assert summary(decisions) == [("96", 0, "customer"), ("97", 1, "agent")]
    assert warnings == ()
    assert "sip:1001@pbx.example.com matches agent pattern" in decisions[1].why
    assert decisions[0].participant is not None
    assert decisions[0].participant.aor == CUSTOMER_AOR
    assert decisions[1].participant is not None and decisions[1].participant.aor == AGENT_AOR


def test_generic_without_patterns_uses_metadata_order() -> None:
    decisions, _, _ = corpus_roles("invite_generic_crlf.sip", NO_PATTERNS)
    assert summary(decisions) == [("96", 0, "customer"), ("97", 1, "agent")]
    assert "first stream in metadata" in decisions[0].why


def test_metadata_order_beats_mline_order() -> None:
    reversed_sdp = make_sdp("97", "96")
    decisions, warnings, _ = map_roles(reversed_sdp, metadata("generic_rfc7866.xml"), NO_PATTERNS)
    assert summary(decisions) == [("97", 0, "agent"), ("96", 1, "customer")]
    assert warnings == ()


def test_broadworks_caller_label_beats_metadata_order() -> None:
    decisions, _, _ = corpus_roles("invite_broadworks_lf.sip", NO_PATTERNS)
    assert summary(decisions) == [("1", 0, "customer"), ("2", 1, "agent")]
    assert "caller label" in decisions[0].why


def test_broadworks_agent_pattern_on_user_part_beats_caller_label() -> None:
    # A pattern matching the *caller's* number: evidence (1) overrides label conventions.
    config = SiprecRoleConfig(agent_patterns=(re.compile(r"^\+12025550143$"),))
    decisions, _, _ = corpus_roles("invite_broadworks_lf.sip", config)
    assert summary(decisions) == [("1", 0, "agent"), ("2", 1, "customer")]
    assert "agent pattern" in decisions[0].why and "agent pattern" in decisions[1].why


def test_cube_outbound_agent_is_caller() -> None:
    decisions, warnings, _ = corpus_roles("invite_cube_crlf.sip", EXTENSIONS)
    assert summary(decisions) == [("1", 0, "agent"), ("2", 1, "customer")]
    assert warnings == ()
    decisions, _, _ = corpus_roles("invite_cube_crlf.sip", NO_PATTERNS)
    assert summary(decisions) == [("1", 0, "customer"), ("2", 1, "agent")]


def test_no_metadata_part() -> None:
    decisions, warnings, _ = corpus_roles("invite_no_metadata.sip", EXTENSIONS)
    assert summary(decisions) == [("1", 0, "customer"), ("2", 1, "agent")]
    assert all(d.participant is None for d in decisions)
    assert warnings == ()
    with pytest.raises(SiprecError, match="required"):
        corpus_roles("invite_no_metadata.sip", SiprecRoleConfig(metadata_required=True))


def test_reinvite_after_transfer() -> None:
    decisions, warnings, _ = map_roles(sdp_file("cisco_cube.sdp"),
                                    metadata("reinvite_transfer.xml"), EXTENSIONS)
    assert summary(decisions) == [("1", 0, "agent"), ("2", 1, "customer")]
    assert decisions[0].participant is not None
    assert decisions[0].participant.aor == "sip:1003@10.20.30.41"
    assert warnings == ("stream label 2 has no sending participant in metadata",)


def test_metadata_without_streams() -> None:
    decisions, warnings, _ = map_roles(sdp_file("broadworks.sdp"), metadata("no_streams.xml"),
                                    EXTENSIONS)
    assert summary(decisions) == [("1", 0, "customer"), ("2", 1, "agent")]
    assert all(d.participant is None for d in decisions)
    assert warnings == ("metadata has no <stream> elements: participants cannot be tied "
                        "to m-lines",)


def test_draft_metadata_with_user_part_pattern() -> None:
    config = SiprecRoleConfig(agent_patterns=(re.compile(r"^agent-\d+$"),))
    decisions, warnings, _ = map_roles(sdp_file("draft.sdp"),
                                    metadata("draft_participant_send.xml"), config)
    assert summary(decisions) == [("10", 0, "customer"), ("11", 1, "agent")]
    assert "sip:agent-17@cc.example.org" in decisions[1].why
    assert warnings == ()


# --------------------------------------------------------------------------- roles: conflicts


def test_both_agents_label_convention_picks_the_customer() -> None:
    config = SiprecRoleConfig(agent_patterns=(re.compile(r"@10\.20\.30\."),))
    decisions, warnings, _ = map_roles(sdp_file("cisco_cube.sdp"), metadata("cisco_cube.xml"),
                                    config)
    assert summary(decisions) == [("1", 0, "customer"), ("2", 1, "agent")]
    assert len(warnings) == 1
    assert warnings[0].startswith("both streams mapped to agent by agent patterns")
    assert warnings[0].endswith("label 1 forced to customer by label conventions")


def test_both_caller_labels_fall_to_mline_order() -> None:
    decisions, warnings, _ = map_roles(make_sdp("caller", "1"), None, NO_PATTERNS)
    assert summary(decisions) == [("caller", 0, "customer"), ("1", 1, "agent")]
    assert len(warnings) == 1
    assert warnings[0].startswith("both streams mapped to customer by label conventions")
    assert warnings[0].endswith("label 1 forced to agent by m-line order")


def test_two_conflicts_then_mline_order() -> None:
    xml = doc(
        '<participant participant_id="a"><nameID aor="sip:1001@pbx"/><send>s1</send></participant>'
        '<participant participant_id="b"><nameID aor="sip:1002@pbx"/><send>s2</send></participant>'
        '<stream stream_id="s2"><label>inbound</label></stream>'
        '<stream stream_id="s1"><label>a_leg</label></stream>'
    )
    decisions, warnings, _ = map_roles(make_sdp("a_leg", "inbound"), parse_metadata(xml),
                                    EXTENSIONS)
    # agents: conflict; caller labels: conflict; metadata order: label inbound first.
    assert summary(decisions) == [("a_leg", 0, "agent"), ("inbound", 1, "customer")]
    assert len(warnings) == 2
    assert "by metadata order" in warnings[0] and "by metadata order" in warnings[1]


def test_caller_labels_are_case_insensitive() -> None:
    decisions, _, _ = map_roles(make_sdp("B_LEG", "A_LEG"), None, NO_PATTERNS)
    assert summary(decisions) == [("B_LEG", 0, "agent"), ("A_LEG", 1, "customer")]


def test_mline_order_fallback() -> None:
    decisions, warnings, _ = map_roles(make_sdp("x", "y"), None, NO_PATTERNS)
    assert summary(decisions) == [("x", 0, "customer"), ("y", 1, "agent")]
    assert "fallback mline_order" in decisions[0].why
    assert warnings == ()


def test_customer_fallback_maps_both_to_customer() -> None:
    config = SiprecRoleConfig(fallback="customer")
    decisions, warnings, _ = map_roles(make_sdp("x", "y"), None, config)
    assert [d.channel for d in decisions] == ["customer", "customer"]
    assert len(warnings) == 1 and "both mapped to customer" in warnings[0]
    # With evidence the fallback is not used.
    decisions, _, _ = map_roles(make_sdp("y", "1"), None, config)
    assert [d.channel for d in decisions] == ["agent", "customer"]


def test_customer_fallback_still_breaks_a_conflict() -> None:
    config = SiprecRoleConfig(fallback="customer")
    decisions, warnings, _ = map_roles(make_sdp("1", "caller"), None, config)
    assert summary(decisions) == [("1", 0, "customer"), ("caller", 1, "agent")]
    assert warnings[0].endswith("label caller forced to agent by m-line order")


def test_invalid_fallback() -> None:
    with pytest.raises(ValueError, match="fallback"):
        SiprecRoleConfig(fallback="agent")


# --------------------------------------------------------------------------- roles: shapes


def test_single_stream() -> None:
    decisions, _, _ = map_roles(make_sdp("1"), None, EXTENSIONS)
    assert summary(decisions) == [("1", 0, "customer")]
    meta = metadata("generic_rfc7866.xml")
    decisions, _, _ = map_roles(make_sdp("97"), meta, EXTENSIONS)
    assert summary(decisions) == [("97", 0, "agent")]
    decisions, _, _ = map_roles(make_sdp("97"), meta, NO_PATTERNS)
    assert summary(decisions) == [("97", 0, "customer")]


def test_three_streams() -> None:
    meta = metadata("generic_rfc7866.xml")
    decisions, warnings, _ = map_roles(make_sdp("96", "97", "98"), meta, EXTENSIONS)
    assert summary(decisions) == [("96", 0, "customer"), ("97", 1, "agent"),
                                  ("98", 2, "customer")]
    assert "3 audio streams: only agent patterns and metadata roles tell them apart" in warnings


def test_video_and_disabled_mlines_are_skipped() -> None:
    sdp = make_sdp("v1", "96", "old", "97", media=("video", "audio", "audio", "audio"),
                   ports=(30000, 30002, 0, 30006))
    decisions, warnings, _ = map_roles(sdp, metadata("generic_rfc7866.xml"), EXTENSIONS)
    assert summary(decisions) == [("96", 1, "customer"), ("97", 3, "agent")]
    assert warnings == ()


def test_no_audio() -> None:
    decisions, warnings, _ = map_roles(make_sdp("v", media=("video",)), None, NO_PATTERNS)
    assert decisions == ()
    assert warnings == ("no active audio m-line to map",)


def test_label_consistency_warnings() -> None:
    decisions, warnings, _ = map_roles(make_sdp("96", "3"), metadata("generic_rfc7866.xml"),
                                    EXTENSIONS)
    assert warnings == ("label 3 in SDP has no stream in metadata",
                        "metadata stream label 97 not in SDP")
    assert summary(decisions) == [("96", 0, "customer"), ("3", 1, "agent")]


def test_missing_and_duplicate_labels() -> None:
    _, warnings, _ = map_roles(make_sdp("1", None), None, NO_PATTERNS)
    assert warnings == ("m-line #1 has no a=label",)
    decisions, warnings, _ = map_roles(make_sdp("7", "7"), None, NO_PATTERNS)
    assert warnings == ("label 7 appears on more than one m-line",)
    assert [d.channel for d in decisions] == ["customer", "agent"]


def test_every_decision_says_why() -> None:
    configs = (EXTENSIONS, NO_PATTERNS, SiprecRoleConfig(fallback="customer"))
    for name in ("invite_generic_crlf.sip", "invite_broadworks_lf.sip",
                 "invite_cube_crlf.sip", "invite_no_metadata.sip"):
        for config in configs:
            decisions, _, _ = corpus_roles(name, config)
            assert len(decisions) == 2
            assert all(d.why for d in decisions)
            assert sorted(d.channel for d in decisions) == ["agent", "customer"]


# --------------------------------------------------------------------------- roles: vendor shapes
# (file, SDP labels in m-line order, expected channel per label, participant aor per label,
#  the kind of evidence that decides). In every case but metaswitch the label conventions
# (label 1/10/a_leg = the caller = the customer) say the opposite: only the metadata can tell.

VENDOR_SHAPES = [
    ("broadworks_terminating.xml", ("1", "2"), ("agent", "customer"),
     ("sip:+13125550170@voip.example.net", "sip:+13125550111@carrier.example.com"),
     "metadata recorded party"),
    ("cisco_cube_inbound.xml", ("1", "2"), ("agent", "customer"),
     ("sip:4021@198.51.100.40", "sip:+441632960555@198.51.100.1"),
     "metadata caller and direction"),
    ("acme_packet.xml", ("10", "11"), ("agent", "customer"),
     ("sip:sales@cc.example.org", "sip:5125550199@203.0.113.9"), "metadata caller"),
    ("audiocodes_outbound.xml", ("1", "2"), ("agent", "customer"),
     ("sip:+61255501234@sbc.example.com.au", "sip:+61255509876@carrier.example.net"),
     "metadata caller and direction"),
    ("avaya_sbce.xml", ("a_leg", "b_leg"), ("agent", "customer"),
     ("sip:72455@cm.example.com", "sip:+12125550142@sbce.example.com"), "metadata role"),
    ("metaswitch.xml", ("1", "2"), ("customer", "agent"),
     ("tel:+16175550999", "sip:+16175550123@cfs.example.net"), "metadata recorded party"),
    ("genesys_recv_only.xml", ("1", "2"), ("agent", "customer"),
     ("sip:agent_jo@gen.example.de", "sip:+4930555017@trunk.example.de"),
     "metadata caller and direction"),
]


def outcomes(mapping: RoleMapping) -> dict[str, str]:
    return {e.source: e.outcome for e in mapping.evidence if e.outcome != "binding"}


@pytest.mark.parametrize(("name", "labels", "channels", "aors", "decider"), VENDOR_SHAPES,
                         ids=[shape[0].removesuffix(".xml") for shape in VENDOR_SHAPES])
def test_vendor_shape_roles(name: str, labels: tuple[str, str], channels: tuple[str, str],
                            aors: tuple[str, str], decider: str) -> None:
    mapping = map_roles(make_sdp(*labels), metadata(name), NO_PATTERNS)
    expected = list(zip(labels, channels, strict=True))
    assert [(d.label, d.channel) for d in mapping.decisions] == expected
    assert [d.participant.aor if d.participant else None for d in mapping.decisions] == list(aors)
    assert mapping.warnings == ()
    said = outcomes(mapping)
    assert said[decider] == "decided", mapping.evidence
    assert [k for k, v in said.items() if v == "decided"] == [decider]
    if name != "metaswitch.xml":
        assert said["label conventions"] == "disagrees"
    bindings = [e for e in mapping.evidence if e.outcome == "binding"]
    assert len(bindings) == 2
    assert all(d.why for d in mapping.decisions)


def test_broadworks_recorded_user_on_label_1_is_the_agent() -> None:
    """Issue 13 item 18: the recorded user (callee of a terminating call) sends label 1."""
    mapping = map_roles(make_sdp("1", "2"), metadata("broadworks_terminating.xml"), NO_PATTERNS)
    agent, customer = mapping.decisions
    assert (agent.channel, agent.participant and agent.participant.name) == ("agent", "Rita Ortiz")
    assert customer.channel == "customer"
    assert "recorded party" in agent.why and "<userid>rita.ortiz@voip.example.net" in agent.why
    decided = next(e for e in mapping.evidence if e.outcome == "decided")
    assert decided.to_dict() == {"source": "metadata recorded party", "outcome": "decided",
                                 "says": decided.says}
    assert "label 1: participant sip:+13125550170@voip.example.net is the recorded party" \
        in decided.says
    binding = mapping.evidence[0]
    assert binding.says == ("label 1 is sent by participant sip:+13125550170@voip.example.net "
                            "(participantstreamassoc <send>)")


def test_agent_pattern_still_outranks_the_metadata() -> None:
    config = SiprecRoleConfig(agent_patterns=(re.compile(r"^\+13125550111$"),))
    mapping = map_roles(make_sdp("1", "2"), metadata("broadworks_terminating.xml"), config)
    assert [d.channel for d in mapping.decisions] == ["customer", "agent"]
    said = outcomes(mapping)
    assert said["agent patterns"] == "decided"
    assert said["metadata recorded party"] == "disagrees"


def test_recv_only_associations_bind_the_other_participant() -> None:
    meta = metadata("genesys_recv_only.xml")
    who, how = meta.binding_for_label("1")
    assert who is not None and who.aor == "sip:agent_jo@gen.example.de"
    assert "<recv>s it" in how
    assert meta.participant_for_label("2") is not None
    assert meta.binding_for_label("9") == (None, "")


def test_both_marked_recorded_is_a_conflict_that_labels_break() -> None:
    mapping = map_roles(make_sdp("5", "caller"), metadata("both_recorded.xml"), NO_PATTERNS)
    assert [d.channel for d in mapping.decisions] == ["agent", "customer"]
    assert outcomes(mapping) == {"metadata recorded party": "conflict",
                                 "label conventions": "decided",
                                 "metadata order": "disagrees"}   # label 5 is listed first
    assert any("both streams mapped to agent by metadata recorded party" in w
               for w in mapping.warnings)


def test_direction_words_that_are_not_directions_are_ignored() -> None:
    # broadworks.xml: callType "Network" is no direction; no caller mark: labels decide.
    mapping = map_roles(sdp_file("broadworks.sdp"), metadata("broadworks.xml"), NO_PATTERNS)
    assert [d.channel for d in mapping.decisions] == ["customer", "agent"]
    assert outcomes(mapping)["label conventions"] == "decided"
    assert "metadata caller and direction" not in outcomes(mapping)


def test_hints_are_collected_from_extension_elements() -> None:
    meta = metadata("acme_packet.xml")
    caller = next(p for p in meta.participants if p.aor == "sip:5125550199@203.0.113.9")
    assert ("callerorig", "true") in caller.hints
    assert ("value", "gold") in caller.hints
    assert ("ucid", "00FA0800210A1B2C3D4E5F") in meta.hints
    cube = metadata("cisco_cube_inbound.xml")
    assert ("calldirection", "inbound") in cube.hints     # recording-level <extensiondata>


def test_metadata_role_decides_with_one_stream_or_three() -> None:
    meta = metadata("avaya_sbce.xml")
    mapping = map_roles(make_sdp("a_leg"), meta, NO_PATTERNS)
    assert [d.channel for d in mapping.decisions] == ["agent"]
    mapping = map_roles(make_sdp("b_leg", "a_leg", "x"), meta, NO_PATTERNS)
    assert [d.channel for d in mapping.decisions] == ["customer", "agent", "customer"]
    assert [e.outcome for e in mapping.evidence].count("decided") == 3
