"""asr_streaming_nemo: cache-aware streaming FastConformer (NeMo; CTC, RNNT or hybrid) behind
the streaming ASR contract (triton_models/README.md), run with ONNX Runtime inside the Python
backend.

Each execute() feeds every request's audio to its CORRID's stream, then steps the
encoder over all ready chunks of all streams of the batch together (caches stacked
on the batch axis), decodes greedily (CTC, or RNNT batched over the streams: parameter
`decoder`) with word times, and answers each request
with its finals (endpointing: `end_silence_ms` of blank frames), a partial when the
open utterance changed, and at END the final of the open utterance. See
streaming_ctc.py for the model-side details and README.md beside config.pbtxt.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # noqa: E402
from common.asr_contract import (  # noqa: E402
    ChunkRequest,
    ContractError,
    ParameterError,
    SessionTable,
    config_parameters,
    float_parameter,
)
from common.triton_io import (  # noqa: E402
    FINAL_FLAG,
    is_ready,
    model_config,
    read_chunk,
    send_error,
    send_results,
)
from streaming_ctc import (  # noqa: E402
    RecognizerConfig,
    StreamingRecognizer,
    StreamInput,
    StreamState,
)


def parse_att_context(raw: str) -> tuple[int, int]:
    """"70,1" or "[70, 1]" -> (70, 1)."""
    parts = raw.replace("[", " ").replace("]", " ").replace(",", " ").split()
    if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
        raise ParameterError(f"parameter att_context_size={raw!r} must be two integers, e.g. 70,1")
    return int(parts[0]), int(parts[1])


def _int_parameter(params: dict[str, str], name: str, default: int) -> int:
    value = float_parameter(params, name, float(default))
    if value != int(value):
        raise ParameterError(f"parameter {name}={params[name]!r} must be an integer")
    return int(value)


def _switch(params: dict[str, str], name: str, default: bool) -> bool:
    """An on/off parameter (on, off; true, false; 1, 0)."""
    raw = (params.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1"):
        return True
    if raw in ("off", "false", "0"):
        return False
    raise ParameterError(f"parameter {name}={params[name]!r} must be on or off")


def recognizer_config(params: dict[str, str]) -> RecognizerConfig:
    return RecognizerConfig(
        att_context_size=parse_att_context(params.get("att_context_size") or "70,13"),
        end_silence_ms=float_parameter(params, "end_silence_ms", 600.0),
        end_pad_ms=float_parameter(params, "end_pad_ms", 800.0),
        phrase_boost=float_parameter(params, "phrase_boost", 2.0, minimum=None),
        max_batch=_int_parameter(params, "max_batch", 32),
        device=params.get("device") or "auto",
        threads=_int_parameter(params, "cpu_threads", 0),
        endpointing=params.get("endpointing") or "vad",
        vad_threshold=float_parameter(params, "vad_threshold", 0.5),
        vad_end_silence_ms=_int_parameter(params, "vad_end_silence_ms", 160),
        vad_lookahead_ms=float_parameter(params, "vad_lookahead_ms", 240.0),
        vad_flush=_switch(params, "vad_flush", True),
        decoder=(params.get("decoder") or "").strip().lower())


def model_folder(raw: str) -> Path:
    """`model_path` parameter; empty: this version folder (the committed small model)."""
    return Path(raw).expanduser() if raw.strip() else HERE


@dataclass(frozen=True, slots=True)
class Pending:
    sender: Any
    item: StreamInput


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self._log = pb_utils.Logger
        params = config_parameters(model_config(args))
        folder = model_folder(params.get("model_path", ""))
        config = recognizer_config(params)
        started = time.monotonic()
        self._rec = StreamingRecognizer(folder, config)
        idle_s = float_parameter(params, "state_idle_timeout_s", 120.0)
        self._sessions: SessionTable[StreamState] = SessionTable(
            idle_s, lambda _corrid: self._rec.new_stream())
        self._log.log_info(
            f"asr_streaming_nemo: {folder} loaded in {time.monotonic() - started:.1f} s, "
            f"providers {self._rec.session.providers}, decoder {self._rec.decoder}, "
            f"att_context_size "
            f"{list(config.att_context_size)}, chunk {self._rec.geometry.chunk_mel_frames * 10} ms")

    def execute(self, requests: list[Any]) -> None:
        now = time.monotonic()
        for corrid in self._sessions.expire(now):
            self._log.log_warn(f"CORRID {corrid}: state expired after idle timeout")
        rounds: list[list[Pending]] = []
        for request in requests:
            pending = self._admit(request, now)
            if pending is not None:
                _place(rounds, pending)
        for batch in rounds:
            self._run(batch)

    def _admit(self, request: Any, now: float) -> Pending | None:
        """Validate a request and bind it to its stream; None when already answered."""
        sender = request.get_response_sender()
        if not is_ready(request):
            sender.send(flags=FINAL_FLAG)
            return None
        try:
            chunk = read_chunk(request)
            _check_start(chunk, chunk.corrid in self._sessions)
        except ContractError as exc:
            send_error(sender, str(exc))
            return None
        state, _ = self._sessions.acquire(chunk.corrid, start=chunk.start, now=now)
        if chunk.start and chunk.phrases:
            self._rec.set_phrases(state, chunk.phrases)
        if chunk.end:
            self._sessions.release(chunk.corrid)
        return Pending(sender, StreamInput(state, chunk.audio, chunk.end))

    def _run(self, batch: Sequence[Pending]) -> None:
        try:
            results = self._rec.process([p.item for p in batch])
        except Exception as exc:  # noqa: BLE001 - answer every request, keep the model up
            self._log.log_error(f"asr_streaming_nemo step failed: {exc!r}")
            for pending in batch:
                send_error(pending.sender, f"recognition failed: {exc}")
            return
        for pending, items in zip(batch, results, strict=True):
            send_results(pending.sender, items, complete=True)

    def finalize(self) -> None:
        self._sessions.expire(float("inf"))


def _check_start(chunk: ChunkRequest, known: bool) -> None:
    if not chunk.start and not known:
        raise ContractError(f"CORRID {chunk.corrid}: no open sequence; its first request must "
                            "carry START (or its state expired)")


def _place(rounds: list[list[Pending]], pending: Pending) -> None:
    """One chunk per stream per round, a stream's chunks in arrival order."""
    state = pending.item.state
    after = max((i for i, batch in enumerate(rounds)
                 if any(p.item.state is state for p in batch)), default=-1)
    if after + 1 == len(rounds):
        rounds.append([])
    rounds[after + 1].append(pending)
