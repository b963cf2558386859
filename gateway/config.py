"""Gateway configuration: one TOML file, validated once into frozen typed dataclasses.

Validation is table-driven: every section is a dataclass plus a spec mapping each key to
a small reusable validator; defaults and required-ness come from the dataclass fields.
All errors are collected (never stop at the first), each as ``key.path: reason``, and
raised together as one :class:`ConfigError`. Unknown keys are errors.

Secrets (``password``, ``token``, ``secret``) may be given inline, as ``<name>_env`` (an
environment variable name) or as ``<name>_file`` (a file path); they become
:class:`Secret`, whose value never appears in a repr or an error message.

The only I/O is reading the config file and ``*_file`` secrets; no sockets, clocks or logs.

Layer: pure core.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from gateway import __version__

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """The configuration is invalid; ``errors`` lists every problem, one ``path: reason`` each."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("\n".join(self.errors))


class Secret:
    """A secret string that never shows itself in ``repr``/``str``; equality is by value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))


# --------------------------------------------------------------------------- dataclasses

_DEFAULT_COPY_HEADERS: Final = ("X-Agent-Id", "X-Customer-Number", "X-Conversation-Id", "X-Leg")


@dataclass(frozen=True, slots=True)
class SipAccount:
    """A registration towards a PBX/registrar; ``auth_user``/``contact_user`` "" = ``user``."""

    name: str
    user: str
    domain: str
    password: Secret
    registrars: tuple[str, ...]
    auth_user: str = ""
    realm: str = ""
    outbound_proxy: str = ""
    expires_s: int = 600
    transport: str = "udp"
    contact_user: str = ""

    def __post_init__(self) -> None:
        for name in ("auth_user", "contact_user"):
            if not getattr(self, name):
                object.__setattr__(self, name, self.user)


@dataclass(frozen=True, slots=True)
class SipConfig:
    bind_address: str = "0.0.0.0"
    port: int = 5060
    transports: tuple[str, ...] = ("udp", "tcp")
    advertised_address: str = ""
    user_agent: str = f"asr-gateway/{__version__}"
    max_calls: int = 200
    trunk_allow: tuple[IPNetwork, ...] = ()
    invite_rate_per_s: float = 50.0
    send_ringing: bool = True
    answer_delay_ms: int = 0
    copy_headers: tuple[str, ...] = _DEFAULT_COPY_HEADERS
    drain_grace_s: float = 30.0
    t1_ms: int = 500
    t2_ms: int = 4000
    accounts: tuple[SipAccount, ...] = ()


@dataclass(frozen=True, slots=True)
class RtpConfig:
    bind_address: str = "0.0.0.0"
    advertised_address: str = ""
    port_min: int = 20000
    port_max: int = 30000
    ptime_ms: int = 20
    jitter_depth_ms: int = 60
    jitter_mode: str = "fixed"
    resampler: str = "lowdelay"          # received audio -> model rate: "lowdelay" | "soxr"
    timeout_s: float = 30.0
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    symmetric: bool = True
    telephone_event: bool = True


@dataclass(frozen=True, slots=True)
class ChannelRule:
    """Assigns ``channel`` when ``pattern`` matches the field named by ``match``."""

    match: str
    pattern: re.Pattern[str]
    channel: str
    header: str = ""


@dataclass(frozen=True, slots=True)
class ChannelsConfig:
    default: str = "customer"
    correlation_header: str = "X-Conversation-Id"
    rules: tuple[ChannelRule, ...] = ()


@dataclass(frozen=True, slots=True)
class TritonConfig:
    url: str = "127.0.0.1:8001"
    protocol: str = "grpc"
    asr_model: str = "asr_streaming_nemo"
    asr_model_version: str = ""
    tts_model: str = "tts_cpu_default"
    chunk_ms: int = 160
    sample_rate_hz: int = 16000
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 10.0
    health_interval_s: float = 5.0
    required_for_ready: bool = True
    asr_enabled: bool = True
    buffer_s: float = 10.0
    final_timeout_s: float = 5.0
    sequence_keepalive_s: float = 10.0
    phrases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SiprecConfig:
    caller_labels: tuple[str, ...] = ("1", "a_leg", "inbound", "10", "caller")
    fallback: str = "mline_order"
    metadata_required: bool = False


@dataclass(frozen=True, slots=True)
class TtsConfig:
    enabled: bool = True
    voice: str = ""
    rate: float = 1.0
    max_text_chars: int = 2000
    barge_in_ms: int = 200
    barge_in_threshold_dbfs: float = -35.0
    greeting: str = ""
    recording_notice: str = ""


@dataclass(frozen=True, slots=True)
class BotConfig:
    webhook_url: str = ""
    secret: Secret | None = None
    timeout_s: float = 5.0
    retries: int = 2
    channel: str = "customer"


@dataclass(frozen=True, slots=True)
class EventSink:
    """One event sink; ``path`` is for ``jsonl``, the rest for ``webhook``."""

    type: str
    path: Path | None = None
    url: str = ""
    timeout_s: float = 5.0
    retries: int = 3
    secret: Secret | None = None
    raw: bool = False
    """Events as they were before the redacting processors (issue 16); warned at start."""


@dataclass(frozen=True, slots=True)
class EventsConfig:
    sinks: tuple[EventSink, ...] = (EventSink(type="log"),)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    bind_address: str = "127.0.0.1"
    port: int = 8088
    token: Secret | None = None


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"
    sip_trace: bool = False


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """``recordings_dir`` given as ``Path("")`` means ``state_dir / "recordings"``."""

    state_dir: Path = Path("/var/lib/asr-gateway")
    recordings_dir: Path = Path("")
    record: bool = False
    recording_format: str = "wav"

    def __post_init__(self) -> None:
        if self.recordings_dir == Path(""):
            object.__setattr__(self, "recordings_dir", self.state_dir / "recordings")


@dataclass(frozen=True, slots=True)
class RedactionEntities:
    """What to do with each entity type: ``tag`` (replace by its tag), ``last4`` (cards
    only: ``[CARD ****1111]``) or ``off`` (leave it in the text)."""

    card: str = "tag"
    cvv: str = "tag"
    expiry: str = "tag"
    ssn: str = "tag"
    bank_account: str = "tag"
    routing: str = "tag"
    iban: str = "tag"
    phone: str = "tag"
    email: str = "tag"
    dob: str = "tag"


@dataclass(frozen=True, slots=True)
class RedactionTags:
    """The text that replaces each entity."""

    card: str = "[CARD]"
    cvv: str = "[CVV]"
    expiry: str = "[EXPIRY]"
    ssn: str = "[SSN]"
    bank_account: str = "[ACCOUNT]"
    routing: str = "[ROUTING]"
    iban: str = "[IBAN]"
    phone: str = "[PHONE]"
    email: str = "[EMAIL]"
    dob: str = "[DOB]"
    dtmf: str = "[DTMF]"


@dataclass(frozen=True, slots=True)
class CustomRedaction:
    """``[[redaction.custom]]``: an operator's own pattern (a member number, a policy id)."""

    name: str
    pattern: re.Pattern[str]
    tag: str = ""
    """Replacement text; ``""`` means ``[NAME]`` (the name in upper case)."""


@dataclass(frozen=True, slots=True)
class RedactionConfig:
    enabled: bool = True
    entities: RedactionEntities = field(default_factory=RedactionEntities)
    tags: RedactionTags = field(default_factory=RedactionTags)
    custom: tuple[CustomRedaction, ...] = ()
    context_window_s: float = 30.0
    """After the agent asks for a card number, security code, date of birth ...: how long
    the customer's digits count as that entity even when short."""
    hold_s: float = 3.0
    """How long a final that ends in digits waits for the next final of its channel (a card
    number read in groups, one utterance each) before it goes out."""
    secure_dtmf: str = "after_card_request"
    """Keypad digits masked: ``never`` (only ``POST /v1/calls/{id}/secure``), ``always``, or
    ``after_card_request`` (also for ``context_window_s`` after the agent asks for card
    details)."""
    audio: str = "tone"
    """Redacted spans in recordings: ``tone`` (1 kHz), ``silence`` or ``off``."""
    audio_padding_ms: int = 250
    audio_delay_s: float = 20.0
    """Audio the recorder keeps in memory before writing, so that spans of finals that
    arrive up to this late are masked before the audio reaches disk. It must cover a whole
    redacted stretch from its first word to its final's release: a card number read in four
    groups, each final held up to ``hold_s``, takes 10-15 s. 20 s of stereo 8 kHz is 640 KB
    per recorded conversation; a later span is patched in the WAV file and logged as
    ``recording.redaction_late``."""


@dataclass(frozen=True, slots=True)
class TalkStatisticsConfig:
    """``[statistics]``: conversation statistics from the voice activity of the decoded
    audio (talk, silence, overtalk, interruptions, dead air; issue 17)."""

    enabled: bool = True
    threshold_dbfs: float = -40.0
    """A 20 ms frame at or above this RMS level is voiced."""
    hangover_ms: int = 300
    """A gap without voiced frames this long ends a talk spurt (shorter ones, between words,
    do not)."""
    min_talk_ms: int = 100
    """Voiced audio a spurt needs to count as talk (clicks and knocks do not)."""
    interruption_ms: int = 2000
    """A channel that starts while another talks interrupts it when the other stops within
    this long while it goes on."""
    dead_air_s: float = 10.0
    """Nobody talking this long: ``conversation.dead_air``."""


@dataclass(frozen=True, slots=True)
class AnalyticsRule:
    """``[[analytics.rules]]``: one phrase rule (README: Analytics and agent assist)."""

    name: str
    kind: str
    """``category`` (a ``category.matched``), ``compliance`` (``compliance.passed`` or
    ``compliance.missed``) or ``hint`` (an ``assist.hint`` for the agent's screen)."""
    phrases: tuple[str, ...] = ()
    """Required, except for a category or hint with ``after``: without phrases it matches
    where its ``after`` rule does."""
    channel: str = "either"
    first_s: float | None = None
    """Only in the conversation's first N seconds; for a required phrase, its deadline."""
    last_s: float | None = None
    """Only in its last N seconds (decided when the conversation ends)."""
    after: str = ""
    """Only after another rule matched: within ``within_s`` of that match, or any time."""
    within_s: float | None = None
    forbidden: bool = False
    """Compliance only: saying a phrase breaks the rule (default: not saying one does)."""
    hint: str = ""
    fuzzy: float | None = None
    """Word similarity a match needs (1: the words exactly); unset: ``analytics.fuzzy``."""
    once: bool = True
    """Fire once per conversation (false: at every matching final)."""


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    enabled: bool = True
    rules: tuple[AnalyticsRule, ...] = ()
    """The inline ``[[analytics.rules]]`` followed by those of ``rules_file``."""
    rules_file: Path = Path("")
    """A TOML file of more ``[[rules]]``, read with the config (and again on SIGHUP)."""
    fuzzy: float = 0.8
    late_s: float = 5.0
    """How long after a deadline a final said before it may still arrive (ASR latency, a
    final held by redaction): a ``compliance.missed`` goes out this much later."""
    summary: bool = True
    """``conversation.summary`` at each conversation's end, and its files (JSON, text,
    WebVTT) beside the recording or in ``<state_dir>/conversations``."""
    sentiment: bool = False
    """``sentiment.scored`` after each final (the lexicon example of a signal processor)."""


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """``[batch]``: transcription jobs over HTTP (``POST /v1/transcriptions``; issue 18)."""

    root: Path = Path("")
    """Jobs name files under this directory only; ``""``: the batch API is off (503)."""
    out_dir: Path = Path("")
    """Where each job's outputs go (``<out_dir>/<job id>/``); ``""``:
    ``<state_dir>/transcriptions`` (see :meth:`outputs_in`)."""
    concurrency: int = 2
    """Files of a job transcribed at once (each one or two ASR sequences, beside the live
    calls' sequences on the same Triton connection)."""
    concurrency_with_calls: int = 1
    """Files at once while live calls are up (0: batch waits for the calls to end); files in
    flight finish. Live audio goes first on the Triton connection, but the model's compute is
    shared: on a CPU Triton 4 batch files made live finals 2-4x slower (bench batch)."""
    max_files_per_job: int = 10000
    webhook_secret: Secret | None = None
    """Signs the completion webhook (``X-Gateway-Signature: sha256=<hex>``)."""
    webhook_timeout_s: float = 10.0
    retries: int = 3
    """More attempts of a completion webhook that failed (connection error, timeout, 5xx)."""

    @property
    def enabled(self) -> bool:
        """Whether the jobs API is on (a ``root`` is set)."""
        return self.root != Path("")

    def outputs_in(self, state_dir: Path) -> Path:
        """``out_dir``, or ``<state_dir>/transcriptions`` when it is ``""``."""
        return self.out_dir if self.out_dir != Path("") else state_dir / "transcriptions"


@dataclass(frozen=True, slots=True)
class ConsentRule:
    """``[[consent.rules]]``: grants (or denies) consent when ``pattern`` matches the field
    named by ``match`` (``source``: the signalling peer's IP in ``cidr``); first match wins."""

    name: str
    match: str
    grant: bool
    pattern: re.Pattern[str] | None = None
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    header: str = ""
    channels: tuple[str, ...] = ()
    """Channels the decision is for; ``()``: the call's own channels."""


@dataclass(frozen=True, slots=True)
class ConsentConfig:
    """``[consent]``: consent per call and channel to use its material for ``purpose``
    (issue 19). Without evidence of a grant nothing is consented."""

    enabled: bool = True
    purpose: str = "asr_training"
    policy_version: str = "1"
    header: str = "X-Consent"
    """SIP header that carries a grant or a denial; ``""``: no header source."""
    grant_values: tuple[str, ...] = ("yes", "true", "1", "granted", "opt-in")
    deny_values: tuple[str, ...] = ("no", "false", "0", "denied", "opt-out")
    rules: tuple[ConsentRule, ...] = ()
    siprec_element: str = "consent"
    """SIPREC metadata element (or attribute) read in session and participant extension
    data; ``""``: SIPREC metadata is not a source."""
    ivr_prompt: str = ""
    """Spoken when the call is answered; the caller's keypad answer decides (``""``: off)."""
    ivr_grant_digit: str = "1"
    ivr_deny_digit: str = "2"
    ivr_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class DatasetConfig:
    """``[dataset]``: ``asr-gateway export-dataset`` (issue 19); the command line overrides
    the segment and format defaults."""

    salt_file: Path = Path("")
    """The secret behind the speaker pseudonyms and hashed call ids (created 0600 at first
    use); ``""``: ``<state_dir>/dataset_salt`` (see :meth:`salt_in`)."""
    min_s: float = 10.0
    max_s: float = 30.0
    redacted: str = "drop"
    """A segment holding a redacted span: ``drop`` it, or keep it (``tone``: the recorder's
    tone in the audio, the tag in the text)."""
    audio_format: str = "flac"

    def salt_in(self, state_dir: Path) -> Path:
        """``salt_file``, or ``<state_dir>/dataset_salt`` when it is ``""``."""
        return self.salt_file if self.salt_file != Path("") else state_dir / "dataset_salt"


@dataclass(frozen=True, slots=True)
class SystemdConfig:
    watchdog: bool = True


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    sip: SipConfig = field(default_factory=SipConfig)
    rtp: RtpConfig = field(default_factory=RtpConfig)
    channels: ChannelsConfig = field(default_factory=ChannelsConfig)
    triton: TritonConfig = field(default_factory=TritonConfig)
    siprec: SiprecConfig = field(default_factory=SiprecConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    statistics: TalkStatisticsConfig = field(default_factory=TalkStatisticsConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    consent: ConsentConfig = field(default_factory=ConsentConfig)
    systemd: SystemdConfig = field(default_factory=SystemdConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    source_path: Path | None = None


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a SIGHUP reload would do: key paths applied live, and those refused."""

    changed: tuple[str, ...]
    refused: tuple[str, ...]


# --------------------------------------------------------------------------- validators

_BAD: Final = object()  # a value that failed validation (its error is already recorded)
_REQUIRED: Final = object()
_SECRET_SUFFIXES: Final = ("", "_env", "_file")


@dataclass(slots=True)
class _Ctx:
    env: Mapping[str, str]
    base_dir: Path
    errors: list[str] = field(default_factory=list)

    def error(self, path: str, reason: str) -> None:
        self.errors.append(f"{path}: {reason}")


Validator = Callable[[Any, str, _Ctx], Any]
Post = Callable[[Mapping[str, Any], dict[str, Any], str, _Ctx], None]


class _Invalid(Exception):
    """Raised by a leaf check with the reason (the key path is added by ``_leaf``)."""


class _SecretSpec:
    """Spec marker: the key is a secret given as ``<name>``, ``<name>_env`` or ``<name>_file``."""


_SECRET: Final = _SecretSpec()
Spec = Mapping[str, Validator | _SecretSpec]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    names: dict[type, str] = {dict: "table", list: "array"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _typed(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _Invalid(f"must be {what}, got {_type_name(value)}")
    return value


def _leaf(check: Callable[[Any], Any]) -> Validator:
    def validate(value: Any, path: str, ctx: _Ctx) -> Any:
        try:
            return check(value)
        except _Invalid as exc:
            ctx.error(path, str(exc))
            return _BAD

    return validate


def _int(lo: int, hi: int, *, even: bool = False) -> Validator:
    bounds = f"an even integer {lo}..{hi}" if even else f"{lo}..{hi}"

    def check(value: Any) -> int:
        _typed(value, int, bounds if even else "an integer")
        if not lo <= value <= hi or (even and value % 2):
            raise _Invalid(f"must be {bounds}, got {value}")
        return int(value)

    return _leaf(check)


def _float(lo: float, hi: float, *, above: bool = False) -> Validator:
    bounds = f"{'>' if above else ''}{lo:g}..{hi:g}"

    def check(value: Any) -> float:
        _typed(value, (int, float), "a number")
        if not ((value > lo if above else value >= lo) and value <= hi):
            raise _Invalid(f"must be {bounds}, got {value}")
        return float(value)

    return _leaf(check)


def _choice(*options: str | int) -> Validator:
    def check(value: Any) -> Any:
        if type(value) is not type(options[0]) or value not in options:
            listed = ", ".join(map(str, options))
            raise _Invalid(f"must be one of {listed}, got {_shown(value)}")
        return value

    return _leaf(check)


def _text(what: str = "", test: Callable[[str], bool] | None = None, *,
          allow_empty: bool = False) -> Validator:
    """A string; ``test`` must hold unless empty. Only the rejected value's *type* is echoed
    for type errors, so a secret given with the wrong type never leaks."""

    def check(value: Any) -> str:
        _typed(value, str, "a string")
        if not value and not allow_empty:
            raise _Invalid("must not be empty")
        if value and test is not None and not test(value):
            raise _Invalid(f"must be {what}, got {_shown(value)}")
        return str(value)

    return _leaf(check)


def _parsed(convert: Callable[[str], Any], reason: Callable[[Exception, str], str]) -> Validator:
    """A string turned into an object by ``convert``; its ValueError/re.error becomes ``reason``."""

    def check(value: Any) -> Any:
        _typed(value, str, "a string")
        try:
            return convert(value)
        except (ValueError, re.error) as exc:
            raise _Invalid(reason(exc, value)) from None

    return _leaf(check)


_bool: Final = _leaf(lambda value: _typed(value, bool, "a boolean"))


def _path(*, allow_empty: bool = False) -> Validator:
    """A filesystem path; relative ones are joined to the config file's directory."""
    text = _text(allow_empty=allow_empty)

    def validate(value: Any, path: str, ctx: _Ctx) -> Any:
        result = text(value, path, ctx)
        if result is _BAD or result == "":
            return Path("") if result == "" else _BAD
        return ctx.base_dir / result

    return validate


def _list(item: Validator, *, non_empty: bool = False,
          unique: Callable[[Any], Any] | None = None, unique_at: str = "") -> Validator:
    """An array of ``item``; optional non-emptiness and uniqueness by ``unique(item)``."""

    def validate(value: Any, path: str, ctx: _Ctx) -> Any:
        if not isinstance(value, list):
            ctx.error(path, f"must be an array, got {_type_name(value)}")
            return _BAD
        if non_empty and not value:
            ctx.error(path, "must not be empty")
            return _BAD
        before = len(ctx.errors)
        items = tuple(item(element, f"{path}[{i}]", ctx) for i, element in enumerate(value))
        seen: set[Any] = set()
        for i, element in enumerate(items):
            if unique is None or element is _BAD:
                continue
            key = unique(element)
            if key in seen:
                ctx.error(f"{path}[{i}]{unique_at}", f"duplicate {_shown(key)}")
            seen.add(key)
        return items if len(ctx.errors) == before else _BAD

    return validate


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _REQUIRED


def _table(cls: type[Any], spec: Spec, post: Post | None = None) -> Validator:
    """A TOML table built into dataclass ``cls``; defaults/required come from its fields."""
    defaults = {f.name: _field_default(f) for f in fields(cls)}
    known = {
        name + suffix
        for name, rule in spec.items()
        for suffix in (_SECRET_SUFFIXES if isinstance(rule, _SecretSpec) else ("",))
    }

    def validate(raw: Any, path: str, ctx: _Ctx) -> Any:
        if not isinstance(raw, Mapping):
            ctx.error(path, f"must be a table, got {_type_name(raw)}")
            return _BAD
        before = len(ctx.errors)
        for key in raw:
            if key not in known:
                ctx.error(_join(path, key), "unknown key")
        values = {name: _read_key(raw, path, name, rule, defaults[name], ctx)
                  for name, rule in spec.items()}
        if post is not None:
            post(raw, values, path, ctx)
        return cls(**values) if len(ctx.errors) == before else _BAD

    return validate


def _read_key(raw: Mapping[str, Any], path: str, name: str, rule: Validator | _SecretSpec,
              default: Any, ctx: _Ctx) -> Any:
    if isinstance(rule, _SecretSpec):
        return _read_secret(raw, path, name, default is _REQUIRED, ctx)
    where = _join(path, name)
    if name in raw:
        return rule(raw[name], where, ctx)
    if default is _REQUIRED:
        ctx.error(where, "required")
        return _BAD
    return default


_secret_source: Final = _text()


def _read_secret(raw: Mapping[str, Any], path: str, name: str, required: bool,
                 ctx: _Ctx) -> Any:
    given = [name + suffix for suffix in _SECRET_SUFFIXES if name + suffix in raw]
    if len(given) > 1:
        ctx.error(_join(path, name), f"give only one of {', '.join(given)}")
        return _BAD
    if not given:
        if required:
            ctx.error(_join(path, name), f"required (or {name}_env / {name}_file)")
        return _BAD if required else None
    key = given[0]
    where = _join(path, key)
    source = _secret_source(raw[key], where, ctx)
    if source is _BAD:
        return _BAD
    try:
        return Secret(_resolve_secret(key[len(name):], source, ctx))
    except _Invalid as exc:
        ctx.error(where, str(exc))
        return _BAD


def _resolve_secret(kind: str, source: str, ctx: _Ctx) -> str:
    """The secret's value from its source; errors name the variable or file, never the value
    (hence no UnicodeDecodeError text, which quotes the offending byte)."""
    if kind == "_env":
        if source not in ctx.env:
            raise _Invalid(f"environment variable {source!r} is not set")
        value = ctx.env[source]
    elif kind == "_file":
        file = ctx.base_dir / source
        try:
            value = file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise _Invalid(f"cannot read {str(file)!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise _Invalid(f"{str(file)!r} is not valid UTF-8") from None
    else:
        value = source
    if not value:
        raise _Invalid("the secret is empty")
    return value


def _variants(tag: str, allowed: Mapping[str, tuple[str, ...]],
              needed: Mapping[str, tuple[str, ...]]) -> Post:
    """Keys gated by the value of ``tag``: allowed only for some values, required for some."""
    gated = {key for keys in allowed.values() for key in keys}

    def post(raw: Mapping[str, Any], values: dict[str, Any], path: str, ctx: _Ctx) -> None:
        kind = values[tag]
        if kind is _BAD:
            return
        for key in raw:
            if key in gated and key not in allowed.get(kind, ()):
                ctx.error(_join(path, key), f"not allowed when {tag} = {kind!r}")
        for key in needed.get(kind, ()):
            if key not in raw:
                ctx.error(_join(path, key), f"required when {tag} = {kind!r}")

    return post


def _ports_ordered(raw: Mapping[str, Any], values: dict[str, Any], path: str,
                   ctx: _Ctx) -> None:
    low, high = values["port_min"], values["port_max"]
    if low is not _BAD and high is not _BAD and low >= high:
        ctx.error(_join(path, "port_min"), f"must be less than port_max, got {low} >= {high}")


# --------------------------------------------------------------------------- predicates

_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")  # RFC 3261 token (header names)
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE: Final = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_host(text: str) -> bool:
    """An IP address or a DNS name (whose last label is not all digits, so "1.2.3.300" fails)."""
    if _is_ip(text):
        return True
    last_label = text.rstrip(".").rpartition(".")[2]
    return _HOSTNAME_RE.fullmatch(text) is not None and not last_label.isdigit()


def _is_host_port(text: str) -> bool:
    """``host:port``; an IPv6 host must be bracketed (``[::1]:8001``)."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return False
    valid_port = port.isascii() and port.isdigit() and 1 <= int(port) <= 65535
    return bool(colon) and valid_port and _is_host(host)


def _is_header_name(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def _is_sip_uri(text: str) -> bool:
    return text.startswith("sip:") and len(text) > 4 and not any(c.isspace() for c in text)


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# --------------------------------------------------------------------------- schema

_IP: Final = _text("an IP address", _is_ip)
_HOST_OR_EMPTY: Final = _text("a host name or IP address", _is_host, allow_empty=True)
_SIP_URI: Final = _text("a SIP URI (sip:...)", _is_sip_uri)
_SIP_URI_OR_EMPTY: Final = _text("a SIP URI (sip:...)", _is_sip_uri, allow_empty=True)
_HEADER: Final = _text("a header name", _is_header_name)
_HEADER_OR_EMPTY: Final = _text("a header name", _is_header_name, allow_empty=True)
_PORT: Final = _int(0, 65535)
_TRANSPORT: Final = _choice("udp", "tcp")

_ACCOUNT: Final = _table(SipAccount, {
    "name": _text(),
    "user": _text(),
    "auth_user": _text(),
    "domain": _text("a host name or IP address", _is_host),
    "password": _SECRET,
    "realm": _text(allow_empty=True),
    "registrars": _list(_SIP_URI, non_empty=True),
    "outbound_proxy": _SIP_URI_OR_EMPTY,
    "expires_s": _int(60, 86400),
    "transport": _TRANSPORT,
    "contact_user": _text(),
})

_SIP: Final = _table(SipConfig, {
    "bind_address": _IP,
    "port": _PORT,
    "transports": _list(_TRANSPORT, non_empty=True, unique=lambda t: t),
    "advertised_address": _HOST_OR_EMPTY,
    "user_agent": _text(),
    "max_calls": _int(1, 100000),
    "trunk_allow": _list(_parsed(lambda s: ipaddress.ip_network(s, strict=False),
                                 lambda _exc, s: f"must be a CIDR network, got {_shown(s)}")),
    "invite_rate_per_s": _float(0, 10000, above=True),
    "send_ringing": _bool,
    "answer_delay_ms": _int(0, 60000),
    "copy_headers": _list(_HEADER),
    "drain_grace_s": _float(0, 3600),
    "t1_ms": _int(100, 5000),
    "t2_ms": _int(1000, 16000),
    "accounts": _list(_ACCOUNT, unique=lambda a: a.name, unique_at=".name"),
})

_RTP: Final = _table(RtpConfig, {
    "bind_address": _IP,
    "advertised_address": _HOST_OR_EMPTY,
    "port_min": _int(1024, 65534, even=True),
    "port_max": _int(1024, 65534, even=True),
    "ptime_ms": _choice(10, 20, 30),
    "jitter_depth_ms": _int(0, 1000),
    "jitter_mode": _choice("fixed", "adaptive"),
    "resampler": _choice("lowdelay", "soxr"),
    "timeout_s": _float(1, 3600),
    "codecs": _list(_choice("PCMU", "PCMA"), non_empty=True, unique=lambda c: c),
    "symmetric": _bool,
    "telephone_event": _bool,
}, post=_ports_ordered)

_RULE: Final = _table(ChannelRule, {
    "match": _choice("header", "to_user", "from_user", "request_user", "siprec_participant"),
    "header": _HEADER,
    "pattern": _parsed(re.compile, lambda exc, _s: f"invalid regex: {exc}"),
    "channel": _choice("agent", "customer"),
}, post=_variants("match", {"header": ("header",)}, {"header": ("header",)}))

_CHANNELS: Final = _table(ChannelsConfig, {
    "default": _choice("agent", "customer"),
    "correlation_header": _HEADER_OR_EMPTY,
    "rules": _list(_RULE),
})

_TRITON: Final = _table(TritonConfig, {
    "url": _text("host:port", _is_host_port),
    "protocol": _choice("grpc"),
    "asr_model": _text(),
    "asr_model_version": _text(allow_empty=True),
    "tts_model": _text(),
    "chunk_ms": _int(40, 2000),
    "sample_rate_hz": _choice(8000, 16000),
    "connect_timeout_s": _float(0.1, 120),
    "request_timeout_s": _float(0.1, 600),
    "health_interval_s": _float(0.5, 300),
    "required_for_ready": _bool,
    "asr_enabled": _bool,
    "buffer_s": _float(1, 600),
    "final_timeout_s": _float(0.1, 120),
    "sequence_keepalive_s": _float(0.1, 600),
    "phrases": _list(_text()),
})

_WEBHOOK_KEYS: Final = ("url", "timeout_s", "retries") + tuple(
    "secret" + suffix for suffix in _SECRET_SUFFIXES)

_SINK: Final = _table(EventSink, {
    "type": _choice("log", "jsonl", "webhook"),
    "path": _path(),
    "url": _text("an http(s) URL", _is_http_url),
    "timeout_s": _float(0.1, 60),
    "retries": _int(0, 10),
    "secret": _SECRET,
    "raw": _bool,
}, post=_variants("type", {"jsonl": ("path",), "webhook": _WEBHOOK_KEYS},
                  {"jsonl": ("path",), "webhook": ("url",)}))

def _last4_only_for_cards(raw: Mapping[str, Any], values: dict[str, Any], path: str,
                          ctx: _Ctx) -> None:
    for name, action in values.items():
        if action == "last4" and name != "card":
            ctx.error(_join(path, name), '"last4" is for card only; use "tag" or "off"')


def _custom_names(raw: Mapping[str, Any], values: dict[str, Any], path: str, ctx: _Ctx) -> None:
    name = values.get("name")
    if isinstance(name, str) and not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
        ctx.error(_join(path, "name"), "must be lower case letters, digits and _ (max 32)")


_REDACTION: Final = _table(RedactionConfig, {
    "enabled": _bool,
    "entities": _table(RedactionEntities, {
        name: _choice("tag", "last4", "off") for name in (
            "card", "cvv", "expiry", "ssn", "bank_account", "routing", "iban", "phone",
            "email", "dob")}, post=_last4_only_for_cards),
    "tags": _table(RedactionTags, {
        name: _text() for name in (
            "card", "cvv", "expiry", "ssn", "bank_account", "routing", "iban", "phone",
            "email", "dob", "dtmf")}),
    "custom": _list(_table(CustomRedaction, {
        "name": _text(),
        "pattern": _parsed(lambda text: re.compile(text, re.IGNORECASE),
                           lambda exc, _s: f"invalid regex: {exc}"),
        "tag": _text(allow_empty=True),
    }, post=_custom_names), unique=lambda c: c.name, unique_at=".name"),
    "context_window_s": _float(0, 600),
    "hold_s": _float(0, 30),
    "secure_dtmf": _choice("never", "always", "after_card_request"),
    "audio": _choice("tone", "silence", "off"),
    "audio_padding_ms": _int(0, 2000),
    "audio_delay_s": _float(0, 120),
})

_RULE_NAME: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


def _is_phrase(text: str) -> bool:
    """Words (a ``*`` inside stands for any one word), with a letter or digit."""
    words = text.split()
    return (re.search(r"[^\W_]", text) is not None and words[0] != "*"
            and words[-1] != "*")


_RULE_KINDS: Final = _variants("kind", {"hint": ("hint",), "compliance": ("forbidden",)},
                               {"hint": ("hint",)})


def _rule_shape(raw: Mapping[str, Any], values: dict[str, Any], path: str, ctx: _Ctx) -> None:
    _RULE_KINDS(raw, values, path, ctx)
    windows = [k for k in ("first_s", "last_s", "after") if raw.get(k) not in (None, "")]
    if len(windows) > 1:
        ctx.error(_join(path, windows[1]),
                  f"one window per rule: first_s, last_s or after (not with {windows[0]})")
    if not raw.get("phrases") and not (raw.get("after")
                                       and values["kind"] in ("category", "hint")):
        ctx.error(_join(path, "phrases"), "required (optional only for a category or hint "
                  "with after)")
    if "within_s" in raw and not raw.get("after"):
        ctx.error(_join(path, "within_s"), "only with after (first_s counts from the start)")
    if "last_s" in raw and values["kind"] == "hint":
        ctx.error(_join(path, "last_s"),
                  "not for a hint (last_s is decided when the conversation has ended)")


_ANALYTICS_RULE: Final = _table(AnalyticsRule, {
    "name": _text("lower case letters, digits, _ . - (max 64)",
                  lambda s: _RULE_NAME.fullmatch(s) is not None),
    "kind": _choice("category", "compliance", "hint"),
    "phrases": _list(_text("words (a * inside for any one word) with a letter or digit",
                           _is_phrase)),
    "channel": _choice("agent", "customer", "either"),
    "first_s": _float(0, 86400, above=True),
    "last_s": _float(0, 86400, above=True),
    "after": _text(allow_empty=True),
    "within_s": _float(0, 86400, above=True),
    "forbidden": _bool,
    "hint": _text(),
    "fuzzy": _float(0.5, 1),
    "once": _bool,
}, post=_rule_shape)
_ANALYTICS_RULES: Final = _list(_ANALYTICS_RULE)


def _rules_file(file: Path, path: str, ctx: _Ctx) -> Any:
    """The ``[[rules]]`` of a rules file, validated; errors are named ``<file>: rules[i]...``."""
    try:
        data = tomllib.loads(file.read_bytes().decode("utf-8"))
    except OSError as exc:
        ctx.error(path, f"cannot read {str(file)!r}: {exc.strerror or exc}")
        return _BAD
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        ctx.error(path, f"{str(file)!r} is not valid TOML: {exc}")
        return _BAD
    for key in data:
        if key != "rules":
            ctx.error(f"{file}: {key}", "unknown key (a rules file has only [[rules]])")
    return _ANALYTICS_RULES(data.get("rules", []), f"{file}: rules", ctx)


def _analytics_rules(raw: Mapping[str, Any], values: dict[str, Any], path: str,
                     ctx: _Ctx) -> None:
    """Inline rules and the rules file's as one list; names unique, ``after`` known."""
    inline, file = values["rules"], values["rules_file"]
    if inline is _BAD or file is _BAD:
        return
    named = [(f"{_join(path, 'rules')}[{i}]", r) for i, r in enumerate(inline)]
    if file != Path(""):
        loaded = _rules_file(file, _join(path, "rules_file"), ctx)
        if loaded is _BAD:
            return
        named += [(f"{file}: rules[{i}]", r) for i, r in enumerate(loaded)]
        values["rules"] = inline + loaded
    _rule_references(named, ctx)


def _rule_references(named: list[tuple[str, AnalyticsRule]], ctx: _Ctx) -> None:
    rules: dict[str, AnalyticsRule] = {}
    for where, rule in named:
        if rule.name in rules:
            ctx.error(f"{where}.name", f"duplicate {_shown(rule.name)}")
        rules.setdefault(rule.name, rule)
    for where, rule in named:
        if rule.after:
            problem = _after_problem(rule, rules)
            if problem:
                ctx.error(f"{where}.after", problem)


def _after_problem(rule: AnalyticsRule, rules: Mapping[str, AnalyticsRule]) -> str:
    target = rules.get(rule.after)
    if target is None:
        return f"no rule named {_shown(rule.after)}"
    if target.last_s is not None:
        return f"{_shown(rule.after)} is decided at the end (last_s): nothing can follow it"
    chain = [rule.name]
    while target is not None and target.name not in chain:
        chain.append(target.name)
        target = rules.get(target.after) if target.after else None
    if target is not None and target.name == rule.name:
        return "a cycle: " + " -> ".join([*chain, rule.name])
    return ""


_ANALYTICS: Final = _table(AnalyticsConfig, {
    "enabled": _bool,
    "rules": _ANALYTICS_RULES,
    "rules_file": _path(allow_empty=True),
    "fuzzy": _float(0.5, 1),
    "late_s": _float(0, 120),
    "summary": _bool,
    "sentiment": _bool,
}, post=_analytics_rules)

def _consent_values_apart(raw: Mapping[str, Any], values: dict[str, Any], path: str,
                          ctx: _Ctx) -> None:
    grant, deny = values["grant_values"], values["deny_values"]
    if grant is not _BAD and deny is not _BAD:
        both = sorted({v.lower() for v in grant} & {v.lower() for v in deny})
        if both:
            ctx.error(_join(path, "deny_values"), f"also in grant_values: {', '.join(both)}")
    digit = values["ivr_grant_digit"]
    if digit is not _BAD and digit == values["ivr_deny_digit"]:
        ctx.error(_join(path, "ivr_deny_digit"), "must differ from ivr_grant_digit")


_CONSENT_RULE_KEYS: Final = {"header": ("header", "pattern"), "source": ("cidr",),
                              "to_user": ("pattern",), "from_user": ("pattern",),
                              "request_user": ("pattern",)}
_CONSENT_RULE: Final = _table(ConsentRule, {
    "name": _text(),
    "match": _choice(*_CONSENT_RULE_KEYS),
    "header": _HEADER,
    "pattern": _parsed(re.compile, lambda exc, _s: f"invalid regex: {exc}"),
    "cidr": _parsed(lambda s: ipaddress.ip_network(s, strict=False),
                    lambda _exc, s: f"must be a CIDR network, got {_shown(s)}"),
    "grant": _bool,
    "channels": _list(_choice("agent", "customer"), unique=lambda c: c),
}, post=_variants("match", _CONSENT_RULE_KEYS, _CONSENT_RULE_KEYS))

_DIGIT: Final = _choice(*"0123456789*#")
_CONSENT: Final = _table(ConsentConfig, {
    "enabled": _bool,
    "purpose": _text("letters, digits, '_', '-' or '.'", lambda s: re.fullmatch(
        r"[A-Za-z0-9_.-]+", s) is not None),
    "policy_version": _text(),
    "header": _HEADER_OR_EMPTY,
    "grant_values": _list(_text(), non_empty=True, unique=lambda v: v.lower()),
    "deny_values": _list(_text(), non_empty=True, unique=lambda v: v.lower()),
    "rules": _list(_CONSENT_RULE, unique=lambda r: r.name, unique_at=".name"),
    "siprec_element": _text(allow_empty=True),
    "ivr_prompt": _text(allow_empty=True),
    "ivr_grant_digit": _DIGIT,
    "ivr_deny_digit": _DIGIT,
    "ivr_timeout_s": _float(1, 300),
}, post=_consent_values_apart)


def _dataset_bounds(raw: Mapping[str, Any], values: dict[str, Any], path: str,
                    ctx: _Ctx) -> None:
    lo, hi = values["min_s"], values["max_s"]
    if lo is not _BAD and hi is not _BAD and lo > hi:
        ctx.error(_join(path, "max_s"), f"must be at least min_s ({lo})")


def _batch_needs_asr(raw: Mapping[str, Any], values: dict[str, Any], path: str,
                     ctx: _Ctx) -> None:
    batch, triton = values["batch"], values["triton"]
    if (isinstance(batch, BatchConfig) and isinstance(triton, TritonConfig)
            and batch.enabled and not triton.asr_enabled):
        ctx.error("batch.root", "batch jobs need triton.asr_enabled = true")


_ROOT: Final = _table(GatewayConfig, {
    "sip": _SIP,
    "rtp": _RTP,
    "channels": _CHANNELS,
    "triton": _TRITON,
    "siprec": _table(SiprecConfig, {
        "caller_labels": _list(_text()),
        "fallback": _choice("mline_order", "customer"),
        "metadata_required": _bool,
    }),
    "tts": _table(TtsConfig, {
        "enabled": _bool,
        "voice": _text(allow_empty=True),
        "rate": _float(0.5, 2.0),
        "max_text_chars": _int(1, 20000),
        "barge_in_ms": _int(20, 5000),
        "barge_in_threshold_dbfs": _float(-90, 0),
        "greeting": _text(allow_empty=True),
        "recording_notice": _text(allow_empty=True),
    }),
    "bot": _table(BotConfig, {
        "webhook_url": _text("an http(s) URL", _is_http_url, allow_empty=True),
        "secret": _SECRET,
        "timeout_s": _float(0.1, 60),
        "retries": _int(0, 10),
        "channel": _choice("agent", "customer"),
    }),
    "events": _table(EventsConfig, {"sinks": _list(_SINK)}),
    "http": _table(HttpConfig, {"bind_address": _IP, "port": _PORT, "token": _SECRET}),
    "logging": _table(LoggingConfig, {
        "level": _choice("debug", "info", "warning", "error"),
        "format": _choice("auto", "json", "console"),
        "sip_trace": _bool,
    }),
    "storage": _table(StorageConfig, {
        "state_dir": _path(),
        "recordings_dir": _path(allow_empty=True),
        "record": _bool,
        "recording_format": _choice("wav", "flac"),
    }),
    "redaction": _REDACTION,
    "analytics": _ANALYTICS,
    "statistics": _table(TalkStatisticsConfig, {
        "enabled": _bool,
        "threshold_dbfs": _float(-90, 0),
        "hangover_ms": _int(20, 5000),
        "min_talk_ms": _int(20, 5000),
        "interruption_ms": _int(0, 60000),
        "dead_air_s": _float(1, 3600),
    }),
    "batch": _table(BatchConfig, {
        "root": _path(allow_empty=True),
        "out_dir": _path(allow_empty=True),
        "concurrency": _int(1, 64),
        "concurrency_with_calls": _int(0, 64),
        "max_files_per_job": _int(1, 1_000_000),
        "webhook_secret": _SECRET,
        "webhook_timeout_s": _float(0.1, 120),
        "retries": _int(0, 10),
    }),
    "consent": _CONSENT,
    "systemd": _table(SystemdConfig, {"watchdog": _bool}),
    "dataset": _table(DatasetConfig, {
        "salt_file": _path(allow_empty=True),
        "min_s": _float(0.5, 600),
        "max_s": _float(0.5, 600),
        "redacted": _choice("drop", "tone"),
        "audio_format": _choice("flac", "wav"),
    }, post=_dataset_bounds),
}, post=_batch_needs_asr)


# --------------------------------------------------------------------------- public API

def parse_config(data: Mapping[str, Any], env: Mapping[str, str], base_dir: Path) -> GatewayConfig:
    """Validate already-parsed TOML ``data``; relative paths are resolved against ``base_dir``."""
    ctx = _Ctx(env=env, base_dir=Path(base_dir))
    if not isinstance(data, Mapping):
        raise ConfigError((f"config: must be a table, got {_type_name(data)}",))
    result = _ROOT(data, "", ctx)
    if ctx.errors or not isinstance(result, GatewayConfig):
        raise ConfigError(ctx.errors)
    return result


def load_config(path: str | os.PathLike[str],
                env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate the TOML file at ``path``; ``env`` defaults to ``os.environ``."""
    file = Path(path).absolute()
    try:
        data = tomllib.loads(file.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError((f"{file}: cannot read: {exc.strerror or exc}",)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError((f"{file}: not valid UTF-8 at byte {exc.start}",)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError((f"{file}: invalid TOML: {exc}",)) from None
    config = parse_config(data, os.environ if env is None else env, file.parent)
    return dataclasses.replace(config, source_path=file)


_LIVE_KEYS: Final = ("logging.level", "logging.format", "logging.sip_trace", "events",
                     "sip.accounts", "channels",
                     "sip.trunk_allow", "sip.max_calls", "sip.invite_rate_per_s", "tts", "bot",
                     "siprec.caller_labels", "siprec.fallback", "redaction",
                     "analytics", "statistics", "consent", "triton.asr_model_version")


def _is_live(key: str) -> bool:
    return any(key == live or key.startswith(live + ".") for live in _LIVE_KEYS)


def reload_diff(old: GatewayConfig, new: GatewayConfig) -> ReloadPlan:
    """Split the differences between two configs into live-applicable and restart-only."""
    changed: list[str] = []
    refused: list[str] = []
    for section in fields(GatewayConfig):
        if section.name == "source_path":
            continue
        before, after = getattr(old, section.name), getattr(new, section.name)
        for item in fields(before):
            key = f"{section.name}.{item.name}"
            if getattr(before, item.name) == getattr(after, item.name):
                continue
            if _is_live(key):
                changed.append(key)
            else:
                refused.append(f"{key}: needs a restart")
    return ReloadPlan(changed=tuple(changed), refused=tuple(refused))


def merge_live(old: GatewayConfig, new: GatewayConfig) -> GatewayConfig:
    """``old`` with every live-reloadable key taken from ``new`` (what SIGHUP applies)."""
    sections: dict[str, Any] = {}
    for section in fields(GatewayConfig):
        if section.name == "source_path":
            continue
        before, after = getattr(old, section.name), getattr(new, section.name)
        live = {item.name: getattr(after, item.name) for item in fields(before)
                if _is_live(f"{section.name}.{item.name}")}
        sections[section.name] = dataclasses.replace(before, **live) if live else before
    return dataclasses.replace(old, **sections)


def _plain(value: Any, resolve: bool = False) -> Any:
    if isinstance(value, Secret):
        return "***"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), resolve) for f in fields(value)}
    if isinstance(value, tuple):
        return [_plain(item, resolve) for item in value]
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, Path):
        return shown_path(value) if resolve else str(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    return value


def redacted_dict(cfg: GatewayConfig, *, resolve_paths: bool = False) -> dict[str, Any]:
    """The whole config as a JSON-safe dict, secrets replaced by ``"***"`` (for logging);
    ``resolve_paths``: paths as the kernel resolves them (no ``dir/../x``)."""
    result: dict[str, Any] = _plain(cfg, resolve_paths)
    return result


def shown_path(path: Path) -> str:
    """A path for people: resolved (symlinks and ``..`` followed), "" for an unset one."""
    if path == Path(""):
        return ""
    try:
        return str(path.resolve(strict=False))
    except (OSError, RuntimeError):   # a symlink loop: show it as written
        return os.path.normpath(path)


def _sink_summary(sink: EventSink) -> str:
    return _sink_name(sink) + (" (raw)" if sink.raw else "")


def _sink_name(sink: EventSink) -> str:
    if sink.type == "jsonl" and sink.path is not None:
        return f"jsonl:{shown_path(sink.path)}"
    if sink.type == "webhook":
        parts = urlsplit(sink.url)
        return f"webhook:{parts.scheme}://{parts.hostname}{parts.path}"   # no user:pass@
    return sink.type


def startup_summary(cfg: GatewayConfig) -> dict[str, Any]:
    """The few settings an operator checks first, for the one-line ``gateway.started``; the
    whole config is logged separately at debug level (``gateway.config``)."""
    triton = cfg.triton
    return {
        "config_file": shown_path(cfg.source_path) if cfg.source_path else None,
        "state_dir": shown_path(cfg.storage.state_dir),
        "recordings_dir": shown_path(cfg.storage.recordings_dir) if cfg.storage.record else None,
        "triton": triton.url,
        "asr_model": triton.asr_model if triton.asr_enabled else None,
        "tts_model": triton.tts_model if cfg.tts.enabled else None,
        "accounts": [a.name for a in cfg.sip.accounts],
        "max_calls": cfg.sip.max_calls,
        "event_sinks": [_sink_summary(s) for s in cfg.events.sinks],
        "logging": {"level": cfg.logging.level, "format": cfg.logging.format,
                    "sip_trace": cfg.logging.sip_trace},
        "redaction": _redaction_summary(cfg.redaction),
        "batch_root": shown_path(cfg.batch.root) if cfg.batch.enabled else None,
    }


def _redaction_summary(r: RedactionConfig) -> dict[str, Any] | str:
    if not r.enabled:
        return "off"
    off = [f.name for f in fields(r.entities) if getattr(r.entities, f.name) == "off"]
    return {"audio": r.audio, "entities_off": off, "custom": [c.name for c in r.custom],
            "secure_dtmf": r.secure_dtmf}
