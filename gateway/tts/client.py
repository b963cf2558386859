"""Triton TTS client (see triton_models/TTS.md): text in, streamed PCM chunks out.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc import aio as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.config import TritonConfig

_ids = itertools.count(1)
# A reply cut off (barge-in, hangup) is read to its end in the background instead of being
# cancelled: Triton 2.51 (the bundled server) can crash on a gRPC stream cancelled while its
# decoupled model still sends (triton-inference-server/server#7368, fixed by #7840 in 2.53).
DRAIN_S = 30.0
CLOSE_WAIT_S = 3.0


class TtsError(RuntimeError):
    """Triton refused or failed the synthesis (message from the model or gRPC), or could
    not be reached: every failure of a reply is this one type, so a caller (the playout)
    reports it and goes on with the next reply."""


@dataclass(frozen=True, slots=True)
class TtsChunk:
    audio: npt.NDArray[np.float32]
    sample_rate_hz: int
    index: int
    text: str


def _string_input(name: str, value: str) -> InferInput:
    item = InferInput(name, [1], "BYTES")
    item.set_data_from_numpy(np.array([value.encode()], dtype=np.object_))
    return item


class TtsClient:
    def __init__(self, config: TritonConfig) -> None:
        self._config = config
        self._client: grpcclient.InferenceServerClient | None = None
        self._draining: set[asyncio.Task[None]] = set()

    def _get(self) -> grpcclient.InferenceServerClient:
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(url=self._config.url)
        return self._client

    def _request(self, text: str, voice: str, rate: float) -> dict[str, Any]:
        inputs = [_string_input("TEXT", text)]
        if voice:
            inputs.append(_string_input("VOICE", voice))
        rate_in = InferInput("RATE", [1], "FP32")
        rate_in.set_data_from_numpy(np.array([rate], dtype=np.float32))
        inputs.append(rate_in)
        outputs = [InferRequestedOutput(n) for n in ("AUDIO", "SAMPLE_RATE", "INDEX", "TEXT_SPAN")]
        return {"model_name": self._config.tts_model, "inputs": inputs, "outputs": outputs,
                "request_id": f"tts-{next(_ids)}", "enable_empty_final_response": True}

    async def synthesize(self, text: str, voice: str = "", rate: float = 1.0
                         ) -> AsyncGenerator[TtsChunk, None]:
        request = self._request(text, voice, rate)

        async def one() -> AsyncIterator[dict[str, Any]]:
            yield request

        stream = self._get().stream_infer(one())
        finished = False
        try:
            async for result, error in stream:
                if error is not None:
                    raise TtsError(str(error))
                response = result.get_response()
                finished = _is_final(result)
                if response.outputs:
                    yield _chunk(result)
                if finished:
                    return
            finished = True                   # the server ended the call
        except (grpc.RpcError, InferenceServerException) as exc:
            finished = True                   # the call is over: nothing left to read
            # Triton unreachable or gone mid-reply: the gRPC call's own error
            raise TtsError(f"TTS stream failed: {_rpc_reason(exc)}") from exc
        finally:
            # a reply cut off mid-stream is read to its end by a task of this client (left to
            # the garbage collector, the call's tasks were destroyed pending; cancelled, the
            # bundled Triton may crash); a finished one is ended here (a no-op)
            if finished:
                stream.cancel()
            else:
                self._drain_later(stream)

    def _drain_later(self, stream: Any) -> None:
        task = asyncio.get_running_loop().create_task(_drain(stream), name="tts drain")
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def close(self) -> None:
        if self._draining:           # cut replies end on their own within moments
            await asyncio.wait(set(self._draining), timeout=CLOSE_WAIT_S)
        for task in list(self._draining):
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None


def _is_final(result: Any) -> bool:
    final = result.get_response().parameters.get("triton_final_response")
    return final is not None and bool(final.bool_param)


async def _drain(stream: Any) -> None:
    """Read a cut-off reply's remaining responses (discarded) until Triton ends it; cancel
    only after ``DRAIN_S`` (a stuck model) or when the client closes."""
    try:
        async with asyncio.timeout(DRAIN_S):
            async for result, error in stream:
                if error is None and _is_final(result):
                    return
    except (TimeoutError, grpc.RpcError, InferenceServerException):
        return
    finally:
        stream.cancel()              # a no-op once the call ended


def _rpc_reason(exc: Exception) -> str:
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{getattr(code(), 'name', code())}: {details()}"
    return str(exc)


def _chunk(result: Any) -> TtsChunk:
    audio = result.as_numpy("AUDIO").reshape(-1).astype(np.float32, copy=False)
    rate = int(result.as_numpy("SAMPLE_RATE").reshape(-1)[0])
    index = int(result.as_numpy("INDEX").reshape(-1)[0])
    span = result.as_numpy("TEXT_SPAN").reshape(-1)[0]
    return TtsChunk(audio, rate, index, span.decode() if isinstance(span, bytes) else str(span))
