"""LiveConsent (gateway/consent/live.py) in-process: a real EventBus and a real SQLite store,
a fake clock; the call side's hooks driven directly (no SIP, no RTP, no Triton)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig, parse_config
from gateway.consent.live import LiveConsent
from gateway.consent.policy import ConsentFacts, ConsentRefused
from gateway.consent.store import ConsentStore
from gateway.events.bus import EventBus
from gateway.events.types import Envelope, ReplyFinished
from gateway.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(**consent: Any) -> GatewayConfig:
    return parse_config({"consent": consent}, {}, Path("."))


def _setup(tmp_path: Path, **consent: Any
           ) -> tuple[LiveConsent, ConsentStore, list[Envelope], EventBus]:
    bus = EventBus(Metrics())
    seen: list[Envelope] = []
    bus.subscribe(seen.append)
    store = ConsentStore.for_state_dir(tmp_path)
    return LiveConsent(_config(**consent), bus, store, clock=Clock()), store, seen, bus


def _types(seen: list[Envelope]) -> list[str]:
    return [e.type for e in seen if e.type.startswith("consent.")]


async def test_ivr_timeout_declines_and_a_late_digit_changes_nothing(tmp_path: Path) -> None:
    live, store, seen, bus = _setup(tmp_path, ivr_prompt="Press 1", ivr_timeout_s=1)
    live.offered("c-1", "conv", ["customer"], ConsentFacts(channels=("customer",)))
    prompts: list[str] = []

    def say(text: str) -> str:
        prompts.append(text)
        return "r-7"

    live.ask("c-1", say)
    assert prompts == ["Press 1"]
    assert live.call_state("c-1") == {"customer": {"granted": False, "source": None,
                                                   "pending_ivr": True, "withdrawn": False}}
    bus.emit(ReplyFinished(call_id="c-1", reply_id="r-6", played_ms=1))    # not the prompt
    bus.emit(ReplyFinished(call_id="c-1", reply_id="r-7", played_ms=900))
    await asyncio.sleep(1.2)
    assert _types(seen) == ["consent.declined"]
    live.dtmf("c-1", "customer", "1")
    assert _types(seen) == ["consent.declined"]
    assert store.exportable_channels("conv", purpose="asr_training") == frozenset()
    live.close()
    store.close()


async def test_api_grant_withdraw_live_and_refusals(tmp_path: Path) -> None:
    live, store, seen, _bus = _setup(tmp_path)
    live.offered("c-1", "conv", ["agent", "customer"],
                 ConsentFacts(channels=("agent", "customer"),
                              headers=(("X-Consent", "yes;channels=agent"),)))
    assert _types(seen) == ["consent.granted"]
    with pytest.raises(ConsentRefused) as refused:
        live.set("c-2", granted=True, channels=[], purpose=None)
    assert refused.value.status == 404
    (rec,) = live.set("c-1", granted=True, channels=["customer"], purpose=None)
    assert rec.source == "api"
    assert store.exportable_channels("conv", purpose="asr_training") == {"agent", "customer"}
    out = live.withdraw("conv", reason="asked", source="api")
    assert out["grants_withdrawn"] == 2 and out["channels"] == ["agent", "customer"]
    withdrawn = [e for e in seen if e.type == "consent.withdrawn"]
    assert withdrawn[0].call_id == "c-1"
    state = live.call_state("c-1")
    assert state is not None and state["agent"]["withdrawn"] is True
    assert state["agent"]["granted"] is False
    with pytest.raises(ConsentRefused) as refused:
        live.set("c-1", granted=True, channels=[], purpose=None)
    assert refused.value.status == 409
    (declined,) = live.set("c-1", granted=False, channels=["agent"], purpose=None)
    assert not declined.granted
    with pytest.raises(ConsentRefused) as refused:
        live.withdraw("other", reason="x", source="api")
    assert refused.value.status == 404
    live.ended("c-1")
    assert live.call_state("c-1") is None
    assert live.conversation("conv")["withdrawn"] is True
    live.close()
    store.close()


async def test_disabled_decides_nothing_and_refuses_grants(tmp_path: Path) -> None:
    live, store, seen, _bus = _setup(tmp_path, enabled=False)
    live.offered("c-1", "conv", ["customer"],
                 ConsentFacts(channels=("customer",), headers=(("X-Consent", "yes"),)))
    assert _types(seen) == [] and live.call_state("c-1") is None
    with pytest.raises(ConsentRefused) as refused:
        live.set("c-1", granted=True, channels=[], purpose=None)
    assert refused.value.status == 503
    live.close()
    store.close()
