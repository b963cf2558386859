"""``bench rtp_codec``: per-packet cost of :mod:`gateway.media.rtp` next to ``aiortc.rtp``.

Same packets through both (a 20 ms PCMU packet; an RR + SDES CNAME compound as the
gateway sends every ~5 s): parse, serialize, and parse + serialize, in microseconds per
packet (best of ``--repeats`` timings of ``--packets`` calls each, so other jobs on the
host inflate it least), plus the cost of importing each module in a fresh interpreter
(modules loaded, milliseconds; ``sys`` is the bare interpreter). ``ratio`` is aiortc's time
over ours (above 1: ours is cheaper).
"""

from __future__ import annotations

import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc import rtp as aio

from bench import report
from bench.figures import median, ratio, rounded
from gateway.media import rtp

NAME = "rtp_codec"
IMPORT_RUNS = 5
_IMPORT_PROBE = ("import sys, time; t = time.perf_counter(); import {module}; "
                 "print(len(sys.modules), time.perf_counter() - t)")


@dataclass(frozen=True, slots=True)
class CodecParams:
    packets: int = 100_000
    repeats: int = 5


def _per_call_us(fn: Callable[[], object], params: CodecParams) -> float:
    runs = timeit.repeat(fn, number=params.packets, repeat=params.repeats)
    return min(runs) / params.packets * 1e6


def _rtp_cases() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    theirs = aio.RtpPacket(payload_type=0, marker=1, sequence_number=4321, timestamp=160_000,
                           ssrc=0x1234ABCD, payload=bytes(range(160)))
    wire = theirs.serialize()
    ours = rtp.RtpPacket.parse(wire)
    if ours.serialize() != wire:
        raise RuntimeError("the two codecs disagree on the benchmark packet")
    return {
        "rtp parse": (lambda: aio.RtpPacket.parse(wire), lambda: rtp.RtpPacket.parse(wire)),
        "rtp serialize": (theirs.serialize, ours.serialize),
        "rtp parse+serialize": (lambda: aio.RtpPacket.parse(wire).serialize(),
                                lambda: rtp.RtpPacket.parse(wire).serialize()),
    }


def _rtcp_cases() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    block = (0xAABBCCDD, 3, -2, 70_000, 45, 0xB7052000, 0x4000)
    cname = b"asr-gateway@c-0123456789abcdef"

    def build_theirs() -> bytes:
        rr = aio.RtcpRrPacket(ssrc=7, reports=[aio.RtcpReceiverInfo(*block)])
        chunk = aio.RtcpSourceInfo(ssrc=7, items=[(1, cname)])
        return bytes(rr) + bytes(aio.RtcpSdesPacket(chunks=[chunk]))

    def build_ours() -> bytes:
        rr = rtp.RtcpReceiverReport(7, (rtp.ReceptionReport(*block),))
        sdes = rtp.RtcpSdes((rtp.SdesChunk(7, ((rtp.SDES_CNAME, cname),)),))
        return rr.serialize() + sdes.serialize()

    wire = build_theirs()
    if build_ours() != wire:
        raise RuntimeError("the two codecs disagree on the benchmark RTCP compound")
    return {
        "rtcp RR+SDES build": (build_theirs, build_ours),
        "rtcp RR+SDES parse": (lambda: aio.RtcpPacket.parse(wire),
                               lambda: rtp.parse_rtcp(wire)),
    }


def _import_cost(module: str) -> dict[str, Any]:
    """Modules loaded and milliseconds to import ``module`` in a fresh interpreter (median)."""
    counts, times = [], []
    for _ in range(IMPORT_RUNS):
        out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
                             capture_output=True, text=True, timeout=60, check=True,
                             cwd=report.REPO).stdout.split()
        counts.append(int(out[0]))
        times.append(float(out[1]) * 1000)
    return {"modules": int(median(counts) or 0), "import_ms": rounded(median(times), 1)}


def measure(params: CodecParams) -> list[dict[str, Any]]:
    rows = []
    for name, (theirs, ours) in {**_rtp_cases(), **_rtcp_cases()}.items():
        aiortc_us, ours_us = _per_call_us(theirs, params), _per_call_us(ours, params)
        rows.append({"case": name, "aiortc_us": rounded(aiortc_us, 3),
                     "ours_us": rounded(ours_us, 3),
                     "ratio": rounded(ratio(aiortc_us, ours_us), 2)})
    return rows


def run(params: CodecParams, workdir: Path, results_dir: Path) -> dict[str, Any]:
    del workdir  # nothing to keep: no processes, no media
    started_at, t0 = report.now_iso(), time.monotonic()
    env = report.environment()
    rows = measure(params)
    imports = {"sys (interpreter alone)": _import_cost("sys"),
               "aiortc.rtp": _import_cost("aiortc.rtp"),
               "gateway.media.rtp": _import_cost("gateway.media.rtp")}
    document = {
        "benchmark": NAME, "started_at": started_at,
        "duration_s": round(time.monotonic() - t0, 1), "environment": env,
        "parameters": {"packets": params.packets, "repeats": params.repeats,
                       "import_runs": IMPORT_RUNS, "rtp_payload_bytes": 160},
        "results": {"per_packet_us": rows, "import": imports},
    }
    report.write_result(NAME, document, results_dir)
    report.show("rtp_codec: microseconds per packet (best of repeats)", rows,
                ("case", "aiortc_us", "ours_us", "ratio"))
    report.show("rtp_codec: import in a fresh interpreter (median)",
                [{"module": k, **v} for k, v in imports.items()],
                ("module", "modules", "import_ms"))
    return document
