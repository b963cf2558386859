"""Process figures from /proc (Linux): CPU seconds, resident memory, kernel UDP drops."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS_HZ = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")
_UTIME_FIELD = 11       # fields after the ")" that closes comm: state is 0, utime 11, stime 12
_PPID_FIELD = 1


@dataclass(frozen=True, slots=True)
class ProcSample:
    at_s: float         # time.monotonic()
    cpu_s: float        # user + system, all threads
    rss_bytes: int


def _stat_fields(pid: int) -> list[str]:
    text = (_PROC / str(pid) / "stat").read_text()
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    ticks = int(fields[_UTIME_FIELD]) + int(fields[_UTIME_FIELD + 1])
    return ticks / _CLOCK_TICKS_HZ


def rss_bytes(pid: int) -> int:
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def sample(pid: int) -> ProcSample:
    return ProcSample(time.monotonic(), cpu_seconds(pid), rss_bytes(pid))


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (e.g. tritonserver and its Python-backend stubs)."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[_PPID_FIELD])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in descendants(pid):
        try:
            total += cpu_seconds(member)
        except (OSError, IndexError, ValueError):
            continue
    return total


def udp_receive_errors() -> int:
    """Host-wide UDP datagrams dropped for a full socket buffer (``RcvbufErrors``)."""
    lines = [line.split() for line in (_PROC / "net" / "snmp").read_text().splitlines()
             if line.startswith("Udp:")]
    if len(lines) < 2 or "RcvbufErrors" not in lines[0]:
        return 0
    return int(lines[1][lines[0].index("RcvbufErrors")])


def host_busy_seconds() -> float:
    """CPU seconds the whole host spent busy (all cores; not idle, not iowait) since boot."""
    fields = (_PROC / "stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields[:8]]      # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLOCK_TICKS_HZ
