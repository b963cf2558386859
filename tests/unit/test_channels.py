"""Channel mapping rules and conversation joining."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from gateway.channels import (
    ChannelDecision,
    ChannelMapper,
    ConversationJoiner,
    DuplicateCallError,
    UnknownChannelError,
    uri_user,
)
from gateway.config import ChannelRule, ChannelsConfig, parse_config
from gateway.sip.dialog import CallMetadata


def meta(*, headers: tuple[tuple[str, str], ...] = (), from_uri: str = "sip:5551000@pbx",
         to_uri: str = "sip:support@gw", request_uri: str = "sip:gateway@10.0.0.1:5060",
         call_id: str = "c1") -> CallMetadata:
    return CallMetadata(call_id, f"sip-{call_id}", from_uri, None, to_uri, request_uri,
                        ("192.0.2.1", 5060), "udp", headers)


def rule(match: str, pattern: str, channel: str, header: str = "") -> ChannelRule:
    return ChannelRule(match=match, pattern=re.compile(pattern), channel=channel, header=header)


def mapper(*rules: ChannelRule, default: str = "customer") -> ChannelMapper:
    return ChannelMapper(ChannelsConfig(default=default, rules=rules))


# --------------------------------------------------------------------------- uri_user

@pytest.mark.parametrize(("uri", "user"), [
    ("sip:alice@example.com", "alice"),
    ("SIPS:bob@example.com;transport=tls", "bob"),
    ("sip:carol:secret@example.com", "carol"),
    ("sip:+15551234;phone-context=example.com@gw;user=phone", "+15551234"),
    ("tel:+1-555-0100;phone-context=example.com", "+1-555-0100"),
    ('"Agent 7" <sip:agent7@pbx>;tag=abc', "agent7"),
    ("sip:first%20last@host", "first last"),
    ("sip:example.com", None),
    ("sip:@example.com", None),
    ("http://example.com/", None),
    ("", None),
])
def test_uri_user(uri: str, user: str | None) -> None:
    assert uri_user(uri) == user


# --------------------------------------------------------------------------- mapping

def test_header_rule_case_insensitive_name_regex_search() -> None:
    m = mapper(rule("header", "agent", "agent", header="X-Leg"))
    decision = m.classify(meta(headers=(("x-leg", "the-AGENT-side / agent leg"),)))
    assert decision.channel == "agent" and decision.rule_index == 0
    assert "X-Leg" in decision.why and "'agent'" in decision.why


def test_header_rule_value_is_case_sensitive_unless_pattern_says() -> None:
    m = mapper(rule("header", "^agent$", "agent", header="X-Leg"))
    assert m.classify(meta(headers=(("X-Leg", "AGENT"),))).rule_index is None
    m = mapper(rule("header", "(?i)^agent$", "agent", header="X-Leg"))
    assert m.classify(meta(headers=(("X-Leg", "AGENT"),))).rule_index == 0


def test_header_absent_or_not_matching_falls_to_default() -> None:
    m = mapper(rule("header", "agent", "agent", header="X-Leg"))
    assert m.classify(meta()) == ChannelDecision("customer", None,
                                                 "no rule matched: default customer")
    assert m.classify(meta(headers=(("X-Leg", "customer"),))).channel == "customer"
    assert m.classify(meta(headers=(("X-Other", "agent"),))).channel == "customer"
    assert m.classify(meta(headers=(("X-Leg", ""),))).channel == "customer"


def test_header_any_of_repeated_values_may_match() -> None:
    m = mapper(rule("header", "^agent$", "agent", header="X-Leg"))
    assert m.classify(meta(headers=(("X-Leg", "x"), ("X-LEG", "agent")))).channel == "agent"


@pytest.mark.parametrize(("match", "kwargs"), [
    ("to_user", {"to_uri": "<sip:queue-agents@pbx>"}),
    ("from_user", {"from_uri": "sip:queue-agents@pbx;tag=1"}),
    ("request_user", {"request_uri": "sip:queue-agents@10.0.0.1"}),
])
def test_uri_user_rules(match: str, kwargs: dict[str, str]) -> None:
    m = mapper(rule(match, "^queue-agents$", "agent"))
    decision = m.classify(meta(**kwargs))  # type: ignore[arg-type]
    assert (decision.channel, decision.rule_index) == ("agent", 0)
    assert m.classify(meta()).channel == "customer"  # the default URIs do not match


def test_uri_rule_matches_user_part_only() -> None:
    m = mapper(rule("to_user", "example", "agent"))
    assert m.classify(meta(to_uri="sip:bob@example.com")).channel == "customer"
    m = mapper(rule("to_user", ".*", "agent"))
    assert m.classify(meta(to_uri="sip:example.com")).channel == "customer"  # no user part


def test_siprec_participant_rule() -> None:
    m = mapper(rule("siprec_participant", "^sip:agent-", "agent"))
    assert m.classify(meta(), siprec_participant="sip:agent-7@pbx").channel == "agent"
    assert m.classify(meta(), siprec_participant="sip:cust@pbx").channel == "customer"
    assert m.classify(meta()).channel == "customer"


def test_rules_in_order_first_match_wins() -> None:
    m = mapper(rule("from_user", "^555", "customer"),
               rule("header", "agent", "agent", header="X-Leg"),
               default="agent")
    both = meta(headers=(("X-Leg", "agent"),), from_uri="sip:5551000@pbx")
    assert (m.classify(both).channel, m.classify(both).rule_index) == ("customer", 0)
    only_header = meta(headers=(("X-Leg", "agent"),), from_uri="sip:9@pbx")
    assert (m.classify(only_header).channel, m.classify(only_header).rule_index) == ("agent", 1)
    neither = meta(from_uri="sip:9@pbx")
    assert m.classify(neither) == ChannelDecision("agent", None, "no rule matched: default agent")


def test_mapper_from_parsed_config() -> None:
    cfg = parse_config({"channels": {"default": "agent", "rules": [
        {"match": "header", "header": "X-Customer-Number", "pattern": ".", "channel": "customer"},
    ]}}, env={}, base_dir=Path("/"))
    m = ChannelMapper(cfg.channels)
    assert m.classify(meta(headers=(("X-Customer-Number", "+33 1"),))).channel == "customer"
    assert m.classify(meta()).channel == "agent"


def test_mapper_rejects_unknown_channels() -> None:
    with pytest.raises(UnknownChannelError):
        ChannelMapper(ChannelsConfig(default="robot"))


# --------------------------------------------------------------------------- joining

def joiner(wait_s: float = 10.0) -> ConversationJoiner:
    counter = itertools.count(1)
    return ConversationJoiner("X-Conversation-Id", wait_s=wait_s,
                              id_factory=lambda: f"conv{next(counter)}")


def leg(call_id: str, value: str | None, header: str = "X-Conversation-Id") -> CallMetadata:
    return meta(call_id=call_id, headers=() if value is None else ((header, value),))


def test_two_calls_with_same_value_join() -> None:
    j = joiner()
    first = j.add("a", leg("a", "X1"), "agent", now=0.0)
    assert first.conversation_id == "conv1" and first.legs == (("a", "agent"),)
    assert j.waiting == 1
    second = j.add("b", leg("b", "X1", header="x-conversation-id"), "customer", now=1.0)
    assert second.conversation_id == "conv1"
    assert second.legs == (("a", "agent"), ("b", "customer"))
    assert "joined" in second.why and j.waiting == 0
    assert j.conversation_of("a") == second


def test_different_values_do_not_join() -> None:
    j = joiner()
    a = j.add("a", leg("a", "X1"), "agent", now=0.0)
    b = j.add("b", leg("b", "X2"), "customer", now=0.0)
    assert a.conversation_id != b.conversation_id and len(b.legs) == 1


def test_same_channel_second_leg_gets_the_other() -> None:
    j = joiner()
    j.add("a", leg("a", "X1"), "customer", now=0.0)
    joined = j.add("b", leg("b", "X1"), "customer", now=0.5)
    assert joined.legs == (("a", "customer"), ("b", "agent"))
    assert joined.channel_of("b") == "agent"
    assert "both legs were customer" in joined.why


def test_missing_or_empty_header_is_single_leg() -> None:
    j = joiner()
    a = j.add("a", leg("a", None), "agent", now=0.0)
    b = j.add("b", leg("b", "  "), "agent", now=0.0)
    c = j.add("c", leg("c", None), "customer", now=0.0)
    assert len({a.conversation_id, b.conversation_id, c.conversation_id}) == 3
    assert all(len(x.legs) == 1 for x in (a, b, c)) and j.waiting == 0
    assert "single-leg" in a.why


def test_disabled_header_never_joins() -> None:
    j = ConversationJoiner("")
    a = j.add("a", leg("a", "X1"), "agent", now=0.0)
    b = j.add("b", leg("b", "X1"), "customer", now=0.0)
    assert a.conversation_id != b.conversation_id


def test_third_call_starts_new_conversation_and_waits() -> None:
    j = joiner()
    j.add("a", leg("a", "X1"), "agent", now=0.0)
    pair = j.add("b", leg("b", "X1"), "customer", now=0.0)
    third = j.add("c", leg("c", "X1"), "agent", now=0.0)
    assert third.conversation_id not in (pair.conversation_id,) and third.legs == (("c", "agent"),)
    fourth = j.add("d", leg("d", "X1"), "agent", now=0.0)
    assert fourth.conversation_id == third.conversation_id
    assert fourth.legs == (("c", "agent"), ("d", "customer"))
    assert j.conversation_of("a") == pair  # the first pair is untouched


def test_expired_leg_stops_waiting() -> None:
    j = joiner(wait_s=10.0)
    a = j.add("a", leg("a", "X1"), "agent", now=0.0)
    j.expire(9.9)
    assert j.waiting == 1
    j.expire(10.0)
    assert j.waiting == 0
    b = j.add("b", leg("b", "X1"), "customer", now=10.5)
    assert b.conversation_id != a.conversation_id


def test_add_expires_by_itself() -> None:
    j = joiner(wait_s=5.0)
    a = j.add("a", leg("a", "X1"), "agent", now=0.0)
    b = j.add("b", leg("b", "X1"), "customer", now=6.0)  # no expire() call in between
    assert b.conversation_id != a.conversation_id and len(b.legs) == 1


def test_removed_first_leg_is_not_joined() -> None:
    j = joiner()
    a = j.add("a", leg("a", "X1"), "agent", now=0.0)
    j.remove("a")
    assert j.waiting == 0 and j.conversation_of("a") is None
    b = j.add("b", leg("b", "X1"), "customer", now=1.0)
    assert b.conversation_id != a.conversation_id and b.legs == (("b", "customer"),)
    j.remove("unknown")  # no-op


def test_removing_one_joined_leg_keeps_the_other() -> None:
    j = joiner()
    j.add("a", leg("a", "X1"), "agent", now=0.0)
    pair = j.add("b", leg("b", "X1"), "customer", now=0.0)
    j.remove("b")
    assert j.conversation_of("a") == pair and j.conversation_of("b") is None
    c = j.add("c", leg("c", "X1"), "customer", now=1.0)  # does not re-open the pair
    assert c.conversation_id != pair.conversation_id


def test_duplicate_call_and_bad_channel_rejected() -> None:
    j = joiner()
    j.add("a", leg("a", "X1"), "agent", now=0.0)
    with pytest.raises(DuplicateCallError):
        j.add("a", leg("a", "X1"), "agent", now=0.0)
    with pytest.raises(UnknownChannelError):
        j.add("z", leg("z", "X9"), "left", now=0.0)
    assert j.conversation_of("z") is None


def test_default_ids_are_fresh() -> None:
    j = ConversationJoiner("X-Conversation-Id")
    ids = {j.add(str(i), leg(str(i), None), "agent", now=0.0).conversation_id for i in range(50)}
    assert len(ids) == 50
