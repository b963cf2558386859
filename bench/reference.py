"""The pjsua2 reference receiver (bench/pjsua_sink.py) as a bounded child process."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tests.peers.ports import free_udp_port

SINK_SCRIPT = Path(__file__).resolve().parent / "pjsua_sink.py"
MAX_CALLS = 4
_STOP_TIMEOUT_S = 10.0


class PjsuaSinkError(RuntimeError):
    """The reference receiver did not start or did not answer in time."""


class PjsuaSink:
    """``with PjsuaSink(...) as sink``: started, listening on ``sink.port``; stopped after."""

    def __init__(self, workdir: Path, timeout_s: float) -> None:
        self.port = free_udp_port()
        self.timeout_s = timeout_s
        self.workdir = workdir
        self.events: list[dict[str, Any]] = []
        self._q: queue.Queue[dict[str, Any]] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None

    def start(self, ready_timeout_s: float = 15.0) -> PjsuaSink:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stderr = (self.workdir / "pjsua.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(SINK_SCRIPT), "--port", str(self.port),
             "--timeout-s", f"{self.timeout_s:g}"],
            stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._reader, args=(self.proc.stdout,), daemon=True).start()
        self.wait_for("started", ready_timeout_s)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise PjsuaSinkError("the reference receiver was not started")
        return self.proc.pid

    def _reader(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            self.events.append(item)
            self._q.put(item)

    def count(self, event: str) -> int:
        return sum(1 for e in self.events if e.get("event") == event)

    def wait_for(self, event: str, timeout_s: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count(event) < count:
            if time.monotonic() >= deadline or (self.proc and self.proc.poll() is not None):
                raise PjsuaSinkError(f"pjsua sink: {self.count(event)}/{count} {event!r} "
                                     f"events within {timeout_s} s")
            try:
                self._q.get(timeout=0.1)
            except queue.Empty:
                continue

    def frames_read(self) -> int:
        return sum(int(e.get("frames", 0)) for e in self.events if e.get("event") == "ended")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(_STOP_TIMEOUT_S)
        if self._stderr is not None:
            self._stderr.close()

    def __enter__(self) -> PjsuaSink:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
