"""Model versions in AsrHub: each channel is pinned to one concrete version from its first
request on (through replays), a switch moves only the channels that start after it, latest
("") becomes the newest ready version at connect, and a sequence whose version is no longer
served moves to the hub's version. The in-process fake stream of test_asr_hub; no sockets."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from structlog.testing import capture_logs

from gateway.asr.contract import RequestId, StreamReply
from gateway.asr.stream import AsrChannel, AsrHub, newest_version
from gateway.config import TritonConfig
from gateway.metrics import Metrics
from tests.unit.test_asr_hub import FakeStream, _push


def _hub(version: str = "1") -> AsrHub:
    hub = AsrHub(TritonConfig(asr_model="m", asr_model_version=version), Metrics())
    FakeStream(hub)                           # connected, nothing sent yet
    return hub


def _sent(hub: AsrHub) -> list[tuple[str, int, bool]]:
    """The writer's turns: (model_version, corrid, sequence_start) per request."""
    out = []
    while hub._outbox:
        ch = hub._outbox.popleft()
        assert ch is not None
        request = hub._next_request(ch)
        if request is not None:
            params = request.parameters
            out.append((request.model_version, params["sequence_id"].int64_param,
                        params["sequence_start"].bool_param))
        hub.pump(ch)
    return out


def _refuse(hub: AsrHub, ch: AsrChannel, error: str) -> None:
    hub._on_response(StreamReply(RequestId(ch.corrid, False), (), error, True))


async def test_a_switch_moves_only_the_channels_that_start_after_it() -> None:
    hub = _hub("1")
    early = hub.open("c1/customer", lambda *_: None)
    _push(early, 0.2)
    assert {v for v, _c, _s in _sent(hub)} == {"1"}
    hub.use_version("2")
    late = hub.open("c2/customer", lambda *_: None)
    _push(early, 0.2)
    _push(late, 0.2)
    sent = _sent(hub)
    assert {v for v, c, _s in sent if c == early.corrid} == {"1"}
    assert {v for v, c, _s in sent if c == late.corrid} == {"2"}
    assert (early.version, late.version) == ("1", "2")
    assert hub.versions_in_use() == {"1": 1, "2": 1}
    started = hub._metrics.registry.get_sample_value
    assert started("gateway_asr_sequences_total", {"version": "1"}) == 1
    assert started("gateway_asr_sequences_total", {"version": "2"}) == 1


async def test_a_replayed_sequence_keeps_its_version() -> None:
    """Refused for another reason (it idled out), or after a reconnect: same version."""
    hub = _hub("1")
    ch = hub.open("c1/customer", lambda *_: None)
    _push(ch, 0.2)
    _sent(hub)
    hub.use_version("2")
    old = ch.corrid
    _refuse(hub, ch, "inference request for sequence 5 to model 'm' must specify the START "
                     "flag on the first request of the sequence")
    sent = _sent(hub)
    assert ch.corrid != old and sent[0][2] is True            # a fresh sequence ...
    assert {v for v, _c, _s in sent} == {"1"}                  # ... on its own version
    hub._disconnected()                                        # the stream was lost
    FakeStream(hub)
    hub.pump(ch)
    assert {v for v, _c, _s in _sent(hub)} == {"1"}


async def test_a_sequence_whose_version_was_unloaded_moves_to_the_current_one() -> None:
    hub = _hub("1")
    ch = hub.open("c1/customer", lambda *_: None)
    _push(ch, 0.2)
    _sent(hub)
    hub.use_version("3")
    with capture_logs() as logs:
        _refuse(hub, ch, "Request for unknown model: 'm' version 1 is not at ready state")
    sent = _sent(hub)
    assert sent and {v for v, _c, _s in sent} == {"3"} and sent[0][2] is True
    lost = [e for e in logs if e["event"] == "asr.sequence_lost"]
    assert lost[0]["version"] == "1" and lost[0]["moved_to"] == "3"


class _Stub:
    def __init__(self, versions: list[str]) -> None:
        self.versions = versions
        self.asked: list[str] = []

    async def ModelReady(self, request: Any, timeout: float) -> Any:  # noqa: N802
        self.asked.append(request.version)
        return SimpleNamespace(ready=True)

    async def ModelMetadata(self, request: Any, timeout: float) -> Any:  # noqa: N802
        return SimpleNamespace(versions=self.versions)


async def test_latest_is_the_newest_ready_version_at_each_connect() -> None:
    hub = _hub("")
    ch = hub.open("c1/customer", lambda *_: None)
    stub = _Stub(["1", "2"])
    await hub._check_model(stub)
    assert hub.version == "2"
    _push(ch, 0.2)
    assert {v for v, _c, _s in _sent(hub)} == {"2"}            # never "" on the wire
    stub.versions = ["2", "10"]
    await hub._check_model(stub)                               # a reconnect
    assert hub.version == "10" and ch.version == "2"
    assert stub.asked == ["", ""]
    hub.use_version("2")                                       # pinned by a reload
    await hub._check_model(stub)
    assert hub.version == "2" and stub.asked[-1] == "2"


def test_newest_version_is_numeric() -> None:
    assert newest_version(["9", "10", "2"]) == "10"
    assert newest_version([]) == ""


async def test_channels_opened_before_the_first_connect_take_the_resolved_version() -> None:
    hub = AsrHub(TritonConfig(asr_model="m", asr_model_version=""), Metrics())
    ch = hub.open("c1/customer", lambda *_: None)
    _push(ch, 0.2)                                             # buffered: no stream yet
    await hub._check_model(_Stub(["4"]))
    FakeStream(hub)
    hub.pump(ch)
    assert {v for v, _c, _s in _sent(hub)} == {"4"}
    await asyncio.sleep(0)
