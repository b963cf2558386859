"""The pure consent policy (gateway/consent/policy.py) and the ``[consent]`` config section."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, ConsentConfig, parse_config
from gateway.consent.policy import (
    ChannelConsent,
    ConsentFacts,
    ConsentRecord,
    ConsentValueError,
    IvrQuestion,
    decide,
    latest_per_channel,
    parse_channels,
)


def consent(**section: Any) -> ConsentConfig:
    return parse_config({"consent": section}, {}, Path(".")).consent


def facts(**kw: Any) -> ConsentFacts:
    base: dict[str, Any] = {"channels": ("customer",), "source_ip": "198.51.100.7",
                            "from_user": "+15551234567", "to_user": "asr",
                            "request_user": "asr"}
    return ConsentFacts(**{**base, **kw})


def test_default_is_no_consent() -> None:
    cfg = ConsentConfig()
    assert cfg.enabled and cfg.purpose == "asr_training" and cfg.policy_version == "1"
    assert decide(cfg, facts()) == ()
    assert decide(cfg, facts(headers=(("X-Other", "yes"),))) == ()


@pytest.mark.parametrize("value", ["yes", "TRUE", "1", "granted", " opt-in "])
def test_header_grant_values_grant_the_calls_own_channel(value: str) -> None:
    (d,) = decide(ConsentConfig(), facts(headers=(("x-consent", value),)))
    assert d == ChannelConsent("customer", True, "header:X-Consent",
                               f"X-Consent: {value.strip()}")


@pytest.mark.parametrize("value", ["no", "False", "0", "denied", "opt-out"])
def test_header_deny_values_decline(value: str) -> None:
    (d,) = decide(ConsentConfig(), facts(headers=(("X-Consent", value),)))
    assert not d.granted and d.source == "header:X-Consent"


def test_header_unknown_value_decides_nothing() -> None:
    assert decide(ConsentConfig(), facts(headers=(("X-Consent", "maybe"),))) == ()


def test_header_lists_channels_of_a_two_channel_call() -> None:
    two = facts(channels=("agent", "customer"),
                headers=(("X-Consent", "granted; channels=customer"),))
    (d,) = decide(ConsentConfig(), two)
    assert (d.channel, d.granted) == ("customer", True)
    both = replace(two, headers=(("X-Consent", "yes;channel=agent,customer"),))
    assert [d.channel for d in decide(ConsentConfig(), both)] == ["agent", "customer"]


def test_header_channel_the_call_does_not_have_is_ignored() -> None:
    assert decide(ConsentConfig(), facts(headers=(("X-Consent", "yes;channels=agent"),))) == ()
    assert decide(ConsentConfig(), facts(headers=(("X-Consent", "yes;channels=bot"),))) == ()


def test_header_name_and_values_are_configurable() -> None:
    cfg = consent(header="X-Train-OK", grant_values=["si"], deny_values=["nein"])
    assert decide(cfg, facts(headers=(("X-Consent", "yes"),))) == ()
    (d,) = decide(cfg, facts(headers=(("X-Train-OK", "SI"),)))
    assert d.granted and d.source == "header:X-Train-OK"
    (d,) = decide(cfg, facts(headers=(("X-Train-OK", "nein"),)))
    assert not d.granted


def test_rules_first_match_wins_and_evidence_has_no_number() -> None:
    cfg = consent(rules=[
        {"name": "blocked_caller", "match": "from_user", "pattern": r"^\+1555", "grant": False},
        {"name": "trunk", "match": "source", "cidr": "198.51.100.0/24", "grant": True},
    ])
    (d,) = decide(cfg, facts())
    assert (d.granted, d.source) == (False, "rule:blocked_caller")
    assert "5551234567" not in d.evidence and "blocked_caller" in d.evidence
    (d,) = decide(cfg, facts(from_user="+4420"))
    assert (d.granted, d.source, d.evidence) == (True, "rule:trunk",
                                                 "source in 198.51.100.0/24")
    assert decide(cfg, facts(from_user="+4420", source_ip="203.0.113.1")) == ()


def test_rule_on_header_and_users_with_channels() -> None:
    cfg = consent(rules=[
        {"name": "campaign", "match": "header", "header": "X-Campaign", "pattern": "^study",
         "grant": True, "channels": ["agent"]},
        {"name": "line", "match": "to_user", "pattern": "^800", "grant": True},
    ])
    two = facts(channels=("agent", "customer"), headers=(("X-Campaign", "study-7"),))
    (d,) = decide(cfg, two)
    assert (d.channel, d.source) == ("agent", "rule:campaign")
    assert [d.channel for d in decide(cfg, facts(to_user="8001"))] == ["customer"]
    assert decide(cfg, facts(request_user="8001")) == ()


def test_header_is_stronger_than_a_rule() -> None:
    cfg = consent(rules=[{"name": "all", "match": "source", "cidr": "0.0.0.0/0",
                          "grant": True}])
    (d,) = decide(cfg, facts(headers=(("X-Consent", "no"),)))
    assert (d.granted, d.source) == (False, "header:X-Consent")


def test_siprec_participant_element_decides_its_channel() -> None:
    f = facts(channels=("agent", "customer"),
              channel_hints=(("agent", (("role", "agent"),)),
                             ("customer", (("consent", "granted"),))))
    (d,) = decide(ConsentConfig(), f)
    assert (d.channel, d.granted, d.source) == ("customer", True, "siprec")
    assert "+1555" not in d.evidence


def test_siprec_attribute_and_session_element() -> None:
    f = facts(channels=("agent", "customer"),
              channel_hints=(("agent", (("recordinginfo", "consent=no mode=x"),)),),
              session_hints=(("consent", "yes"),))
    by = {d.channel: d for d in decide(ConsentConfig(), f)}
    assert not by["agent"].granted and by["customer"].granted      # participant wins
    assert "session" in by["customer"].evidence
    off = consent(siprec_element="")
    assert decide(off, f) == ()


def test_disabled_decides_nothing() -> None:
    assert decide(consent(enabled=False), facts(headers=(("X-Consent", "yes"),))) == ()


def test_ivr_digits_timeout_and_other_channels() -> None:
    q = IvrQuestion(ConsentConfig(), ["customer"])
    assert q.on_digit("agent", "1") is None           # not asked of the agent
    assert q.on_digit("customer", "5") is None        # another digit
    assert q.on_timer(100.0) == ()                    # the prompt has not ended
    d = q.on_digit("customer", "1")
    assert d == ChannelConsent("customer", True, "ivr_dtmf", "keypad 1 after the consent prompt")
    assert q.done and q.on_digit("customer", "2") is None
    q = IvrQuestion(consent(ivr_timeout_s=4), ["customer"])
    q.prompt_done(10.0)
    assert q.on_timer(13.9) == ()
    (late,) = q.on_timer(14.0)
    assert (late.granted, late.source) == (False, "ivr_dtmf") and "4 s" in late.evidence
    assert q.done and q.on_timer(20.0) == ()
    q = IvrQuestion(consent(ivr_grant_digit="9", ivr_deny_digit="#"), ["customer"])
    denied = q.on_digit("customer", "#")
    assert denied is not None and not denied.granted


def test_parse_channels() -> None:
    assert parse_channels([], ("customer",)) == ("customer",)
    assert parse_channels(["Agent", " customer", "agent"], ()) == ("agent", "customer")
    with pytest.raises(ConsentValueError, match="unknown channel 'bot'"):
        parse_channels(["bot"], ())


def _rec(channel: str, granted: bool, at: float, purpose: str = "asr_training") -> ConsentRecord:
    return ConsentRecord(conversation_id="conv", call_id="c-1", channel=channel,
                         granted=granted, purpose=purpose, source="api", at=at,
                         policy_version="1", evidence="")


def test_latest_per_channel_and_record_round_trip() -> None:
    records = [_rec("customer", True, 1), _rec("customer", False, 2), _rec("agent", True, 1),
               _rec("agent", False, 3, purpose="other")]
    latest = latest_per_channel(records, "asr_training")
    assert {ch: r.granted for ch, r in latest.items()} == {"customer": False, "agent": True}
    assert ConsentRecord.from_dict(records[0].to_dict()) == records[0]
    rec = ChannelConsent("agent", True, "cli", "basis").record(
        "conv", "c-1", consent(policy_version="7"), 5.0, purpose="tts")
    assert (rec.purpose, rec.policy_version, rec.at) == ("tts", "7", 5.0)


@pytest.mark.parametrize(("section", "error"), [
    ({"header": "bad header"}, "consent.header: must be a header name"),
    ({"grant_values": []}, "consent.grant_values: must not be empty"),
    ({"grant_values": ["yes"], "deny_values": ["YES"]},
     "consent.deny_values: also in grant_values: yes"),
    ({"ivr_grant_digit": "x"}, "consent.ivr_grant_digit: must be one of"),
    ({"ivr_deny_digit": "1"}, "consent.ivr_deny_digit: must differ from ivr_grant_digit"),
    ({"ivr_timeout_s": 0}, "consent.ivr_timeout_s: must be 1..300"),
    ({"purpose": "asr training"}, "consent.purpose: must be letters"),
    ({"colour": 1}, "consent.colour: unknown key"),
    ({"rules": [{"name": "a", "match": "source", "pattern": "x", "grant": True}]},
     "consent.rules[0].pattern: not allowed when match = 'source'"),
    ({"rules": [{"name": "a", "match": "source", "grant": True}]},
     "consent.rules[0].cidr: required when match = 'source'"),
    ({"rules": [{"name": "a", "match": "source", "cidr": "10.0.0.300/8", "grant": True}]},
     "consent.rules[0].cidr: must be a CIDR network"),
    ({"rules": [{"name": "a", "match": "header", "pattern": "x", "grant": True}]},
     "consent.rules[0].header: required when match = 'header'"),
    ({"rules": [{"name": "a", "match": "to_user", "pattern": "(", "grant": True}]},
     "consent.rules[0].pattern: invalid regex"),
    ({"rules": [{"name": "a", "match": "to_user", "pattern": "x"}]},
     "consent.rules[0].grant: required"),
    ({"rules": [{"name": "a", "match": "to_user", "pattern": "x", "grant": True,
                 "channels": ["bot"]}]}, "consent.rules[0].channels[0]: must be one of"),
    ({"rules": [{"name": "a", "match": "source", "cidr": "::/0", "grant": True},
                {"name": "a", "match": "source", "cidr": "::/0", "grant": False}]},
     "consent.rules[1].name: duplicate 'a'"),
])
def test_config_errors_name_the_key(section: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"consent": section}, {}, Path("."))
    assert any(e.startswith(error) for e in info.value.errors), info.value.errors
