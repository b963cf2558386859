"""The system under test: a bundled Triton (started by the bench) and gateway daemons.

Both run as child processes with ports picked at run time; every start and wait is
bounded. The gateway runs with production-like logging (``info``, JSON, the ``log``
sink only), which is also how the bench reads its events.
"""

from __future__ import annotations

import random
import socket
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.triton_launcher import TritonLaunchError, TritonProcess
from tests.gateway_proc import GatewayProcess, base_config, merge
from tests.peers.ports import LOOPBACK, distinct_tcp_ports
from tests.triton.fixtures import MODEL_REPOSITORY, TRITON_VENV

TRITON_START_TIMEOUT_S = 240.0
GATEWAY_START_TIMEOUT_S = 30.0
TRITON_READY_TIMEOUT_S = 30.0
BENCH_TOKEN = "bench-token"
_RTP_LOW, _RTP_HIGH = 10000, 30000      # below the kernel's ephemeral range (32768..)
_START_ATTEMPTS = 3


class BenchSetupError(RuntimeError):
    """A piece of the bench (Triton, gateway, sipp, pjsua) could not be started."""


def _start_triton(models: Sequence[str], workdir: Path, attempt: int,
                  repository: Path | None = None) -> TritonProcess:
    http, grpc, metrics = distinct_tcp_ports(3)
    server = TritonProcess(repository or MODEL_REPOSITORY, venv=TRITON_VENV, workdir=workdir,
                           http_port=http, grpc_port=grpc, metrics_port=metrics,
                           models=list(models), log_path=workdir / f"triton-{attempt}.log")
    return server.start(timeout_s=TRITON_START_TIMEOUT_S)


@contextmanager
def triton(models: Sequence[str], workdir: Path, repository: Path | None = None
           ) -> Iterator[TritonProcess]:
    """Triton serving ``models`` from triton_models/ (or ``repository``: bench.modelrepo's
    variants), retried when a port was taken."""
    workdir.mkdir(parents=True, exist_ok=True)
    server: TritonProcess | None = None
    for attempt in range(_START_ATTEMPTS):
        try:
            server = _start_triton(models, workdir, attempt, repository)
            break
        except TritonLaunchError as exc:
            if "already in use" not in exc.log_tail or attempt == _START_ATTEMPTS - 1:
                raise BenchSetupError(str(exc)) from exc
    assert server is not None
    try:
        yield server
    finally:
        server.stop()


def _udp_pair_free(port: int) -> bool:
    for p in (port, port + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((LOOPBACK, p))
            except OSError:
                return False
    return True


def rtp_range(pairs: int) -> tuple[int, int]:
    """An even RTP port range with room for ``pairs`` legs (plus slack), picked at random;
    the gateway skips any port in it that another process holds."""
    width = 2 * pairs + 200
    base = random.randrange(_RTP_LOW, _RTP_HIGH - width) & ~1
    for _ in range(20):
        if _udp_pair_free(base):
            break
        base = random.randrange(_RTP_LOW, _RTP_HIGH - width) & ~1
    return base, base + width


def gateway_config(workdir: Path, triton_url: str, *, max_calls: int,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    cfg = merge(base_config(workdir, rtp_range(max_calls)), {
        "sip": {"max_calls": max_calls, "invite_rate_per_s": 10000.0, "drain_grace_s": 1.0},
        "triton": {"url": triton_url, "asr_model": "asr_ack", "connect_timeout_s": 5.0,
                   "health_interval_s": 5.0},
        "tts": {"enabled": False},
        "http": {"token": BENCH_TOKEN},
        "logging": {"level": "info", "format": "json"},
        "events": {"sinks": [{"type": "log"}]},
        "channels": {"rules": [{"match": "header", "header": "X-Leg", "pattern": "^agent$",
                                "channel": "agent"}]},
    })
    return merge(cfg, extra or {})


@contextmanager
def gateway(workdir: Path, triton_url: str, *, max_calls: int,
            extra: Mapping[str, Any] | None = None) -> Iterator[GatewayProcess]:
    """A gateway daemon pointed at ``triton_url``; yielded once Triton is ready for it."""
    workdir.mkdir(parents=True, exist_ok=True)
    gw = GatewayProcess(workdir, gateway_config(workdir, triton_url, max_calls=max_calls,
                                                extra=extra))
    try:
        gw.start(GATEWAY_START_TIMEOUT_S)
        gw.wait_log("triton.ready", TRITON_READY_TIMEOUT_S)
    except AssertionError as exc:
        gw.kill()
        raise BenchSetupError(f"gateway did not start: {exc}") from exc
    try:
        yield gw
    finally:
        try:
            gw.stop(20.0)
        except Exception:  # noqa: BLE001 - a wedged gateway must not hide the results
            gw.kill()


@contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    """Scratch space for logs and media: ``keep`` when given (kept), else a temporary one."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp:
        yield Path(tmp)
