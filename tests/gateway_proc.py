"""Runs the real daemon (``python -m gateway run``) as a child process for end-to-end tests."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LogLine = dict[str, Any]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Tiny TOML writer for test configs: tables, arrays of tables, scalars and lists."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in data.items()
               if not isinstance(v, Mapping) and not _is_table_list(v)]
    parts = [("[" + prefix + "]\n" if prefix and scalars else "") + "\n".join(scalars)]
    for k, v in data.items():
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, Mapping):
            parts.append(to_toml(v, name))
        elif _is_table_list(v):
            for item in v:
                parts.append(f"[[{name}]]\n" + "\n".join(
                    f"{ik} = {_toml_value(iv)}" for ik, iv in item.items()))
    return "\n\n".join(p for p in parts if p) + "\n"


def _is_table_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def base_config(tmp: Path, rtp_range: tuple[int, int]) -> dict[str, Any]:
    return {
        "sip": {"bind_address": "127.0.0.1", "port": 0, "drain_grace_s": 2.0},
        "rtp": {"bind_address": "127.0.0.1", "port_min": rtp_range[0], "port_max": rtp_range[1]},
        "http": {"bind_address": "127.0.0.1", "port": 0},
        "triton": {"url": "127.0.0.1:9", "connect_timeout_s": 0.5, "health_interval_s": 1.0},
        "logging": {"level": "debug", "format": "json"},
        "events": {"sinks": [{"type": "log"},
                             {"type": "jsonl", "path": str(tmp / "events.jsonl")}]},
        "storage": {"state_dir": str(tmp / "state")},
    }


class GatewayProcess:
    def __init__(self, tmp: Path, config: Mapping[str, Any], env: Mapping[str, str] | None = None
                 ) -> None:
        self.tmp = tmp
        self.config_path = tmp / "gateway.toml"
        self.config_path.write_text(to_toml(config))
        self.config = dict(config)
        self._env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.lines: list[LogLine] = []
        self.raw: list[str] = []
        self._q: queue.Queue[LogLine] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None
        self.sip_port = 0
        self.http_port = 0

    def start(self, timeout_s: float = 20.0, args: Sequence[str] = ()) -> GatewayProcess:
        """``args``: more ``run`` options, e.g. ``["--triton-venv", DIR]``."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(self.config_path), *args],
            cwd=REPO, env=self._env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._reader, daemon=True).start()
        started = self.wait_log("gateway.started", timeout_s)
        self.sip_port = int(started["sip"]["port"])
        self.http_port = int(started["http_port"])
        return self

    def _reader(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line)
            try:
                item = json.loads(line)
            except ValueError:
                item = {"event": "non_json", "text": line.rstrip()}
            self.lines.append(item)
            self._q.put(item)

    def wait_log(self, event: str, timeout_s: float = 10.0,
                 where: Callable[[LogLine], bool] = lambda _l: True) -> LogLine:
        for item in self.lines:
            if item.get("event") == event and where(item):
                return item
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                item = self._q.get(timeout=0.1)
            except queue.Empty:
                if self.proc is not None and self.proc.poll() is not None and self._q.empty():
                    break
                continue
            if item.get("event") == event and where(item):
                return item
        raise AssertionError(f"no log event {event!r} within {timeout_s}s; last lines:\n"
                             + "".join(self.raw[-40:]))

    def events(self, type_: str) -> list[LogLine]:
        return [x for x in self.lines if x.get("event") == type_]

    def http(self, path: str, method: str = "GET", token: str | None = None,
             body: bytes | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", method=method,
                                     data=body)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
