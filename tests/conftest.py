from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.event_files import schema_errors
from tests.gateway_proc import GatewayProcess, base_config, merge

# one real Triton server per test session, shared by tests/triton and the gateway e2e tests
pytest_plugins = ["tests.triton.fixtures"]

# each gateway in a test run gets its own RTP range so parallel/leftover sockets never clash
_rtp_ranges = itertools.count(0)


def _next_rtp_range() -> tuple[int, int]:
    base = 31000 + (next(_rtp_ranges) % 200) * 100
    return base, base + 98


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[GatewayFactory]:
    started: list[GatewayProcess] = []

    def make(extra: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None,
             start: bool = True) -> GatewayProcess:
        workdir = tmp_path / f"gw{len(started)}"
        workdir.mkdir()
        cfg = merge(base_config(workdir, _next_rtp_range()), extra or {})
        gw = GatewayProcess(workdir, cfg, env)
        started.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in started:
        gw.kill()
    errors = [e for gw in started for e in schema_errors(gw.config)[1]]
    if errors:       # every event the daemon wrote must match the committed schema
        pytest.fail("events not matching gateway/events/events.schema.json:\n"
                    + "\n".join(errors), pytrace=False)


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> GatewayProcess:
    return gateway_factory()
