"""The shell tier: each asyncio shell in-process, over loopback sockets, against real peers.

No gateway subprocess: a test builds the shell object (AsrHub, SipService, RtpEndpoint,
TtsClient) inside its own event loop and talks to it over 127.0.0.1. The Triton here is a
small one of this tier's own (asr_ack and tts_cpu_default only, no Whisper to load), started
once per session from the Triton venv; a missing venv is a failure, not a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.triton_launcher import TritonProcess
from tests.peers.ports import distinct_tcp_ports
from tests.triton.fixtures import MODEL_REPOSITORY, TRITON_VENV

SHELL_MODELS = ["asr_ack", "tts_cpu_default"]


@pytest.fixture(scope="session")
def shell_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    if not (TRITON_VENV / "bin" / "python").exists():
        pytest.fail(f"Triton venv {TRITON_VENV} not found: run make triton-venv", pytrace=False)
    work = tmp_path_factory.mktemp("shell_triton")
    http, grpc, metrics = distinct_tcp_ports(3)
    server = TritonProcess(MODEL_REPOSITORY, venv=TRITON_VENV, workdir=work, http_port=http,
                           grpc_port=grpc, metrics_port=metrics, models=SHELL_MODELS,
                           log_path=work / "triton.log")
    server.start(180)
    yield server
    server.stop()
