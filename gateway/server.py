"""Process lifecycle, shaped like uvicorn's: capture signals, start, serve, drain, shut down.

:meth:`Gateway.parts` is the one list of the daemon's parts, in start order (events, the
gateway's own tasks, the Triton health check, HTTP, TTS, ASR, batch jobs, SIP with the
calls, registrations);
:class:`Lifecycle` starts them in that order and stops the started ones in reverse, each
stop step bounded by ``SHUTDOWN_STEP_S``. A part that fails to start stops the ones already
started. Every background task has an owner that cancels or awaits it at stop: the
parts their own, the gateway its loop monitor and watchdog (part ``tasks``), the signal
handler its reloads.

SIGTERM/SIGINT: drain (new INVITEs and OPTIONS get 503), give live calls
``sip.drain_grace_s``, then BYE them; then the parts stop in reverse (unregister, SIP and
the calls, batch jobs, ASR, TTS, HTTP, Triton health, tasks, events: flushed last), exit 0.
A second SIGTERM/SIGINT forces exit. SIGHUP reloads what can change live.

Layer: shell (the process: it wires every part and owns their start and stop order).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from gateway import __version__, logs
from gateway.analytics.files import SummaryFilesSink
from gateway.asr.stream import AsrHub
from gateway.asr.versions import prepare_version
from gateway.batch.jobs import BatchJobs
from gateway.batch.jobspec import BatchRefused
from gateway.calls import CallManager
from gateway.config import (
    ConfigError,
    GatewayConfig,
    load_config,
    merge_live,
    redacted_dict,
    reload_diff,
    startup_summary,
)
from gateway.consent.policy import SOURCE_API
from gateway.consent.store import ConsentStore, ConsentStoreError
from gateway.events.bus import EventBus
from gateway.events.sinks import Sink, build_sinks
from gateway.events.types import Envelope
from gateway.http_api import HttpServer
from gateway.logs import configure_logging, get_logger
from gateway.metrics import Metrics
from gateway.processors import build_processors, reconfigures_processors
from gateway.sdnotify import Notifier
from gateway.sip.service import SipService
from gateway.triton_health import TritonHealth
from gateway.tts.client import TtsClient
from gateway.tts.playout import Reply

EXIT_FORCED = 1
SHUTDOWN_STEP_S = 5.0

Step = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Part:
    """One long-lived part of the daemon: ``start`` in list order, ``stop`` in reverse."""

    name: str
    start: Step | None = None
    stop: Step | None = None


def _sync(fn: Callable[[], None]) -> Step:
    async def step() -> None:
        fn()
    return step


async def _bounded_step(log: Any, part: str, step: Awaitable[None]) -> None:
    """One stop step, given at most SHUTDOWN_STEP_S: a stuck close (a gRPC channel, a
    lingering HTTP connection) must not keep the process from exiting; one that raises is
    logged and the next part still stops."""
    try:
        await asyncio.wait_for(step, SHUTDOWN_STEP_S)
    except TimeoutError:
        log.warning("gateway.shutdown_step_timeout", part=part, timeout_s=SHUTDOWN_STEP_S)
    except Exception as exc:
        log.error("gateway.shutdown_step_failed", part=part, error=repr(exc))


class Lifecycle:
    """Starts parts in order and stops the started ones in reverse (each step bounded)."""

    def __init__(self, parts: Sequence[Part], log: Any) -> None:
        self.parts = tuple(parts)
        self._started: list[Part] = []
        self._log = log

    @property
    def started(self) -> tuple[str, ...]:
        return tuple(p.name for p in self._started)

    async def start(self) -> None:
        """Start every part; if one fails (logged as ``gateway.start_failed`` with its
        name), the ones already started are stopped in reverse and the error goes on."""
        for part in self.parts:
            try:
                if part.start is not None:
                    await part.start()
            except BaseException as exc:
                if isinstance(exc, Exception):
                    self._log.error("gateway.start_failed", part=part.name, error=str(exc))
                await self.stop()
                raise
            self._started.append(part)

    async def stop(self) -> None:
        while self._started:
            part = self._started.pop()
            if part.stop is not None:
                await _bounded_step(self._log, part.name, part.stop())


class Gateway:
    """Owns every long-lived part of the daemon and the order they start and stop in."""

    def __init__(self, config: GatewayConfig, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.events = EventBus(self.metrics, build_processors(config))
        self.triton = TritonHealth(config.triton, self.metrics)
        self.http = HttpServer(self, config.http)
        self.asr = (AsrHub(config.triton, self.metrics, config.triton.buffer_s)
                    if config.triton.asr_enabled else None)
        self.tts = TtsClient(config.triton) if config.tts.enabled else None
        self._log = get_logger("gateway")
        self.consent_store = self._open_consent(config)
        self.calls = CallManager(config, self.metrics, self.events, self.asr, self.tts,
                                 self.consent_store)
        self.sip = SipService(config, self.metrics, self.events, self.calls)
        self.batch = (BatchJobs(config, self.asr, live_calls=lambda: self.calls.active)
                      if config.batch.enabled and self.asr is not None else None)
        self.draining = False
        self.calls_dir = config.storage.state_dir / "calls"
        self._tasks: list[asyncio.Task[None]] = []
        self.lifecycle = Lifecycle(self.parts(), self._log)

    def parts(self) -> list[Part]:
        """Every part in start order; shutdown stops them in reverse. HTTP starts before SIP
        so that it stops after it: WebSocket clients see the last calls end."""
        parts = [
            Part("consent", None, _sync(self._close_consent)),     # stops last
            Part("events", _sync(self._start_events), self.events.close),
            Part("tasks", _sync(self._start_tasks), self._stop_tasks),
            Part("triton", _sync(self.triton.start), self.triton.close),
            Part("http", self.http.start, self.http.stop),
        ]
        if self.tts is not None:
            parts.append(Part("tts", None, self.tts.close))
        if self.asr is not None:
            parts.append(Part("asr", _sync(self.asr.start), self.asr.close))
        if self.batch is not None:           # on the ASR hub: stops before it
            parts.append(Part("batch", self.batch.start, self.batch.stop))
        return [*parts,
                Part("sip", self._start_sip, self.sip.stop),   # with its call side
                Part("registrations", self._announce, self.sip.unregister_all)]

    async def start(self) -> None:
        await self.lifecycle.start()

    def _open_consent(self, config: GatewayConfig) -> ConsentStore | None:
        """``<state_dir>/consent.sqlite3``; without it no decision is kept (so none exported)."""
        try:
            return ConsentStore.for_state_dir(config.storage.state_dir)
        except ConsentStoreError as exc:
            self._log.error("consent.store_unavailable", error=str(exc))
            return None

    def _close_consent(self) -> None:
        if self.consent_store is not None:
            self.consent_store.close()

    async def _start_sip(self) -> None:
        """The calls (media tick) first, then the SIP listeners. SipService.stop stops its
        call side (CallSide.stop) before closing the transports, so the calls are part of
        this step; here too, a SIP start that fails stops the calls again."""
        self.calls.start()
        try:
            await self.sip.start()
        except BaseException:
            await _bounded_step(self._log, "calls", self.calls.stop())
            raise

    def _start_events(self) -> None:
        self.events.start(self._sinks(self.config))

    def _sinks(self, config: GatewayConfig) -> list[Sink]:
        """The configured sinks, the per-call files, and the conversation summaries' files
        (beside the recording, else in ``<state_dir>/conversations``)."""
        return [*build_sinks(config.events.sinks, self.calls_dir),
                SummaryFilesSink(config.storage.state_dir / "conversations")]

    async def _announce(self) -> None:
        """Everything listens: say so, wait for Triton's first check, register, READY=1."""
        self._log.info("gateway.started", version=__version__, sip=self.sip.listening(),
                       http_port=self.http.port, **startup_summary(self.config))
        self._log.debug("gateway.config", config=redacted_dict(self.config, resolve_paths=True))
        triton_ok = await self.triton.wait_first_check(self.config.triton.connect_timeout_s + 1)
        self.sip.start_registrations()
        self.notifier.ready(self.status_line(triton_ok))

    def _start_tasks(self) -> None:
        if self.notifier.watchdog_interval_s is not None and self.config.systemd.watchdog:
            self._tasks.append(asyncio.create_task(self._watchdog(), name="watchdog"))
        self._tasks.append(asyncio.create_task(self._loop_monitor(), name="loop monitor"))

    async def _stop_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def status_line(self, triton_ok: bool | None = None) -> str:
        ready = self.triton.state.ready if triton_ok is None else triton_ok
        state = "draining" if self.draining else "serving"
        return f"{state}; {self.sip.active_calls} active calls; triton {'up' if ready else 'down'}"

    async def _loop_monitor(self) -> None:
        """Event-loop lag: how late a 100 ms sleep wakes up (the media path's health)."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.1)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - before - 0.1))
            if self.asr is not None:
                self.metrics.asr_buffered.set(self.asr.buffered_s())

    async def _watchdog(self) -> None:
        """Pings from the event loop itself: a blocked loop stops the pings."""
        interval = self.notifier.watchdog_interval_s or 1.0
        while True:
            self.notifier.watchdog()
            self.notifier.status(self.status_line())
            await asyncio.sleep(interval)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        regs = self.sip.registration_states()
        triton_needed = self.config.triton.required_for_ready
        sip_ok, sip_detail = self.sip.health()
        checks: dict[str, Any] = {
            "draining": self.draining,
            "sip_listening": self.sip.is_listening(),
            "sip_dispatch": sip_detail,
            "registrations": regs,
            "triton": {"ready": self.triton.state.ready, "reason": self.triton.state.reason,
                       "required": triton_needed},
        }
        ready = (not self.draining and self.sip.is_listening() and sip_ok and all(regs.values())
                 and (self.triton.state.ready or not triton_needed))
        return ready, checks

    def calls_summary(self) -> list[dict[str, Any]]:
        return self.sip.calls_summary()

    def call_summary(self, call_id: str) -> dict[str, Any] | None:
        return self.sip.call_summary(call_id)

    async def hangup_call(self, call_id: str, reason: str) -> bool:
        return self.sip.hangup(call_id, reason)

    # The rest of http_api.GatewayControl (readiness, summaries and hangup_call are above).
    @property
    def max_text_chars(self) -> int:
        return self.config.tts.max_text_chars

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    def say(self, call_id: str, text: str, *, barge_in: bool, source: str) -> Reply:
        return self.calls.say(call_id, text, barge_in=barge_in, source=source)

    def set_secure(self, call_id: str, secure: bool, *, by: str) -> bool:
        return self.calls.set_secure(call_id, secure, by=by)

    def set_consent(self, call_id: str, *, granted: bool, channels: Sequence[str],
                    purpose: str | None) -> list[dict[str, Any]]:
        records = self.calls.consent.set(call_id, granted=granted, channels=channels,
                                         purpose=purpose, source=SOURCE_API)
        return [r.to_dict() for r in records]

    def withdraw_consent(self, conversation_id: str, *, reason: str) -> dict[str, Any]:
        return self.calls.consent.withdraw(conversation_id, reason=reason, source=SOURCE_API)

    def conversation_consent(self, conversation_id: str) -> dict[str, Any]:
        return self.calls.consent.conversation(conversation_id)

    def subscribe(self, listener: Callable[[Envelope], object]) -> None:
        self.events.subscribe(listener)

    def unsubscribe(self, listener: Callable[[Envelope], object]) -> None:
        self.events.unsubscribe(listener)

    def _batch_jobs(self) -> BatchJobs:
        if self.batch is None:
            raise BatchRefused(503, "batch jobs are off: set [batch] root in the config")
        return self.batch

    async def create_transcription(self, body: Any) -> dict[str, Any]:
        return await self._batch_jobs().create(body)

    async def transcriptions(self, status: str | None) -> list[dict[str, Any]]:
        return await self._batch_jobs().jobs(status)

    async def transcription(self, job_id: str) -> dict[str, Any] | None:
        return await self._batch_jobs().job(job_id)

    async def delete_transcription(self, job_id: str) -> tuple[int, dict[str, Any]] | None:
        return await self._batch_jobs().delete(job_id)

    async def reload(self, path: Path) -> None:
        self.notifier.reloading()
        try:
            new = load_config(path)
        except ConfigError as exc:
            self._log.error("config.reload_refused", path=str(path), errors=list(exc.errors))
            self.notifier.status(self.status_line())
            self.notifier.notify("READY=1")
            return
        new, failed = await self._reload_asr_version(new)
        plan = reload_diff(self.config, new)
        for refused in plan.refused:
            self._log.warning("config.reload_key_refused", detail=refused)
        if plan.changed:
            await self._apply_reload(merge_live(self.config, new), plan.changed)
        self._log.info("config.reloaded", changed=list(plan.changed), refused=list(plan.refused),
                       **({"failed": failed} if failed else {}))
        self.notifier.notify("READY=1", f"STATUS={self.status_line()}")

    async def _reload_asr_version(self, new: GatewayConfig) -> tuple[GatewayConfig, list[str]]:
        """A changed ``triton.asr_model_version`` (or ``""``, latest, on every reload): Triton
        loads the model again and the version is used for new sequences once it is READY.
        If it is not, the running version stays (also in the config, so the next SIGHUP
        tries again) and the reload reports the key under ``failed``."""
        wanted, current = new.triton.asr_model_version, self.config.triton.asr_model_version
        if self.asr is None or (wanted and wanted == current):
            return new, []
        model = self.config.triton.asr_model
        ready = await prepare_version(self.config.triton.url, model, wanted)
        if ready.error is None:
            self.asr.use_version(ready.version, latest=not wanted)
            self.triton.version = wanted
            self._log.info("asr.model_version_ready", model=model, version=ready.version,
                           requested=wanted or "latest")
            return new, []
        asked = wanted != current          # else: latest looked for a new version folder
        (self._log.error if asked else self._log.warning)(
            "asr.model_version_failed", model=model, requested=wanted or "latest",
            serving=self.asr.version, reason=ready.error)
        kept = dataclasses.replace(new.triton, asr_model_version=current)
        failed = [f"triton.asr_model_version: {ready.error}"] if asked else []
        return dataclasses.replace(new, triton=kept), failed

    async def _apply_reload(self, new: GatewayConfig, changed: tuple[str, ...]) -> None:
        if any(c.startswith("logging") for c in changed):
            configure_logging(new.logging.level, new.logging.format)
        if reconfigures_processors(changed):
            self._rebuild_processors(new)
        if any(c.startswith("events") for c in changed):
            await self.events.replace_sinks(self._sinks(new))
        self.sip.apply_config(new)
        self.calls.apply_config(new)
        self.config = new          # restart-only keys were kept as they were by merge_live

    def _rebuild_processors(self, new: GatewayConfig) -> None:
        """Built first, swapped in one step between two events; a failed build keeps the
        processors running now."""
        try:
            processors = build_processors(new, self.events.processors)
        except Exception as exc:
            self._log.error("events.processors_rebuild_failed", error=repr(exc))
            return
        self.events.replace_processors(processors)
        self._log.info("events.processors_rebuilt", processors=[p.name for p in processors])

    async def shutdown(self) -> None:
        """Drain (when SIP started), then stop the started parts in reverse."""
        if "sip" in self.lifecycle.started:
            await self._drain()
        await self.lifecycle.stop()
        self._log.info("gateway.stopped")
        self.notifier.close()

    async def _drain(self) -> None:
        self.draining = True
        self.metrics.draining.set(1)
        self.notifier.stopping(self.status_line())
        grace = self.config.sip.drain_grace_s
        self._log.info("gateway.draining", active_calls=self.sip.active_calls, grace_s=grace)
        self.sip.set_draining(True)
        await self.sip.wait_calls_ended(grace)
        await self.sip.hangup_all("shutdown")

    async def _bounded(self, part: str, step: Awaitable[None]) -> None:
        await _bounded_step(self._log, part, step)


class _Signals:
    """First SIGTERM/SIGINT asks for a graceful stop, the second forces exit."""

    def __init__(self, gateway: Gateway, config_path: Path | None) -> None:
        self.stop = asyncio.Event()
        self._gateway = gateway
        self._path = config_path
        self._log = get_logger("signals")
        self._tasks: set[asyncio.Task[None]] = set()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    def _on_stop(self, sig: signal.Signals) -> None:
        """Act first, log second: the stop must happen even if the log line cannot be written."""
        if self.stop.is_set():
            try:
                self._log.warning("shutdown.forced", signal=sig.name)
                logs.flush()
            finally:
                os._exit(EXIT_FORCED)
        self.stop.set()
        self._log.info("shutdown.requested", signal=sig.name)

    def _on_hup(self) -> None:
        if self._path is None:
            self._log.warning("config.reload_refused", reason="no config file")
            return
        if self.stop.is_set():
            self._log.warning("config.reload_refused", reason="shutting down")
            return
        task = asyncio.create_task(self._gateway.reload(self._path), name="reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def finish(self) -> None:
        """A reload in flight ends (bounded) before the parts stop under it."""
        pending = list(self._tasks)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=SHUTDOWN_STEP_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)


async def serve(config: GatewayConfig, config_path: Path | None) -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(logs.loop_exception_handler)
    gateway = Gateway(config)
    signals = _Signals(gateway, config_path)
    signals.install(loop)
    try:
        await gateway.start()        # logs gateway.start_failed, stops what had started
    except OSError:
        await gateway.shutdown()     # nothing left to stop: gateway.stopped, notifier closed
        return 1
    await signals.stop.wait()
    await signals.finish()
    await gateway.shutdown()
    return 0


def run(config_path: Path, *, triton_venv: Path | None = None,
        model_repository: Path = Path("triton_models"),
        triton_ports: tuple[int, int] = (8000, 8002)) -> int:
    """``triton_ports``: the local Triton's HTTP and metrics ports (0 = a free port)."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"{config_path}: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(config.logging.level, config.logging.format)
    if triton_venv is None:
        return _serve(config, config_path)
    return _run_with_triton(config, config_path, triton_venv, model_repository, triton_ports)


def _serve(config: GatewayConfig, config_path: Path) -> int:
    try:
        return uvloop.run(serve(config, config_path))
    finally:
        # free what reference cycles still hold (a call's media, gRPC state) while the
        # extension modules are alive: at interpreter exit nanobind reports them as leaks
        gc.collect()


def _run_with_triton(config: GatewayConfig, config_path: Path, venv: Path,
                     repository: Path, ports: tuple[int, int]) -> int:
    """The demo shape (make run): a local Triton with the configured models, then the gateway;
    Ctrl-C stops the gateway (drain) and then Triton."""
    from gateway.triton_launcher import TritonLaunchError, TritonProcess

    log = get_logger("triton")
    models = [config.triton.asr_model] + ([config.triton.tts_model] if config.tts.enabled else [])
    workdir = config.storage.state_dir / "triton"
    host, _sep, port = config.triton.url.rpartition(":")
    http_port, metrics_port = (p or _free_port(host) for p in ports)
    triton = TritonProcess(repository, venv=venv, workdir=workdir, http_port=http_port,
                           grpc_port=int(port), metrics_port=metrics_port, models=models,
                           log_path=workdir / "triton.log", host=host.strip("[]"))
    log.info("triton.starting", models=models, log=str(workdir / "triton.log"),
             grpc_port=int(port), http_port=http_port, metrics_port=metrics_port)
    try:
        triton.start(300)
    except (TritonLaunchError, KeyboardInterrupt) as exc:
        log.error("triton.start_failed", error=str(exc)[-2000:])
        triton.stop()
        return 1
    log.info("triton.started", grpc=triton.grpc_url)
    try:
        return _serve(config, config_path)
    finally:
        triton.stop()
        log.info("triton.stopped")


def _free_port(host: str) -> int:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host.strip("[]"), 0))
        return int(s.getsockname()[1])
