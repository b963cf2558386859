"""The Gateway's lifecycle: parts start in list order and stop in reverse, each stop step
bounded; a part that fails to start stops the ones already started; every task the
gateway itself starts is cancelled and awaited at stop."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway import server
from gateway.config import GatewayConfig
from gateway.server import Gateway, Lifecycle, Part


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.lines.append(("error", event, fields))


class _Fake:
    """A part that records its start and stop in a shared journal."""

    def __init__(self, name: str, journal: list[str], *, fail_start: bool = False,
                 hang_stop: bool = False, fail_stop: bool = False) -> None:
        self.name, self.journal = name, journal
        self.fail_start, self.hang_stop, self.fail_stop = fail_start, hang_stop, fail_stop
        self.stop_cancelled = False

    async def start(self) -> None:
        await asyncio.sleep(0)
        if self.fail_start:
            raise OSError(98, f"{self.name}: address already in use")
        self.journal.append(f"start {self.name}")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} broke while stopping")
        if self.hang_stop:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.stop_cancelled = True
                raise

    def part(self) -> Part:
        return Part(self.name, self.start, self.stop)


def _lifecycle(fakes: list[_Fake]) -> tuple[Lifecycle, _Log]:
    log = _Log()
    return Lifecycle([f.part() for f in fakes], log), log


async def test_parts_start_in_order_and_stop_in_reverse() -> None:
    journal: list[str] = []
    life, log = _lifecycle([_Fake(n, journal) for n in ("events", "http", "asr", "sip")])
    await life.start()
    assert life.started == ("events", "http", "asr", "sip")
    await life.stop()
    assert journal == ["start events", "start http", "start asr", "start sip",
                       "stop sip", "stop asr", "stop http", "stop events"]
    assert not life.started and log.lines == []
    await life.stop()                                   # a second stop stops nothing again
    assert len(journal) == 8


async def test_a_part_that_fails_to_start_stops_the_ones_already_started() -> None:
    journal: list[str] = []
    fakes = [_Fake("events", journal), _Fake("http", journal), _Fake("sip", journal,
             fail_start=True), _Fake("registrations", journal)]
    life, log = _lifecycle(fakes)
    with pytest.raises(OSError, match="address already in use"):
        await life.start()
    assert journal == ["start events", "start http", "stop http", "stop events"]
    assert life.started == ()
    assert log.lines == [("error", "gateway.start_failed",
                          {"part": "sip", "error": "[Errno 98] sip: address already in use"})]


async def test_a_hung_stop_is_bounded_and_the_next_parts_still_stop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "SHUTDOWN_STEP_S", 0.1)
    journal: list[str] = []
    hung = _Fake("asr", journal, hang_stop=True)
    life, log = _lifecycle([_Fake("events", journal), hung, _Fake("sip", journal,
                                                                  fail_stop=True)])
    await life.start()
    await asyncio.wait_for(life.stop(), 10.0)      # an unbounded step would hang here
    assert journal[3:] == ["stop sip", "stop asr", "stop events"]
    assert hung.stop_cancelled
    assert [(level, event, f["part"]) for level, event, f in log.lines] == [
        ("error", "gateway.shutdown_step_failed", "sip"),
        ("warning", "gateway.shutdown_step_timeout", "asr")]


async def test_a_cancelled_start_stops_what_had_started() -> None:
    journal: list[str] = []
    gate = asyncio.Event()

    async def waits() -> None:
        await gate.wait()

    life = Lifecycle([_Fake("events", journal).part(), Part("slow", waits)], _Log())
    task = asyncio.create_task(life.start())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert journal == ["start events", "stop events"]


def _config(asr: bool, tts: bool) -> GatewayConfig:
    base = GatewayConfig()
    return dataclasses.replace(base, triton=dataclasses.replace(base.triton, asr_enabled=asr),
                               tts=dataclasses.replace(base.tts, enabled=tts))


async def test_the_gateway_lists_its_parts_in_start_order() -> None:
    """Reversed, this is the shutdown order: unregister, SIP and its calls, ASR, TTS, HTTP
    (after SIP: WebSocket clients see the last calls end), Triton health, tasks, events, and
    the consent store last (the calls' last consent records are written before it closes)."""
    assert [p.name for p in Gateway(_config(asr=True, tts=True)).parts()] == [
        "consent", "events", "tasks", "triton", "http", "tts", "asr", "sip", "registrations"]
    assert [p.name for p in Gateway(_config(asr=False, tts=False)).parts()] == [
        "consent", "events", "tasks", "triton", "http", "sip", "registrations"]


async def test_the_gateways_own_tasks_are_cancelled_and_awaited_at_stop() -> None:
    gw = Gateway(_config(asr=False, tts=False))
    tasks = next(p for p in gw.parts() if p.name == "tasks")
    assert tasks.start is not None and tasks.stop is not None
    await tasks.start()
    running = list(gw._tasks)
    assert running and not any(t.done() for t in running)
    await tasks.stop()
    assert all(t.cancelled() for t in running) and gw._tasks == []


async def test_a_taken_sip_port_stops_what_had_started_and_leaves_nothing_running(
        tmp_path: Path) -> None:
    """In-process, real sockets: HTTP is up when SIP fails to bind; the start error goes
    out, HTTP's port is closed again and the gateway's tasks are gone."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    base = _config(asr=False, tts=False)
    cfg = dataclasses.replace(
        base, sip=dataclasses.replace(base.sip, bind_address="127.0.0.1",
                                      port=holder.getsockname()[1], transports=("udp",)),
        http=dataclasses.replace(base.http, port=0),
        storage=dataclasses.replace(base.storage, state_dir=tmp_path))
    gw = Gateway(cfg)
    try:
        with capture_logs() as logs, pytest.raises(OSError):
            await asyncio.wait_for(gw.start(), 30)
    finally:
        holder.close()
    assert gw.lifecycle.started == () and gw._tasks == []
    failed = [x for x in logs if x["event"] == "gateway.start_failed"]
    assert [x["part"] for x in failed] == ["sip"]
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", gw.http.port)
    assert not [x for x in logs if x["event"] == "gateway.shutdown_step_timeout"]
    mine = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert not [t.get_name() for t in mine if not t.done()]


async def test_a_reload_that_changes_processor_keys_rebuilds_them_between_events(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import processors
    from gateway.events.processing import ProcessorBase

    class Named(ProcessorBase):
        def __init__(self, name: str) -> None:
            self.name = name

    built: list[tuple[GatewayConfig, tuple[str, ...]]] = []

    def build(config: GatewayConfig, previous: Any = ()) -> list[Any]:
        built.append((config, tuple(p.name for p in previous)))
        if len(built) == 3:
            raise ValueError("broken rule file")
        return [Named(f"gen-{len(built)}")]

    monkeypatch.setattr(server, "build_processors", build)
    monkeypatch.setattr(processors, "PROCESSOR_CONFIG_KEYS", ("bot",))
    gw = Gateway(_config(asr=False, tts=False))
    monkeypatch.setattr(gw.sip, "apply_config", lambda config: None)   # not started here
    monkeypatch.setattr(gw.calls, "apply_config", lambda config: None)
    new = dataclasses.replace(gw.config, bot=dataclasses.replace(gw.config.bot, retries=1))
    with capture_logs() as logs:
        assert [p.name for p in gw.events.processors] == ["gen-1"]  # built at construction
        await gw._apply_reload(new, ("bot.retries",))
        assert [p.name for p in gw.events.processors] == ["gen-2"]
        await gw._apply_reload(new, ("bot.retries",))             # the build fails
        assert [p.name for p in gw.events.processors] == ["gen-2"]  # the old ones stay
        await gw._apply_reload(new, ("tts.voice",))                # not a processor key
    assert [prev for _c, prev in built] == [(), ("gen-1",), ("gen-2",)]
    assert built[1][0] is new
    assert [x["event"] for x in logs if x["event"].startswith("events.")] == [
        "events.processors_rebuilt", "events.processors_rebuild_failed"]


async def test_a_reload_in_flight_ends_before_shutdown_and_a_late_sighup_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(server, "SHUTDOWN_STEP_S", 0.1)
    started, cancelled = asyncio.Event(), asyncio.Event()

    class _Gw:
        async def reload(self, path: Path) -> None:
            started.set()
            try:
                await asyncio.Event().wait()                 # a reload that hangs
            except asyncio.CancelledError:
                cancelled.set()
                raise

    signals = server._Signals(_Gw(), tmp_path / "gateway.toml")  # type: ignore[arg-type]
    signals._on_hup()
    await asyncio.wait_for(started.wait(), 5)
    signals.stop.set()
    with capture_logs() as logs:
        signals._on_hup()                                    # during shutdown: refused
    assert [(x["event"], x["reason"]) for x in logs] == [
        ("config.reload_refused", "shutting down")]
    await asyncio.wait_for(signals.finish(), 5)              # bounded, then cancelled
    assert cancelled.is_set() and not signals._tasks
