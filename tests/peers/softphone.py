"""Run ``pjsua_phone.py`` as a subprocess and follow its JSON events.

The phone process never shares pytest's interpreter (pjsua2 threads abort on
unknown Python threads). A reader thread here only reads the pipe.

Also: the WAV helpers the phone's ``--play``/``--record`` files need.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from tests.peers.ports import LOOPBACK, free_udp_port, free_udp_port_pair

PHONE_SCRIPT = Path(__file__).with_name("pjsua_phone.py")
PHONE_RATE_HZ = 8000
_KILL_GRACE_S = 5.0
_EOF = {"event": "__eof__"}


class SoftphoneError(RuntimeError):
    """The phone did not produce an expected event in time (message has its logs)."""


@dataclass(frozen=True, slots=True)
class PhoneOptions:
    """Command-line options of pjsua_phone.py (see its --help)."""

    registrar: str | None = None
    user: str = "pjsua"
    password: str = ""
    domain: str = LOOPBACK
    call: str | None = None
    answer: bool = False
    register_only: bool = False
    answer_code: int = 200
    answer_after_s: float = 0.0
    play: Path | None = None
    record: Path | None = None
    duration_s: float = 0.0
    codec: str | None = None
    vad: bool = False  # silence suppression: no RTP while silent
    timeout_s: float = 30.0
    headers: Sequence[str] = ()
    log_level: int = 3

    def argv(self, local_port: int, rtp_port: int) -> list[str]:
        args = ["--user", self.user, "--domain", self.domain, "--timeout-s", f"{self.timeout_s}"]
        args += ["--local-port", str(local_port), "--rtp-port", str(rtp_port)]
        args += ["--duration-s", f"{self.duration_s}", "--log-level", str(self.log_level)]
        args += [
            "--answer-code",
            str(self.answer_code),
            "--answer-after-s",
            f"{self.answer_after_s}",
        ]
        if self.registrar:
            args += ["--registrar", self.registrar, "--password", self.password]
        if self.call:
            args += ["--call", self.call]
        args += ["--answer"] if self.answer else []
        args += ["--register-only"] if self.register_only else []
        args += ["--play", str(self.play)] if self.play else []
        args += ["--record", str(self.record)] if self.record else []
        args += ["--codec", self.codec] if self.codec else []
        args += ["--vad"] if self.vad else []
        for header in self.headers:
            args += ["--headers", header]
        return args


class Softphone:
    """A pjsua_phone.py child process; a context manager that always kills it.

    Without ``workdir`` its pjsua log goes to a temporary directory that is
    removed on exit (the log tail stays available to ``report``).
    """

    def __init__(
        self, options: PhoneOptions, *, workdir: Path | None = None, name: str = "phone"
    ) -> None:
        self.options = options
        self.name = name
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{name}-")) if workdir is None else workdir
        self._final_log: str | None = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.local_port = free_udp_port()
        self.rtp_port = free_udp_port_pair()
        self.log_path = self.workdir / f"{name}.log"
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def uri(self) -> str:
        """Where to call this phone directly (no registrar involved)."""
        return f"sip:{self.options.user}@{LOOPBACK}:{self.local_port}"

    @property
    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def start(self) -> Softphone:
        cmd = [
            sys.executable,
            str(PHONE_SCRIPT),
            *self.options.argv(self.local_port, self.rtp_port),
        ]
        with self.log_path.open("w") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        assert self._proc.stdout is not None
        self._reader = threading.Thread(
            target=_read_events, args=(self._proc.stdout, self._queue), daemon=True
        )
        self._reader.start()
        return self

    def _next_event(self, deadline: float) -> dict[str, Any] | None:
        try:
            item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if item is not _EOF:
            self.events.append(item)
        return item

    def wait_for(self, event: str, timeout_s: float, **fields: object) -> dict[str, Any]:
        """The first new event named ``event`` whose fields match ``fields``."""
        deadline = time.monotonic() + timeout_s
        while True:
            item = self._next_event(deadline)
            if item is None or item is _EOF:
                why = "timed out" if item is None else "phone exited"
                raise SoftphoneError(
                    f"{self.name}: {why} waiting for {event} {fields}\n{self.report()}"
                )
            if item["event"] == event and all(item.get(k) == v for k, v in fields.items()):
                return item

    def finish(self, timeout_s: float) -> list[dict[str, Any]]:
        """Wait for the process to exit by itself (killed after ``timeout_s``); all events."""
        deadline = time.monotonic() + timeout_s
        while (item := self._next_event(deadline)) is not None and item is not _EOF:
            pass
        if self._proc is not None:
            try:
                self._proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise SoftphoneError(
                    f"{self.name}: still running after {timeout_s} s\n{self.report()}"
                ) from None
        return list(self.events)

    def kill(self) -> None:
        """SIGTERM (the phone hangs up and exits), SIGKILL after a grace period."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=_KILL_GRACE_S)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, n: int = 40) -> str:
        if self._final_log is not None:
            return "\n".join(self._final_log.splitlines()[-n:])
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def report(self) -> str:
        events = "\n".join(json.dumps(e) for e in self.events)
        return (
            f"--- {self.name} exit={self.exit_code} events:\n{events}\n"
            f"--- {self.name} pjsua log tail:\n{self.log_tail()}"
        )

    def __enter__(self) -> Softphone:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
        if self._own_workdir:
            self._final_log = self.log_tail(400)
            shutil.rmtree(self.workdir, ignore_errors=True)


def _read_events(stream: IO[str], sink: queue.Queue[dict[str, Any]]) -> None:
    for line in stream:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            item = {"event": "garbage", "line": line.rstrip("\n")}
        sink.put(item if isinstance(item, dict) else {"event": "garbage", "line": line})
    sink.put(_EOF)


# ------------------------------------------------------------------ WAV files


def read_wav_pcm16(path: Path) -> tuple[int, npt.NDArray[np.int16]]:
    """(sample_rate_hz, first-channel int16 samples) of a 16-bit PCM WAV file."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: {wav.getsampwidth() * 8}-bit WAV, expected 16-bit")
        frames = wav.readframes(wav.getnframes())
        samples = np.frombuffer(frames, dtype="<i2").reshape(-1, wav.getnchannels())
        return wav.getframerate(), samples[:, 0].astype(np.int16)


def write_wav_pcm16(path: Path, samples: npt.NDArray[np.int16], rate_hz: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(samples.astype("<i2").tobytes())
    return path


def find_espeak() -> str | None:
    return shutil.which("espeak-ng")


def synthesize_speech_wav(text: str, out_path: Path, rate_hz: int = PHONE_RATE_HZ) -> Path:
    """espeak-ng speech resampled to ``rate_hz`` mono 16-bit (telephone WAV)."""
    import soxr  # a project dependency; imported here to keep module import light

    espeak = find_espeak()
    if espeak is None:
        raise FileNotFoundError("espeak-ng not found (apt-get install espeak-ng)")
    raw = out_path.with_suffix(".espeak.wav")
    subprocess.run([espeak, "-w", str(raw), text], check=True, timeout=30, capture_output=True)
    source_rate_hz, pcm = read_wav_pcm16(raw)
    raw.unlink()
    resampled = soxr.resample(pcm.astype(np.float32), source_rate_hz, rate_hz)
    clipped = np.clip(np.round(resampled), -32768, 32767).astype(np.int16)
    return write_wav_pcm16(out_path, clipped, rate_hz)
