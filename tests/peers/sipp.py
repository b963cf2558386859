"""Run sipp scenarios as bounded subprocesses and read back what happened.

Every run gets its own working directory with sipp's statistics CSV, final
screen, error log and message trace, so a failing test can show them (a
temporary one, removed after the run, unless ``workdir`` is given). The
scenario's ``rtp_stream`` media is linked into that directory as
``media.g711`` (see ``MEDIA_NAME``); make it with ``write_g711_media``.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
import numpy.typing as npt

from tests.peers.ports import LOOPBACK, free_udp_port_pair
from tests.peers.softphone import read_wav_pcm16

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "sipp_scenarios"
MEDIA_NAME = "media.g711"
G711_RATE_HZ = 8000
_KILL_GRACE_S = 5.0
_TAIL_LINES = 40
_EXIT_MEANINGS = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command",
    99: "normal exit without calls processed",
    255: "fatal error",
    254: "fatal error binding a socket",
}
# Scenario screen rows. A client screen puts the name first ("INVITE ---->" is a
# send, "200 <----" a recv); a server screen puts the arrow first ("----> INVITE"
# is a recv, "<---- 200" a send).
_RTD = r"(?:[EB]-RTD\d+\s+)?"
_COUNTS = r"(?P<counts>\d+(?:\s+\d+)*)\s*$"
_NAME_FIRST = re.compile(r"^\s*(?P<name>\S+)\s+(?P<arrow><-+|-+>)\s+" + _RTD + _COUNTS)
_ARROW_FIRST = re.compile(r"^\s*(?P<arrow><-+|-+>)\s+(?P<name>\S+)\s+" + _RTD + _COUNTS)


class SippNotFoundError(RuntimeError):
    """The sipp binary is not installed (Debian package sip-tester)."""


@dataclass(frozen=True, slots=True)
class SippMessageStat:
    """One row of sipp's scenario screen: counters of a send or recv step."""

    name: str
    direction: Literal["send", "recv"]
    messages: int
    retransmissions: int
    timeouts: int
    unexpected: int


@dataclass(frozen=True, slots=True)
class SippResult:
    command: tuple[str, ...]
    exit_code: int | None  # None: killed by our own timeout
    timed_out: bool
    successful_calls: int
    failed_calls: int
    stats: Mapping[str, str]
    messages: tuple[SippMessageStat, ...]
    screen: str
    errors: str
    stderr_tail: str
    message_trace_tail: str
    workdir: Path | None  # None: a temporary directory, already removed

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.failed_calls == 0 and not self.timed_out

    def message(self, name: str, direction: Literal["send", "recv"]) -> SippMessageStat:
        """The first screen row named ``name`` ("INVITE", "200", "ACK"...) going ``direction``."""
        for row in self.messages:
            if row.name == name and row.direction == direction:
                return row
        raise KeyError(f"no {direction} row {name!r} in sipp screen:\n{self.screen}")

    def describe(self) -> str:
        """Everything useful for an assertion message."""
        meaning = _EXIT_MEANINGS.get(self.exit_code or 0, "?") if self.exit_code is not None else ""
        return (
            f"sipp {' '.join(self.command)}\n"
            f"exit={self.exit_code} ({meaning}) timed_out={self.timed_out} "
            f"successful={self.successful_calls} failed={self.failed_calls}\n"
            f"--- unexpected messages / errors:\n{self.errors}\n"
            f"--- stderr:\n{self.stderr_tail}\n--- screen:\n{self.screen}\n"
            f"--- message trace (tail):\n{self.message_trace_tail}\n"
        )


@dataclass(slots=True)
class _RunFiles:
    workdir: Path
    temporary: bool = False
    stats: Path = field(init=False)
    screen: Path = field(init=False)
    errors: Path = field(init=False)
    trace: Path = field(init=False)
    stdout: Path = field(init=False)
    stderr: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stats = self.workdir / "stats.csv"
        self.screen = self.workdir / "screen.log"
        self.errors = self.workdir / "errors.log"
        self.trace = self.workdir / "messages.log"
        self.stdout = self.workdir / "stdout.log"
        self.stderr = self.workdir / "stderr.log"


def find_sipp() -> str | None:
    return shutil.which("sipp")


def _sipp_binary() -> str:
    binary = find_sipp()
    if binary is None:
        raise SippNotFoundError("sipp not found (apt-get install sip-tester)")
    return binary


def build_command(
    scenario: Path,
    remote: str | None,
    *,
    files: _RunFiles,
    local_port: int,
    calls: int,
    rate: float,
    concurrent: int | None,
    timeout_s: float,
    media_port: int,
    keys: Mapping[str, str],
    extra: Sequence[str],
) -> list[str]:
    if local_port == 5060 and "allow_5060" not in keys:
        raise ValueError("refusing to run sipp on port 5060 (pass keys allow_5060 to force)")
    cmd = [
        _sipp_binary(), "-sf", str(scenario),
        "-i", LOOPBACK, "-p", str(local_port), "-mi", LOOPBACK, "-mp", str(media_port),
        "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000",
        "-timeout", f"{timeout_s:g}s", "-timeout_error", "-nostdin",
        "-trace_stat", "-stf", str(files.stats), "-fd", "1",
        "-trace_screen", "-screen_file", str(files.screen),
        "-trace_err", "-error_file", str(files.errors),
        "-trace_msg", "-message_file", str(files.trace),
    ]  # fmt: skip
    if concurrent is not None:
        cmd += ["-l", str(concurrent)]
    for name, value in keys.items():
        if name != "allow_5060":
            cmd += ["-key", name, value]
    cmd += list(extra)
    if remote is not None:
        cmd.append(remote)
    return cmd


def _prepare_workdir(workdir: Path | None, media_file: Path | None) -> _RunFiles:
    path = Path(tempfile.mkdtemp(prefix="sipp-")) if workdir is None else workdir
    path.mkdir(parents=True, exist_ok=True)
    if media_file is not None:
        link = path / MEDIA_NAME
        link.unlink(missing_ok=True)
        link.symlink_to(Path(media_file).resolve())
    return _RunFiles(path, temporary=workdir is None)


def _tail(path: Path, n: int = _TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return ""


def parse_stats(path: Path) -> dict[str, str]:
    """Last row of sipp's ``-trace_stat`` CSV (semicolon separated) as a dict."""
    try:
        rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    except FileNotFoundError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def _last_screen(text: str) -> str:
    """The last scenario screen in a ``-trace_screen`` dump (statistics screens cut off)."""
    start = text.rfind("Scenario Screen")
    if start < 0:
        return text
    start = text.rfind("\n", 0, start) + 1
    end = text.find("Statistics Screen", start)
    end = len(text) if end < 0 else text.rfind("\n", 0, end) + 1
    return text[start:end]


def _screen_row(line: str) -> SippMessageStat | None:
    m = _NAME_FIRST.match(line)
    outgoing_arrow = "->"
    if m is None:
        m = _ARROW_FIRST.match(line)
        outgoing_arrow = "<-"
    if m is None:
        return None
    counts = [int(c) for c in m.group("counts").split()] + [0, 0, 0, 0]
    is_send = m.group("arrow").startswith("<") == outgoing_arrow.startswith("<")
    direction: Literal["send", "recv"] = "send" if is_send else "recv"
    return SippMessageStat(m.group("name"), direction, *counts[:4])


def parse_screen_rows(screen: str) -> tuple[SippMessageStat, ...]:
    """Per-step counters from the scenario screen, client or server layout.

    Columns: send rows have messages, retransmissions, timeouts; recv rows
    messages, retransmissions (received), timeouts, unexpected messages.
    """
    rows = (_screen_row(line) for line in screen.splitlines())
    return tuple(row for row in rows if row is not None)


def _int_stat(stats: Mapping[str, str], name: str) -> int:
    try:
        return int(stats.get(name, "0") or 0)
    except ValueError:
        return 0


def collect_result(
    cmd: Sequence[str], exit_code: int | None, timed_out: bool, files: _RunFiles
) -> SippResult:
    stats = parse_stats(files.stats)
    screen = _last_screen(_tail(files.screen, 400))
    return SippResult(
        command=tuple(cmd),
        exit_code=exit_code,
        timed_out=timed_out,
        successful_calls=_int_stat(stats, "SuccessfulCall(C)"),
        failed_calls=_int_stat(stats, "FailedCall(C)"),
        stats=stats,
        messages=parse_screen_rows(screen),
        screen=screen,
        errors=_tail(files.errors),
        stderr_tail=_tail(files.stderr),
        message_trace_tail=_tail(files.trace, 80),
        workdir=None if files.temporary else files.workdir,
    )


def _start(cmd: Sequence[str], files: _RunFiles) -> subprocess.Popen[bytes]:
    with files.stdout.open("wb") as out, files.stderr.open("wb") as err:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=files.workdir,
            start_new_session=True,
        )


def _wait_or_kill(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int | None, bool]:
    """Wait for exit; on timeout SIGINT (sipp dumps its screens), then SIGKILL."""
    try:
        return proc.wait(timeout=timeout_s), False
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=_KILL_GRACE_S)
            break
        except subprocess.TimeoutExpired:
            continue
    return None, True


def run_sipp(
    scenario: Path,
    remote: str,
    *,
    local_port: int,
    calls: int = 1,
    rate: float = 1,
    concurrent: int | None = None,
    timeout_s: float,
    extra: Sequence[str] = (),
    media_port: int | None = None,
    keys: Mapping[str, str] | None = None,
    media_file: Path | None = None,
    workdir: Path | None = None,
) -> SippResult:
    """Run a sipp client scenario to completion against ``remote`` ("host:port").

    sipp's own ``-timeout`` is ``timeout_s`` (and counts as a failure); this
    function kills it ``_KILL_GRACE_S`` later if it still has not exited.
    """
    files = _prepare_workdir(workdir, media_file)
    cmd = build_command(
        scenario,
        remote,
        files=files,
        local_port=local_port,
        calls=calls,
        rate=rate,
        concurrent=concurrent,
        timeout_s=timeout_s,
        media_port=media_port if media_port is not None else free_udp_port_pair(),
        keys=keys or {},
        extra=extra,
    )
    proc = _start(cmd, files)
    exit_code, timed_out = _wait_or_kill(proc, timeout_s + _KILL_GRACE_S)
    result = collect_result(cmd, exit_code, timed_out, files)
    _cleanup(files)
    return result


def _cleanup(files: _RunFiles) -> None:
    """Remove a temporary working directory (the result keeps the log tails)."""
    if files.temporary:
        shutil.rmtree(files.workdir, ignore_errors=True)


def _udp_port_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


class SippBackground:
    """A sipp (typically a UAS) running in the background; a context manager.

    ``__enter__`` waits until sipp has bound its UDP port; ``wait`` collects the
    result after sipp exits by itself (``calls`` processed or ``timeout_s``);
    leaving the context always stops it.
    """

    def __init__(
        self,
        scenario: Path,
        remote: str | None = None,
        *,
        local_port: int,
        calls: int = 1,
        timeout_s: float,
        extra: Sequence[str] = (),
        media_port: int | None = None,
        keys: Mapping[str, str] | None = None,
        media_file: Path | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.local_port = local_port
        self.timeout_s = timeout_s
        self._files = _prepare_workdir(workdir, media_file)
        self._cmd = build_command(
            scenario,
            remote,
            files=self._files,
            local_port=local_port,
            calls=calls,
            rate=1,
            concurrent=None,
            timeout_s=timeout_s,
            media_port=media_port if media_port is not None else free_udp_port_pair(),
            keys=keys or {},
            extra=extra,
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._result: SippResult | None = None

    def start(self, ready_timeout_s: float = 5.0) -> None:
        self._proc = _start(self._cmd, self._files)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sipp exited at start:\n{self._collect(False).describe()}")
            if _udp_port_bound(self.local_port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sipp did not bind UDP {self.local_port} in {ready_timeout_s} s")

    def _collect(self, timed_out: bool) -> SippResult:
        code = self._proc.returncode if self._proc is not None else None
        self._result = collect_result(self._cmd, code, timed_out, self._files)
        return self._result

    def wait(self, timeout_s: float | None = None) -> SippResult:
        """Wait for sipp to exit by itself (at most its own timeout plus a grace)."""
        if self._proc is None:
            raise RuntimeError("sipp was not started")
        limit = timeout_s if timeout_s is not None else self.timeout_s + _KILL_GRACE_S
        _, timed_out = _wait_or_kill(self._proc, limit)
        return self._collect(timed_out)

    def stop(self) -> SippResult:
        """Stop now (SIGINT, then SIGKILL) and collect what sipp wrote."""
        if self._proc is None:
            raise RuntimeError("sipp was not started")
        if self._result is not None and self._proc.poll() is not None:
            return self._result
        _, timed_out = _wait_or_kill(self._proc, 0)
        return self._collect(timed_out and self._proc.returncode is None)

    def __enter__(self) -> SippBackground:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.stop()
        _cleanup(self._files)


# ---------------------------------------------------------------- G.711 media

_ULAW_BIAS_14BIT = 0x21
_ULAW_CLIP_14BIT = 8159


def linear_to_ulaw(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """ITU-T G.711 mu-law encoding of 16-bit linear samples (14-bit input, as G.711)."""
    x = pcm.astype(np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(x), _ULAW_CLIP_14BIT) + _ULAW_BIAS_14BIT
    segment = np.floor(np.log2(mag)).astype(np.int32) - 5
    mantissa = (mag >> (segment + 1)) & 0x0F
    code = np.where(segment > 7, 0x7F, (segment << 4) | mantissa)  # clipped at full scale
    return (code ^ mask).astype(np.uint8)


def linear_to_alaw(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """ITU-T G.711 A-law encoding of 16-bit linear samples."""
    x = pcm.astype(np.int32)
    sign = np.where(x >= 0, 0x80, 0)
    mag = np.minimum(np.where(x >= 0, x, -x - 1) >> 3, 0x0FFF)
    exponent = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> np.maximum(exponent, 1)) & 0x0F
    code: npt.NDArray[np.int32] = (sign | (exponent << 4) | mantissa) ^ 0x55
    return code.astype(np.uint8)


def write_g711_media(wav_path: Path, out_path: Path, law: Literal["ulaw", "alaw"]) -> Path:
    """Raw headerless G.711 (8 kHz) of an 8 kHz 16-bit WAV, for sipp's rtp_stream."""
    rate_hz, pcm = read_wav_pcm16(wav_path)
    if rate_hz != G711_RATE_HZ:
        raise ValueError(f"{wav_path}: {rate_hz} Hz, expected {G711_RATE_HZ} Hz")
    encode = linear_to_ulaw if law == "ulaw" else linear_to_alaw
    out_path.write_bytes(encode(pcm).tobytes())
    return out_path
