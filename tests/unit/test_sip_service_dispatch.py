"""SipService: the call side is an interface handed over at construction, and every SIP core
output type is dispatched explicitly (an unknown one is logged and counted, not dropped).

No sockets: the service is constructed (inside a running loop) but never started; the core
outputs are fed to its dispatcher directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, get_args

import pytest

from gateway.config import GatewayConfig
from gateway.events.bus import EventBus
from gateway.metrics import Metrics
from gateway.sip import core as sipcore
from gateway.sip.callside import SipControl
from gateway.sip.service import SipService


class RecordingCalls:
    """A CallSide that records what SIP tells it."""

    def __init__(self) -> None:
        self.bound: SipControl | None = None
        self.seen: list[tuple[str, tuple[Any, ...]]] = []

    @property
    def active(self) -> int:
        return 0

    def bind(self, sip: SipControl) -> None:
        self.bound = sip

    def offered(self, call_id: str, meta: Any, plan: Any, media: Any) -> None:
        self.seen.append(("offered", (call_id,)))

    def metadata_updated(self, call_id: str, metadata: Any, error: str | None) -> None:
        self.seen.append(("metadata_updated", (call_id, error)))

    def answered(self, call_id: str) -> None:
        self.seen.append(("answered", (call_id,)))

    def confirmed(self, call_id: str) -> None:
        self.seen.append(("confirmed", (call_id,)))

    def media_changed(self, call_id: str, plan: Any) -> None:
        self.seen.append(("media_changed", (call_id,)))

    def ended(self, call_id: str, reason: str, by: str, answered: bool) -> None:
        self.seen.append(("ended", (call_id, reason, by, answered)))

    async def wait_idle(self, timeout_s: float) -> bool:
        return True

    async def stop(self) -> None:
        return None

    def summary(self, call_id: str) -> dict[str, Any] | None:
        return None

    def summaries(self) -> list[dict[str, Any]]:
        return []


class RecordingLog:
    def __init__(self) -> None:
        self.errors: list[tuple[str, dict[str, Any]]] = []

    def error(self, event: str, **kw: Any) -> None:
        self.errors.append((event, kw))

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **kw: None


@dataclasses.dataclass(frozen=True, slots=True)
class BrandNewOutput:
    """An output type the core might grow that the service has no branch for."""

    call_id: str


def _service() -> tuple[SipService, RecordingCalls, Metrics, RecordingLog]:
    metrics = Metrics()
    calls = RecordingCalls()
    service = SipService(GatewayConfig(), metrics, EventBus(metrics), calls)
    log = RecordingLog()
    service._log = log
    return service, calls, metrics, log


def _unhandled_count(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("gateway_sip_dropped_total",
                                              {"reason": "unhandled_output"})
    return value or 0.0


async def test_service_binds_itself_as_the_call_sides_sip_control() -> None:
    service, calls, _metrics, _log = _service()
    assert calls.bound is service


async def test_unknown_output_type_is_logged_and_counted_and_the_rest_still_runs() -> None:
    service, calls, metrics, log = _service()
    outputs: Sequence[Any] = [sipcore.CallAnswered("c-1"), BrandNewOutput("c-1"),
                              sipcore.CallEnded("c-1", "bye", "remote", True)]
    service._act(outputs)
    assert calls.seen == [("answered", ("c-1",)), ("ended", ("c-1", "bye", "remote", True))]
    assert log.errors == [("sip.unhandled_output", {"output": "BrandNewOutput"})]
    assert _unhandled_count(metrics) == 1


@pytest.mark.parametrize("output_type", get_args(sipcore.Output),
                         ids=lambda t: t.__name__)
async def test_every_core_output_type_has_a_branch(output_type: type,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    service, _calls, metrics, log = _service()
    handled: list[tuple[str, type]] = []
    for name in dir(service):
        if name.startswith("_on_") and name[4:5].isupper():
            monkeypatch.setattr(service, name,
                                lambda o, name=name: handled.append((name, type(o))))
    service._dispatch(output_type.__new__(output_type))
    assert handled == [(f"_on_{output_type.__name__}", output_type)]
    assert log.errors == [] and _unhandled_count(metrics) == 0
