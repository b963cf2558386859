"""Gateway._bounded: a shutdown step that hangs is given up after SHUTDOWN_STEP_S and
logged by name; one that finishes in time is awaited to the end."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import server


class _Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


async def test_a_hung_step_is_abandoned_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "SHUTDOWN_STEP_S", 0.05)
    log = _Log()
    hang = asyncio.get_running_loop().create_future()
    bounded = server.Gateway._bounded(SimpleNamespace(_log=log), "triton", hang)  # type: ignore[arg-type]
    await asyncio.wait_for(bounded, 5.0)  # an unbounded step fails here instead of hanging
    assert log.warnings == [("gateway.shutdown_step_timeout",
                             {"part": "triton", "timeout_s": 0.05})]
    assert hang.cancelled()


async def test_a_step_that_finishes_is_awaited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "SHUTDOWN_STEP_S", 1.0)
    log, done = _Log(), []

    async def step() -> None:
        await asyncio.sleep(0.01)
        done.append(True)

    await server.Gateway._bounded(SimpleNamespace(_log=log), "http", step())  # type: ignore[arg-type]
    assert done == [True] and log.warnings == []
