"""Triton Python-backend glue for the streaming ASR contract.

Only importable inside the Python backend stub (``triton_python_backend_utils``).
Reads one request into a :class:`ChunkRequest` and sends :class:`AsrResult`s
on a decoupled response sender.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

from common.asr_contract import AsrResult, ChunkRequest, ContractError, parse_phrases

FINAL_FLAG: int = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def model_config(args: dict[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(args["model_config"])
    return config


def _scalar(request: Any, name: str) -> int | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = tensor.as_numpy().reshape(-1)
    return int(values[0]) if values.size else None


def read_chunk(request: Any) -> ChunkRequest:
    """The contract view of one request; ContractError when it does not fit."""
    corrid = _scalar(request, "CORRID")
    if corrid is None:
        raise ContractError("request carries no CORRID: send it with a sequence_id")
    audio_tensor = pb_utils.get_input_tensor_by_name(request, "AUDIO")
    if audio_tensor is None:
        raise ContractError("request carries no AUDIO input")
    audio = np.asarray(audio_tensor.as_numpy(), dtype=np.float32).reshape(-1)
    phrases_tensor = pb_utils.get_input_tensor_by_name(request, "PHRASES")
    phrases = () if phrases_tensor is None else parse_phrases(
        list(phrases_tensor.as_numpy().reshape(-1)))
    return ChunkRequest(corrid=corrid, start=bool(_scalar(request, "START")),
                        end=bool(_scalar(request, "END")), audio=audio, phrases=phrases)


def is_ready(request: Any) -> bool:
    """READY is false only for padding slots, which carry no real request."""
    ready = _scalar(request, "READY")
    return ready is None or ready != 0


def response(result: AsrResult) -> Any:
    payload = np.array([[result.to_json().encode("utf-8")]], dtype=np.object_)
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("RESULT", payload)])


def send_results(sender: Any, results: Iterable[AsrResult], *, complete: bool) -> None:
    """Send each result as one response; then close the request when ``complete``."""
    for result in results:
        sender.send(response(result))
    if complete:
        sender.send(flags=FINAL_FLAG)


def ready_chunk(request: Any, sender: Any) -> ChunkRequest | None:
    """The request's chunk, or None when it was answered already: a not-READY request is
    closed, a malformed one failed with the contract error."""
    if not is_ready(request):
        sender.send(flags=FINAL_FLAG)
        return None
    try:
        return read_chunk(request)
    except ContractError as exc:
        send_error(sender, str(exc))
        return None


def execute_each(requests: Iterable[Any], handle: Callable[[Any, Any], None]) -> None:
    """Run ``handle(request, sender)`` per request; an exception fails that request only,
    with an error response, and the model keeps serving the others."""
    for request in requests:
        sender = request.get_response_sender()
        try:
            handle(request, sender)
        except Exception as exc:  # noqa: BLE001 - fail the request, keep the model serving
            pb_utils.Logger.log_error(f"request failed: {exc!r}")
            send_error(sender, f"internal error: {exc}")


def send_error(sender: Any, message: str) -> None:
    """Fail one request (the stream stays open for the others) and close it."""
    sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
    sender.send(flags=FINAL_FLAG)
