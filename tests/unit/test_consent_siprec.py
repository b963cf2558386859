"""SIPREC metadata as a consent source: a real SRC document (tests/siprec_corpus/acme_packet.xml)
with a consent element added, parsed by gateway/sip/siprec.py, turned into the policy's facts
by ``facts_of`` and decided per participant's channel."""

from __future__ import annotations

from pathlib import Path

from gateway.config import ConsentConfig
from gateway.consent.live import facts_of
from gateway.consent.policy import decide
from gateway.sip.dialog import CallMetadata
from gateway.sip.siprec import parse_metadata

CORPUS = Path(__file__).resolve().parents[1] / "siprec_corpus" / "acme_packet.xml"
CALLER_EXT = "<apkt:callerOrig>true</apkt:callerOrig>"     # participant sending label 11
CALLEE_EXT = "<apkt:callerOrig>false</apkt:callerOrig>"    # participant sending label 10
SESSION_EXT = "<apkt:ucid>00FA0800210A1B2C3D4E5F</apkt:ucid>"
META = CallMetadata(call_id="c-1", sip_call_id="x", from_uri="sip:src@203.0.113.9",
                    from_display=None, to_uri="sip:rec@gw", request_uri="sip:rec@gw",
                    remote_addr=("203.0.113.9", 5060), transport="udp",
                    headers=(("X-Consent", "maybe"),))
CHANNELS = ("agent", "customer")    # label 10 = the callee (agent), 11 = the caller
LABELS = ("10", "11")
DEFAULTS = ConsentConfig()


def _decide(replace: tuple[str, str], config: ConsentConfig = DEFAULTS) -> dict[str, bool]:
    xml = CORPUS.read_text()
    assert replace[0] in xml
    metadata = parse_metadata(xml.replace(replace[0], replace[0] + replace[1]).encode())
    facts = facts_of(META, CHANNELS, metadata, LABELS)
    return {d.channel: d.granted for d in decide(config, facts)
            if d.source == "siprec"}


def test_participant_element_decides_that_participants_channel() -> None:
    assert _decide((CALLER_EXT, "<apkt:consent>granted</apkt:consent>")) == {"customer": True}
    assert _decide((CALLEE_EXT, "<apkt:Consent>No</apkt:Consent>")) == {"agent": False}


def test_attribute_form_and_session_element() -> None:
    assert _decide((CALLER_EXT, '<apkt:recording consent="opt-out"/>')) == {"customer": False}
    assert _decide((SESSION_EXT, "<apkt:consent>yes</apkt:consent>")) == {
        "agent": True, "customer": True}


def test_element_name_is_configurable_and_metadata_without_it_decides_nothing() -> None:
    renamed = ConsentConfig(siprec_element="trainingOk")
    assert _decide((CALLER_EXT, "<apkt:trainingOk>true</apkt:trainingOk>"), renamed) == {
        "customer": True}
    assert _decide((CALLER_EXT, "<apkt:consent>granted</apkt:consent>"), renamed) == {}
    assert _decide((CALLER_EXT, "")) == {}


def test_facts_carry_users_and_source_not_more() -> None:
    facts = facts_of(META, ("customer",))
    assert (facts.from_user, facts.to_user, facts.source_ip) == ("src", "rec", "203.0.113.9")
    assert facts.channel_hints == () and facts.session_hints == ()
