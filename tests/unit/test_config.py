"""Tests for gateway.config: loading, defaults, error messages, secrets, reload planning."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

import gateway
from gateway.config import (
    AnalyticsRule,
    ChannelRule,
    ConfigError,
    ConsentRule,
    CustomRedaction,
    EventSink,
    GatewayConfig,
    Secret,
    SipAccount,
    load_config,
    parse_config,
    redacted_dict,
    reload_diff,
)

SAMPLE = Path(__file__).resolve().parents[2] / "sip_configs" / "gateway.toml"
PASSWORD = "hunter2-Sup3rS3cret"


def account(**changes: Any) -> dict[str, Any]:
    """A valid account table; a change to None removes that key."""
    base: dict[str, Any] = {"name": "main", "user": "gw", "domain": "pbx.example.com",
                            "password": PASSWORD, "registrars": ["sip:pbx.example.com"]}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def errors_of(data: dict[str, Any], env: dict[str, str] | None = None,
              base_dir: Path = Path("/etc/gw")) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {}, base_dir)
    return info.value.errors


def write(tmp_path: Path, text: str, name: str = "gw.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- sample file

def test_sample_loads_with_demo_values() -> None:
    cfg = load_config(SAMPLE, env={})
    assert cfg.source_path == SAMPLE
    assert (cfg.sip.bind_address, cfg.sip.port) == ("127.0.0.1", 5060)
    assert (cfg.http.bind_address, cfg.http.port) == ("127.0.0.1", 8088)
    assert cfg.http.token == Secret("demo-token")
    assert cfg.triton.url == "127.0.0.1:8001"
    assert cfg.sip.accounts == ()
    assert cfg.storage.state_dir == SAMPLE.parent / "../.run/state"
    assert [s.type for s in cfg.events.sinks] == ["log", "jsonl"]
    assert cfg.events.sinks[1].path == SAMPLE.parent / "../.run/events.jsonl"
    (rule,) = cfg.channels.rules
    assert (rule.match, rule.header, rule.channel) == ("header", "X-Leg", "agent")
    assert rule.pattern.search("Agent") and not rule.pattern.search("customer")


def test_sample_mentions_every_key() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    keys = [(section, key) for section, values in redacted_dict(GatewayConfig()).items()
            if section != "source_path" for key in values]
    keys += [(cls.__name__, f.name) for cls in (SipAccount, ChannelRule, EventSink, CustomRedaction,
                                                AnalyticsRule, ConsentRule)
             for f in dataclasses.fields(cls)]
    for section, key in keys:
        line = rf"(?m)^(# )?(\[\[?{section}\.{key}\]\]?|{key}(_env)? = )"
        assert re.search(line, text), f"{section}.{key} missing from the sample"


def test_sample_commented_examples_are_valid() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    uncommented = tomllib.loads(re.sub(r"(?m)^# (?=[a-z_]+ = |\[)", "", text))
    env = {"ASR_GW_SIP_PASSWORD": "a", "ASR_GW_WEBHOOK_SECRET": "b", "ASR_GW_HTTP_TOKEN": "c",
           "ASR_GW_BOT_SECRET": "d"}
    cfg = parse_config(uncommented, env, SAMPLE.parent)
    assert cfg.sip.accounts[0].password == Secret("a")
    assert cfg.sip.accounts[0].registrars[1] == "sip:pbx2.example.com:5060"
    assert cfg.events.sinks[2].secret == Secret("b")
    assert cfg.bot.secret == Secret("d")


# --------------------------------------------------------------------------- defaults

@pytest.mark.parametrize(("path", "expected"), [
    ("sip.bind_address", "0.0.0.0"), ("sip.port", 5060), ("sip.transports", ("udp", "tcp")),
    ("sip.advertised_address", ""), ("sip.user_agent", f"asr-gateway/{gateway.__version__}"),
    ("sip.max_calls", 200), ("sip.trunk_allow", ()), ("sip.invite_rate_per_s", 50.0),
    ("sip.send_ringing", True), ("sip.answer_delay_ms", 0),
    ("sip.copy_headers", ("X-Agent-Id", "X-Customer-Number", "X-Conversation-Id", "X-Leg")),
    ("sip.drain_grace_s", 30.0), ("sip.t1_ms", 500), ("sip.t2_ms", 4000), ("sip.accounts", ()),
    ("rtp.bind_address", "0.0.0.0"), ("rtp.port_min", 20000), ("rtp.port_max", 30000),
    ("rtp.ptime_ms", 20), ("rtp.jitter_depth_ms", 60), ("rtp.jitter_mode", "fixed"),
    ("rtp.resampler", "lowdelay"),
    ("rtp.timeout_s", 30.0), ("rtp.codecs", ("PCMU", "PCMA")), ("rtp.symmetric", True),
    ("rtp.telephone_event", True), ("channels.default", "customer"),
    ("channels.correlation_header", "X-Conversation-Id"), ("channels.rules", ()),
    ("triton.url", "127.0.0.1:8001"), ("triton.protocol", "grpc"),
    ("triton.asr_model", "asr_streaming_nemo"), ("triton.asr_model_version", ""),
    ("triton.tts_model", "tts_cpu_default"), ("triton.chunk_ms", 160),
    ("triton.sample_rate_hz", 16000), ("triton.connect_timeout_s", 5.0),
    ("triton.request_timeout_s", 10.0), ("triton.health_interval_s", 5.0),
    ("triton.required_for_ready", True), ("events.sinks", (EventSink(type="log"),)),
    ("http.bind_address", "127.0.0.1"), ("http.port", 8088), ("http.token", None),
    ("logging.level", "info"), ("logging.format", "auto"), ("logging.sip_trace", False),
    ("storage.state_dir", Path("/var/lib/asr-gateway")),
    ("storage.recordings_dir", Path("/var/lib/asr-gateway/recordings")),
    ("storage.record", False), ("storage.recording_format", "wav"), ("systemd.watchdog", True),
])
def test_defaults(path: str, expected: Any) -> None:
    section, key = path.split(".")
    value = getattr(getattr(parse_config({}, {}, Path("/etc/gw")), section), key)
    assert value == expected and type(value) is type(expected)  # noqa: E721


def test_derived_defaults_and_conversions(tmp_path: Path) -> None:
    cfg = parse_config({
        "sip": {"accounts": [account()], "trunk_allow": ["10.1.2.3/8", "2001:db8::/32"]},
        "storage": {"state_dir": "state"},
        "rtp": {"timeout_s": 5},
    }, {}, tmp_path)
    acct = cfg.sip.accounts[0]
    assert (acct.auth_user, acct.contact_user, acct.expires_s, acct.transport) == (
        "gw", "gw", 600, "udp")
    assert cfg.sip.trunk_allow == (ipaddress.ip_network("10.0.0.0/8"),
                                   ipaddress.ip_network("2001:db8::/32"))
    assert cfg.storage.state_dir == tmp_path / "state"
    assert cfg.storage.recordings_dir == tmp_path / "state" / "recordings"
    assert cfg.rtp.timeout_s == 5.0 and isinstance(cfg.rtp.timeout_s, float)


def test_config_is_frozen() -> None:
    cfg = GatewayConfig()
    with pytest.raises(AttributeError):
        cfg.sip.port = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- bad input

BAD_CASES: list[tuple[dict[str, Any], str]] = [
    ({"sip": {"port": "5060"}}, "sip.port: must be an integer, got str"),
    ({"sip": {"port": True}}, "sip.port: must be an integer, got bool"),
    ({"sip": {"port": 70000}}, "sip.port: must be 0..65535, got 70000"),
    ({"sip": {"max_calls": 0}}, "sip.max_calls: must be 1..100000, got 0"),
    ({"sip": {"invite_rate_per_s": 0}}, "sip.invite_rate_per_s: must be >0..10000, got 0"),
    ({"sip": {"drain_grace_s": "30"}}, "sip.drain_grace_s: must be a number, got str"),
    ({"sip": {"send_ringing": 1}}, "sip.send_ringing: must be a boolean, got int"),
    ({"sip": {"transports": ["udp", "tls"]}},
     "sip.transports[1]: must be one of udp, tcp, got 'tls'"),
    ({"sip": {"transports": []}}, "sip.transports: must not be empty"),
    ({"sip": {"transports": ["udp", "udp"]}}, "sip.transports[1]: duplicate 'udp'"),
    ({"sip": {"transports": "udp"}}, "sip.transports: must be an array, got str"),
    ({"sip": {"bind_address": "1.2.3.300"}},
     "sip.bind_address: must be an IP address, got '1.2.3.300'"),
    ({"sip": {"advertised_address": "bad host"}},
     "sip.advertised_address: must be a host name or IP address, got 'bad host'"),
    ({"sip": {"trunk_allow": ["10.0.0.0/8", "10.0.0.0/33"]}},
     "sip.trunk_allow[1]: must be a CIDR network, got '10.0.0.0/33'"),
    ({"sip": {"copy_headers": ["X Leg"]}},
     "sip.copy_headers[0]: must be a header name, got 'X Leg'"),
    ({"sip": {"t2_ms": 500}}, "sip.t2_ms: must be 1000..16000, got 500"),
    ({"rtp": {"port_min": 7}}, "rtp.port_min: must be an even integer 1024..65534, got 7"),
    ({"rtp": {"port_max": 20001}},
     "rtp.port_max: must be an even integer 1024..65534, got 20001"),
    ({"rtp": {"port_min": 30000, "port_max": 20000}},
     "rtp.port_min: must be less than port_max, got 30000 >= 20000"),
    ({"rtp": {"port_min": 20000, "port_max": 20000}},
     "rtp.port_min: must be less than port_max, got 20000 >= 20000"),
    ({"rtp": {"ptime_ms": 25}}, "rtp.ptime_ms: must be one of 10, 20, 30, got 25"),
    ({"rtp": {"codecs": ["G729"]}}, "rtp.codecs[0]: must be one of PCMU, PCMA, got 'G729'"),
    ({"rtp": {"jitter_mode": "auto"}},
     "rtp.jitter_mode: must be one of fixed, adaptive, got 'auto'"),
    ({"rtp": {"resampler": "fast"}},
     "rtp.resampler: must be one of lowdelay, soxr, got 'fast'"),
    ({"triton": "grpc://x"}, "triton: must be a table, got str"),
    ({"triton": {"url": "localhost"}}, "triton.url: must be host:port, got 'localhost'"),
    ({"triton": {"url": "localhost:0"}}, "triton.url: must be host:port, got 'localhost:0'"),
    ({"triton": {"url": "::1:8001"}}, "triton.url: must be host:port, got '::1:8001'"),
    ({"rtp": {"advertised_address": "1.2.3.300"}},
     "rtp.advertised_address: must be a host name or IP address, got '1.2.3.300'"),
    ({"events": {"sinks": [{"type": "webhook", "url": "http://[bad"}]}},
     "events.sinks[0].url: must be an http(s) URL, got 'http://[bad'"),
    ({"events": {"sinks": [{"type": "webhook", "url": "https://h:99999/x"}]}},
     "events.sinks[0].url: must be an http(s) URL, got 'https://h:99999/x'"),
    ({"triton": {"protocol": "http"}}, "triton.protocol: must be one of grpc, got 'http'"),
    ({"triton": {"sample_rate_hz": 44100}},
     "triton.sample_rate_hz: must be one of 8000, 16000, got 44100"),
    ({"triton": {"connect_timeout_s": 0.05}},
     "triton.connect_timeout_s: must be 0.1..120, got 0.05"),
    ({"logging": {"lvl": "debug"}}, "logging.lvl: unknown key"),
    ({"loging": {}}, "loging: unknown key"),
    ({"logging": {"format": "xml"}},
     "logging.format: must be one of auto, json, console, got 'xml'"),
    ({"logging": {"sip_trace": "on"}}, "logging.sip_trace: must be a boolean, got str"),
    ({"http": {"port": -1}}, "http.port: must be 0..65535, got -1"),
    ({"storage": {"state_dir": ""}}, "storage.state_dir: must not be empty"),
    ({"storage": {"recording_format": "mp3"}},
     "storage.recording_format: must be one of wav, flac, got 'mp3'"),
    ({"systemd": {"watchdog": "yes"}}, "systemd.watchdog: must be a boolean, got str"),
    ({"channels": {"default": "both"}},
     "channels.default: must be one of agent, customer, got 'both'"),
    ({"channels": {"rules": [{"match": "header", "pattern": "a", "channel": "agent"}]}},
     "channels.rules[0].header: required when match = 'header'"),
    ({"channels": {"rules": [{"match": "to_user", "header": "X-Leg", "pattern": "a",
                              "channel": "agent"}]}},
     "channels.rules[0].header: not allowed when match = 'to_user'"),
    ({"channels": {"rules": [{"match": "to_user", "channel": "agent"}]}},
     "channels.rules[0].pattern: required"),
    ({"channels": {"rules": [{"match": "body", "pattern": "a", "channel": "agent"}]}},
     "channels.rules[0].match: must be one of header, to_user, from_user, request_user, "
     "siprec_participant, got 'body'"),
    ({"events": {"sinks": [{"type": "jsonl"}]}},
     "events.sinks[0].path: required when type = 'jsonl'"),
    ({"events": {"sinks": [{"type": "log", "url": "http://x"}]}},
     "events.sinks[0].url: not allowed when type = 'log'"),
    ({"events": {"sinks": [{"type": "webhook", "url": "ftp://x"}]}},
     "events.sinks[0].url: must be an http(s) URL, got 'ftp://x'"),
    ({"events": {"sinks": [{"type": "webhook", "url": "http://x", "retries": 11}]}},
     "events.sinks[0].retries: must be 0..10, got 11"),
    ({"events": {"sinks": [{"type": "kafka"}]}},
     "events.sinks[0].type: must be one of log, jsonl, webhook, got 'kafka'"),
    ({"events": {"sinks": [{"type": "log", "colour": 1}]}},
     "events.sinks[0].colour: unknown key"),
    ({"sip": {"accounts": [account(expires_s=5)]}},
     "sip.accounts[0].expires_s: must be 60..86400, got 5"),
    ({"sip": {"accounts": [account(), account(user="other")]}},
     "sip.accounts[1].name: duplicate 'main'"),
    ({"sip": {"accounts": [account(domain=None)]}}, "sip.accounts[0].domain: required"),
    ({"sip": {"accounts": [account(registrars=[])]}},
     "sip.accounts[0].registrars: must not be empty"),
    ({"sip": {"accounts": [account(registrars=["pbx.example.com"])]}},
     "sip.accounts[0].registrars[0]: must be a SIP URI (sip:...), got 'pbx.example.com'"),
    ({"sip": {"accounts": [account(transport="tls")]}},
     "sip.accounts[0].transport: must be one of udp, tcp, got 'tls'"),
    ({"sip": {"accounts": account()}}, "sip.accounts: must be an array, got table"),
    ({"sip": {"accounts": ["main"]}}, "sip.accounts[0]: must be a table, got str"),
    ({"sip": {"accounts": [account(password=None)]}},
     "sip.accounts[0].password: required (or password_env / password_file)"),
    ({"sip": {"accounts": [account(password_env="PW")]}},
     "sip.accounts[0].password: give only one of password, password_env"),
    ({"sip": {"accounts": [account(password=None, password_env="NOPE")]}},
     "sip.accounts[0].password_env: environment variable 'NOPE' is not set"),
    ({"sip": {"accounts": [account(password="")]}},
     "sip.accounts[0].password: must not be empty"),
    ({"http": {"token": 1234}}, "http.token: must be a string, got int"),
]


@pytest.mark.parametrize(("data", "expected"), BAD_CASES)
def test_bad_input_reports_key_path_and_reason(data: dict[str, Any], expected: str) -> None:
    assert errors_of(data, env={"PW": "x"}) == (expected,)


def test_bad_regex_carries_re_error_text() -> None:
    rule = {"match": "to_user", "pattern": "(unclosed", "channel": "agent"}
    with pytest.raises(re.error) as reference:
        re.compile("(unclosed")
    assert errors_of({"channels": {"rules": [rule]}}) == (
        f"channels.rules[0].pattern: invalid regex: {reference.value}",)


@pytest.mark.parametrize("value", ["10.0.0.1:8001", "[::1]:8001", "triton.internal:65535",
                                   "localhost:1"])
def test_triton_url_accepts_host_port(value: str) -> None:
    assert parse_config({"triton": {"url": value}}, {}, Path("/")).triton.url == value


def test_all_errors_reported_at_once() -> None:
    data = {
        "sip": {"port": 99999, "transports": ["tls"], "accounts": [account(expires_s=1)]},
        "rtp": {"port_min": 7},
        "logging": {"lvl": "x"},
        "triton": 3,
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, {}, Path("/"))
    expected = {"sip.port: must be 0..65535, got 99999",
                "sip.transports[0]: must be one of udp, tcp, got 'tls'",
                "sip.accounts[0].expires_s: must be 60..86400, got 1",
                "rtp.port_min: must be an even integer 1024..65534, got 7",
                "logging.lvl: unknown key",
                "triton: must be a table, got int"}
    assert set(info.value.errors) == expected and len(info.value.errors) == len(expected)
    assert str(info.value).splitlines() == list(info.value.errors)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- secrets

@pytest.mark.parametrize("source", ["inline", "env", "file", "relative_file"])
def test_secret_sources(tmp_path: Path, source: str) -> None:
    (tmp_path / "pw.txt").write_text(PASSWORD + "\n", encoding="utf-8")
    given = {"inline": {"password": PASSWORD}, "env": {"password_env": "GW_PW"},
             "file": {"password_file": str(tmp_path / "pw.txt")},
             "relative_file": {"password_file": "pw.txt"}}[source]
    acct = account(password=None) | given
    cfg = parse_config({"sip": {"accounts": [acct]}}, {"GW_PW": PASSWORD}, tmp_path)
    secret = cfg.sip.accounts[0].password
    assert secret.reveal() == PASSWORD and secret == Secret(PASSWORD)


def test_unreadable_secret_file_names_the_file(tmp_path: Path) -> None:
    data = {"http": {"token_file": "missing.txt"}}
    (error,) = errors_of(data, base_dir=tmp_path)
    assert error.startswith(f"http.token_file: cannot read '{tmp_path / 'missing.txt'}': ")


def test_secret_repr_and_equality() -> None:
    secret = Secret(PASSWORD)
    assert repr(secret) == str(secret) == f"{secret}" == "Secret('***')"
    assert secret == Secret(PASSWORD) and secret != Secret("other") and secret != PASSWORD


LEAKY: list[dict[str, Any]] = [
    {"sip": {"accounts": [account(expires_s=1)]}},
    {"sip": {"accounts": [account(password_env="GW_PW")]}},
    {"sip": {"accounts": [account(), account()]}},
    {"http": {"token": PASSWORD, "token_env": "GW_PW", "port": -1}},
    {"events": {"sinks": [{"type": "log", "secret": PASSWORD}]}},
    {"http": {"token_file": "bad.txt"}},
]


@pytest.mark.parametrize("data", LEAKY)
def test_secret_never_in_error_message(tmp_path: Path, data: dict[str, Any]) -> None:
    (tmp_path / "bad.txt").write_bytes(b"\xff" + PASSWORD.encode())
    with pytest.raises(ConfigError) as info:
        parse_config(data, {"GW_PW": PASSWORD}, tmp_path)
    assert info.value.errors and PASSWORD not in str(info.value)
    assert "\\xff" not in str(info.value)


def test_secret_never_in_repr_and_redacted_dict(tmp_path: Path) -> None:
    data = {"sip": {"accounts": [account()], "trunk_allow": ["192.0.2.0/24"]},
            "http": {"token_env": "GW_PW"},
            "events": {"sinks": [{"type": "webhook", "url": "https://h", "secret": PASSWORD}]},
            "channels": {"rules": [{"match": "to_user", "pattern": "^1", "channel": "agent"}]}}
    cfg = parse_config(data, {"GW_PW": PASSWORD}, tmp_path)
    assert PASSWORD not in repr(cfg) and PASSWORD not in str(cfg)
    plain = redacted_dict(cfg)
    text = json.dumps(plain)  # JSON-safe
    assert PASSWORD not in text
    assert plain["sip"]["accounts"][0]["password"] == plain["http"]["token"] == "***"
    assert plain["events"]["sinks"][0]["secret"] == "***"
    assert plain["sip"]["trunk_allow"] == ["192.0.2.0/24"]
    assert plain["channels"]["rules"][0]["pattern"] == "^1"
    assert plain["storage"]["state_dir"] == "/var/lib/asr-gateway"


# --------------------------------------------------------------------------- load_config

def test_load_config_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[sip]\nport = 5060\nbind_address = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    (error,) = info.value.errors
    assert error.startswith(f"{path}: invalid TOML: ") and "line 3" in error


def test_load_config_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_load_config_resolves_against_file_dir_and_reads_os_environ(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_TOKEN", "tok")
    (tmp_path / "conf").mkdir()
    path = write(tmp_path / "conf", '[http]\ntoken_env = "GW_TEST_TOKEN"\n'
                                    '[storage]\nstate_dir = "st"\nrecordings_dir = "/rec"\n')
    cfg = load_config(str(path))
    assert cfg.http.token == Secret("tok")
    assert cfg.storage.state_dir == tmp_path / "conf" / "st"
    assert cfg.storage.recordings_dir == Path("/rec")
    assert cfg.source_path == path


def test_load_config_collects_validation_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "[sip]\nport = 1e3\n[rtp]\nport_min = 7\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.errors == ("sip.port: must be an integer, got float",
                                 "rtp.port_min: must be an even integer 1024..65534, got 7")


# --------------------------------------------------------------------------- reload_diff

BASE: dict[str, Any] = {"sip": {"accounts": [account()]}, "logging": {"level": "info"}}


@pytest.mark.parametrize(("change", "changed", "refused"), [
    ({}, (), ()),
    ({"logging": {"level": "debug", "format": "json"}}, ("logging.level", "logging.format"), ()),
    ({"logging": {"level": "info", "sip_trace": True}}, ("logging.sip_trace",), ()),
    ({"sip": {"accounts": [account(password="new")]}}, ("sip.accounts",), ()),
    ({"sip": {"accounts": [account()], "max_calls": 5, "invite_rate_per_s": 1,
              "trunk_allow": ["10.0.0.0/8"]}},
     ("sip.max_calls", "sip.trunk_allow", "sip.invite_rate_per_s"), ()),
    ({"channels": {"default": "agent"}}, ("channels.default",), ()),
    ({"events": {"sinks": []}}, ("events.sinks",), ()),
    ({"sip": {"accounts": [account()], "port": 5070}}, (), ("sip.port: needs a restart",)),
    ({"rtp": {"ptime_ms": 30}, "logging": {"level": "error"}},
     ("logging.level",), ("rtp.ptime_ms: needs a restart",)),
    ({"triton": {"url": "10.0.0.1:8001"}, "http": {"token": "t"}},
     (), ("triton.url: needs a restart", "http.token: needs a restart")),
    ({"triton": {"asr_model_version": "2", "asr_model": "asr_ack"}},
     ("triton.asr_model_version",), ("triton.asr_model: needs a restart",)),
])
def test_reload_diff(change: dict[str, Any], changed: tuple[str, ...],
                     refused: tuple[str, ...]) -> None:
    new_data = copy.deepcopy(BASE)
    for section, values in change.items():
        new_data[section] = values
    old = parse_config(BASE, {}, Path("/etc/gw"))
    plan = reload_diff(old, parse_config(new_data, {}, Path("/etc/gw")))
    assert (set(plan.changed), set(plan.refused)) == (set(changed), set(refused))


def test_reload_diff_ignores_source_path(tmp_path: Path) -> None:
    first, second = write(tmp_path, "", "a.toml"), write(tmp_path, "", "b.toml")
    plan = reload_diff(load_config(first, env={}), load_config(second, env={}))
    assert plan.changed == () and plan.refused == ()


def test_merge_live_takes_only_live_keys() -> None:
    from gateway.config import merge_live

    old = parse_config({}, {}, Path("."))
    new = parse_config({"sip": {"port": 5070, "max_calls": 9}, "logging": {"level": "debug"},
                        "triton": {"url": "10.0.0.1:8001"}}, {}, Path("."))
    merged = merge_live(old, new)
    assert merged.sip.max_calls == 9 and merged.logging.level == "debug"
    assert merged.sip.port == old.sip.port and merged.triton.url == old.triton.url


# --------------------------------------------------------------------------- start-up summary

def test_startup_summary_is_short_and_shows_resolved_paths() -> None:
    import json

    from gateway.config import redacted_dict, startup_summary

    cfg = load_config(SAMPLE, env={})
    summary = startup_summary(cfg)
    repo = SAMPLE.parent.parent.resolve()
    assert summary["state_dir"] == str(repo / ".run" / "state")
    assert summary["config_file"] == str(SAMPLE.resolve())
    assert summary["event_sinks"] == ["log", f"jsonl:{repo / '.run' / 'events.jsonl'}"]
    assert summary["logging"] == {"level": "info", "format": "auto", "sip_trace": False}
    text = json.dumps(summary)
    assert ".." not in text and "demo-token" not in text and len(text) < 800
    full = redacted_dict(cfg, resolve_paths=True)
    assert full["storage"]["state_dir"] == str(repo / ".run" / "state")
    assert "/../" in redacted_dict(cfg)["storage"]["state_dir"]   # the value itself is as written


def test_startup_summary_hides_webhook_credentials() -> None:
    from gateway.config import startup_summary

    cfg = parse_config({"events": {"sinks": [
        {"type": "webhook", "url": "https://user:pw@hooks.example/x?k=secret"}]}}, {},
        Path("/etc/gw"))
    assert startup_summary(cfg)["event_sinks"] == ["webhook:https://hooks.example/x"]


# --------------------------------------------------------------------------- redaction

def test_redaction_defaults_on_with_tags_and_tone() -> None:
    r = GatewayConfig().redaction
    assert r.enabled and r.entities.card == "tag" and r.tags.card == "[CARD]"
    assert (r.audio, r.secure_dtmf, r.custom) == ("tone", "after_card_request", ())


def test_redaction_custom_pattern_and_last4_parse() -> None:
    cfg = parse_config({"redaction": {"entities": {"card": "last4", "phone": "off"},
                                      "custom": [{"name": "member_id",
                                                  "pattern": r"M\d{6}"}]}}, {}, Path("."))
    (custom,) = cfg.redaction.custom
    assert custom.pattern.search("m123456") and cfg.redaction.entities.phone == "off"


@pytest.mark.parametrize(("raw", "error"), [
    ({"entities": {"cvv": "last4"}}, 'redaction.entities.cvv: "last4" is for card only'),
    ({"entities": {"card": "hide"}}, "redaction.entities.card: must be one of"),
    ({"custom": [{"name": "x", "pattern": "("}]}, "redaction.custom[0].pattern: invalid regex"),
    ({"custom": [{"name": "Bad Name", "pattern": "x"}]}, "redaction.custom[0].name: must be"),
    ({"custom": [{"name": "a", "pattern": "x"}, {"name": "a", "pattern": "y"}]},
     "redaction.custom[1].name: duplicate"),
    ({"audio": "beep"}, "redaction.audio: must be one of"),
    ({"hold_s": 99}, "redaction.hold_s:"),
    ({"colour": 1}, "redaction.colour: unknown key"),
])
def test_redaction_bad_config_is_named(raw: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"redaction": raw}, {}, Path("."))
    assert any(e.startswith(error) for e in info.value.errors), info.value.errors


def test_redaction_is_live() -> None:
    old = GatewayConfig()
    new = parse_config({"redaction": {"hold_s": 1.0}}, {}, Path("."))
    plan = reload_diff(old, new)
    assert plan.changed == ("redaction.hold_s",) and not plan.refused


# --------------------------------------------------------------------------- analytics

def _rule(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "disclosure", "kind": "compliance", "channel": "agent",
                            "phrases": ["this call * be recorded"], "first_s": 30.0}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_analytics_defaults_and_a_rule_parse() -> None:
    a = GatewayConfig().analytics
    assert (a.enabled, a.rules, a.fuzzy, a.late_s) == (True, (), 0.8, 5.0)
    cfg = parse_config({"analytics": {"rules": [_rule(), _rule(
        name="retention", kind="hint", phrases=None, first_s=None, after="disclosure",
        hint="offer the discount")]}}, {}, Path("."))
    first, second = cfg.analytics.rules
    assert (first.first_s, first.phrases, first.fuzzy, first.once) == (
        30.0, ("this call * be recorded",), None, True)
    assert (second.after, second.phrases, second.hint) == ("disclosure", (), "offer the discount")


@pytest.mark.parametrize(("rules", "error"), [
    ([_rule(kind="alert")], "analytics.rules[0].kind: must be one of"),
    ([_rule(phrases=[""])], "analytics.rules[0].phrases[0]: must not be empty"),
    ([_rule(phrases=["* recorded"])], "analytics.rules[0].phrases[0]: must be words"),
    ([_rule(phrases=["?!"])], "analytics.rules[0].phrases[0]: must be words"),
    ([_rule(phrases=None)], "analytics.rules[0].phrases: required"),
    ([_rule(phrases=[])], "analytics.rules[0].phrases: required"),
    ([_rule(name="Bad Name")], "analytics.rules[0].name: must be lower case"),
    ([_rule(channel="both")], "analytics.rules[0].channel: must be one of"),
    ([_rule(last_s=10.0)], "analytics.rules[0].last_s: one window per rule"),
    ([_rule(first_s=None, within_s=5.0)], "analytics.rules[0].within_s: only with after"),
    ([_rule(first_s=0)], "analytics.rules[0].first_s: must be >0"),
    ([_rule(kind="hint")], "analytics.rules[0].hint: required when kind = 'hint'"),
    ([_rule(hint="x")], "analytics.rules[0].hint: not allowed when kind = 'compliance'"),
    ([_rule(kind="category", forbidden=True)], "analytics.rules[0].forbidden: not allowed"),
    ([_rule(kind="hint", hint="x", first_s=None, last_s=5.0)],
     "analytics.rules[0].last_s: not for a hint"),
    ([_rule(fuzzy=0.2)], "analytics.rules[0].fuzzy: must be 0.5..1"),
    ([_rule(), _rule()], "analytics.rules[1].name: duplicate 'disclosure'"),
    ([_rule(first_s=None, after="nobody")], "analytics.rules[0].after: no rule named 'nobody'"),
    ([_rule(first_s=None, after="disclosure")], "analytics.rules[0].after: a cycle"),
    ([_rule(first_s=None, after="b"), _rule(name="b", first_s=None, after="disclosure")],
     "analytics.rules[1].after: a cycle: b -> disclosure -> b"),
    ([_rule(first_s=None, last_s=60.0), _rule(name="b", first_s=None, after="disclosure")],
     "analytics.rules[1].after: 'disclosure' is decided at the end"),
    ([_rule(colour="red")], "analytics.rules[0].colour: unknown key"),
])
def test_analytics_bad_rules_are_named(rules: list[dict[str, Any]], error: str) -> None:
    errors = errors_of({"analytics": {"rules": rules}})
    assert any(e.startswith(error) for e in errors), errors


def test_analytics_rules_file_joins_the_inline_rules(tmp_path: Path) -> None:
    write(tmp_path, '[[rules]]\nname = "cancel"\nkind = "category"\nphrases = ["cancel"]\n'
          '[[rules]]\nname = "retention"\nkind = "hint"\nafter = "disclosure"\n'
          'hint = "offer"\n', "rules.toml")
    cfg = parse_config({"analytics": {"rules": [_rule()], "rules_file": "rules.toml"}}, {},
                       tmp_path)
    assert [r.name for r in cfg.analytics.rules] == ["disclosure", "cancel", "retention"]
    assert cfg.analytics.rules_file == tmp_path / "rules.toml"


def test_analytics_rules_file_errors_name_the_file(tmp_path: Path) -> None:
    rules = write(tmp_path, '[[rules]]\nname = "disclosure"\nkind = "category"\n'
                  'phrases = ["x", ""]\n', "rules.toml")
    errors = errors_of({"analytics": {"rules_file": "rules.toml"}}, base_dir=tmp_path)
    assert errors == (f"{rules}: rules[0].phrases[1]: must not be empty",)
    write(tmp_path, 'colour = 1\n[[rules]]\nname = "disclosure"\nkind = "category"\n'
          'phrases = ["x"]\n', "rules.toml")
    errors = errors_of({"analytics": {"rules": [_rule()], "rules_file": "rules.toml"}},
                       base_dir=tmp_path)
    assert set(errors) == {f"{rules}: colour: unknown key (a rules file has only [[rules]])",
                           f"{rules}: rules[0].name: duplicate 'disclosure'"}
    assert errors_of({"analytics": {"rules_file": "missing.toml"}}, base_dir=tmp_path) == (
        f"analytics.rules_file: cannot read {str(tmp_path / 'missing.toml')!r}: "
        "No such file or directory",)
    write(tmp_path, "[[rules]\n", "rules.toml")
    (error,) = errors_of({"analytics": {"rules_file": "rules.toml"}}, base_dir=tmp_path)
    assert error.startswith(f"analytics.rules_file: {str(rules)!r} is not valid TOML")


def test_sample_rules_file_is_valid() -> None:
    cfg = parse_config({"analytics": {"rules_file": "analytics_rules.toml"}}, {}, SAMPLE.parent)
    names = [r.name for r in cfg.analytics.rules]
    assert {"recording_disclosure", "identity_verification", "cancellation_intent",
            "retention_offer", "forbidden_phrases"} <= set(names)


def test_analytics_is_live_and_a_changed_rules_file_shows(tmp_path: Path) -> None:
    write(tmp_path, '[[rules]]\nname = "a"\nkind = "category"\nphrases = ["x"]\n', "r.toml")
    old = parse_config({"analytics": {"rules_file": "r.toml"}}, {}, tmp_path)
    write(tmp_path, '[[rules]]\nname = "a"\nkind = "category"\nphrases = ["y"]\n', "r.toml")
    new = parse_config({"analytics": {"rules_file": "r.toml"}}, {}, tmp_path)
    plan = reload_diff(old, new)
    assert plan.changed == ("analytics.rules",) and not plan.refused
