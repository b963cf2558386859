"""asr_ack: acknowledges every chunk of the streaming ASR contract, recognises nothing.

Each request gets a partial with empty text; the END request also gets a final
whose text is the number of samples received in the sequence (decimal).
PHRASES are ignored.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.asr_contract import (  # noqa: E402
    AsrResult,
    ChunkRequest,
    SessionTable,
    config_parameters,
    float_parameter,
    samples_to_s,
)
from common.triton_io import (  # noqa: E402
    execute_each,
    model_config,
    ready_chunk,
    send_results,
)


@dataclass(slots=True)
class AckSession:
    samples: int = 0


def ack_results(session: AckSession, chunk: ChunkRequest) -> list[AsrResult]:
    audio_s = samples_to_s(session.samples)
    results = [AsrResult("partial", 0, "", 0.0, audio_s, audio_s)]
    if chunk.end:
        results.append(AsrResult("final", 0, str(session.samples), 0.0, audio_s, audio_s))
    return results


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        params = config_parameters(model_config(args))
        idle_s = float_parameter(params, "state_idle_timeout_s", 120.0)
        self._sessions: SessionTable[AckSession] = SessionTable(idle_s, lambda _: AckSession())

    def execute(self, requests: list[Any]) -> None:
        now = time.monotonic()
        self._sessions.expire(now)
        execute_each(requests, lambda request, sender: self._handle(request, sender, now))

    def _handle(self, request: Any, sender: Any, now: float) -> None:
        chunk = ready_chunk(request, sender)
        if chunk is None:
            return
        session, _ = self._sessions.acquire(chunk.corrid, start=chunk.start, now=now)
        session.samples += chunk.audio.size
        if chunk.end:
            self._sessions.release(chunk.corrid)
        send_results(sender, ack_results(session, chunk), complete=True)
