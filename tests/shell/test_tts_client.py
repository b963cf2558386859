"""The TTS client shell (gateway/tts/client.py) in-process against a real tts_cpu_default:
streamed sentence chunks in order, model errors as TtsError, a reply cut off early leaves
the client usable."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt
import pytest

from gateway.config import TritonConfig
from gateway.triton_launcher import TritonProcess
from gateway.tts.client import TtsChunk, TtsClient, TtsError
from tests.peers.ports import free_tcp_port

PIPER_RATE_HZ = 22050
SILENCE_RMS = 0.005


@pytest.fixture
async def tts(shell_triton: TritonProcess) -> AsyncIterator[TtsClient]:
    client = TtsClient(TritonConfig(url=shell_triton.grpc_url, tts_model="tts_cpu_default"))
    try:
        yield client
    finally:
        await client.close()


async def speak(client: TtsClient, text: str, **kw: float | str) -> list[TtsChunk]:
    return [chunk async for chunk in client.synthesize(text, **kw)]  # type: ignore[arg-type]


def rms(audio: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


async def test_sentences_stream_as_ordered_chunks_of_speech(tts: TtsClient) -> None:
    chunks = await speak(tts, "Hello, this is the help desk. How can I help you today?")
    assert [c.index for c in chunks] == [0, 1]
    assert [c.text for c in chunks] == ["Hello, this is the help desk.",
                                        "How can I help you today?"]
    for chunk in chunks:
        assert chunk.sample_rate_hz == PIPER_RATE_HZ
        assert chunk.audio.dtype == np.float32 and chunk.audio.ndim == 1
        assert chunk.audio.size > 0.3 * PIPER_RATE_HZ        # a sentence, not a click
        assert rms(chunk.audio) > SILENCE_RMS


async def test_rate_is_sent_to_the_model(tts: TtsClient) -> None:
    slow = sum(c.audio.size for c in await speak(tts, "Please hold the line.", rate=0.5))
    fast = sum(c.audio.size for c in await speak(tts, "Please hold the line.", rate=2.0))
    assert slow > 2 * fast, (slow, fast)


@pytest.mark.parametrize(("text", "voice", "expected"), [
    ("", "", "empty"), ("Hello.", "no_such_voice", "no_such_voice")])
async def test_model_errors_raise_tts_error_with_the_models_reason(
        tts: TtsClient, text: str, voice: str, expected: str) -> None:
    with pytest.raises(TtsError, match=expected):
        await speak(tts, text, voice=voice)
    assert [c.text for c in await speak(tts, "Goodbye.")] == ["Goodbye."]   # still usable


async def test_a_reply_cut_off_after_its_first_chunk_leaves_the_client_usable(
        tts: TtsClient) -> None:
    stream = tts.synthesize("First sentence here. Second sentence that is never heard.")
    first = await anext(stream)
    assert first.index == 0 and first.text == "First sentence here."
    await stream.aclose()                                    # barge-in: stop listening
    assert [c.index for c in await speak(tts, "Again. And again.")] == [0, 1]


async def test_close_then_reuse_opens_a_new_channel(tts: TtsClient) -> None:
    await tts.close()
    await tts.close()                                         # twice is harmless
    assert len(await speak(tts, "Still here.")) == 1


async def test_unreachable_triton_is_a_tts_error() -> None:
    """The playout reports a TtsError and goes on; any other exception ended its task."""
    client = TtsClient(TritonConfig(url=f"127.0.0.1:{free_tcp_port()}",
                                    tts_model="tts_cpu_default"))
    try:
        with pytest.raises(TtsError, match="UNAVAILABLE"):
            await speak(client, "Hello.")
    finally:
        await client.close()


async def test_replies_cut_off_mid_stream_are_read_to_their_end_not_cancelled(
        shell_triton: TritonProcess, tts: TtsClient) -> None:
    """Barge-in cuts replies after their first chunk: the client reads the rest in the
    background rather than cancelling the gRPC stream (the bundled Triton 2.51 can crash on
    a stream cancelled while the model still sends), and Triton is alive afterwards."""
    text = ("Thanks. I have found your account. I can see that the replacement part was "
            "sent last Tuesday. It should arrive by Friday. Is there anything else?")
    for _ in range(12):
        async with contextlib.aclosing(tts.synthesize(text)) as chunks:   # as the playout
            async for _chunk in chunks:
                break                               # cut after the first chunk
        assert tts._draining, "the cut reply's stream is neither read on nor ended"
    await tts.close()                               # waits for the drains (bounded)
    assert not tts._draining
    assert shell_triton.alive(), shell_triton.log_tail()
    assert "Signal (11)" not in shell_triton.log_tail(20000)
    assert len(await speak(tts, "Still here.")) >= 1
