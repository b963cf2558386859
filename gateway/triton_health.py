"""Watches Triton's readiness (server + ASR model) over gRPC for /readyz and metrics.

An unreachable Triton is a state, never an exception that reaches a call: the
gateway keeps answering calls and reports ``triton.unavailable`` once per change.

Layer: shell.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tritonclient.grpc import aio as grpcclient

from gateway.config import TritonConfig
from gateway.logs import get_logger
from gateway.metrics import Metrics


@dataclass(slots=True)
class TritonState:
    ready: bool = False
    checked: bool = False
    reason: str = "not checked yet"


class TritonHealth:
    def __init__(self, config: TritonConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self.version = config.asr_model_version  # the one new calls use (a reload changes it)
        self.state = TritonState()
        self._log = get_logger("triton")
        self._client: grpcclient.InferenceServerClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_check = asyncio.Event()

    def start(self) -> None:
        self._client = grpcclient.InferenceServerClient(url=self._config.url)
        self._task = asyncio.create_task(self._run(), name="triton health")

    async def wait_first_check(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._first_check.wait(), timeout_s)
        except TimeoutError:
            return False
        return self.state.ready

    async def check_once(self) -> TritonState:
        assert self._client is not None
        timeout = self._config.connect_timeout_s
        try:
            # liveness, not readiness: one optional model failing to load makes Triton
            # report "not ready" for good while the models we use serve normally
            server_ready = await asyncio.wait_for(
                self._client.is_server_live(client_timeout=timeout), timeout + 0.5)
            model_ready = server_ready and await asyncio.wait_for(
                self._client.is_model_ready(
                    self._config.asr_model, self.version,
                    client_timeout=timeout), timeout + 0.5)
        except Exception as exc:  # grpc errors, timeouts, DNS: all mean "not ready"
            return TritonState(False, True, f"unreachable: {type(exc).__name__}: {exc}"[:300])
        if not server_ready:
            return TritonState(False, True, "server not live")
        if not model_ready:
            return TritonState(False, True, f"model {self._config.asr_model} not ready")
        return TritonState(True, True, "ready")

    def _record(self, new: TritonState) -> None:
        if new.ready != self.state.ready or not self.state.checked:
            if new.ready:
                self._log.info("triton.ready", url=self._config.url, model=self._config.asr_model)
            else:
                self._log.warning("triton.unavailable", url=self._config.url, reason=new.reason)
        if not new.ready:
            self._metrics.triton_errors.labels(kind="health").inc()
        self.state = new
        self._metrics.triton_ready.set(1 if new.ready else 0)
        self._first_check.set()

    async def _run(self) -> None:
        while True:
            self._record(await self.check_once())
            await asyncio.sleep(self._config.health_interval_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
