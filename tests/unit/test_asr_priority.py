"""Live sources first on the shared Triton stream: a call's audio is written before batch
(file source) audio that was waiting longer, file turns are served whenever no live channel
waits, and the half-close goes out ahead of what is left. Driven like test_asr_hub: the
writer's turns by hand against the hub's outbox, no sockets."""

from __future__ import annotations

import asyncio

import numpy as np

from gateway.asr.audioqueue import SourcePolicy
from gateway.asr.stream import AsrChannel, AsrHub, Outbox
from tests.unit.test_asr_hub import FRAME, RATE, _hub, _push


def _turn(hub: AsrHub) -> int | None:
    """One writer turn: the CORRID written (None: the half-close), as AsrHub._writer does."""
    ch = hub._outbox.popleft()
    if ch is None:
        return None
    request = hub._next_request(ch)
    hub.pump(ch)
    assert request is not None
    return int(request.parameters["sequence_id"].int64_param)


async def _file(hub: AsrHub, key: str, seconds: float) -> AsrChannel:
    ch = hub.open(key, lambda _c, _h, _l: None, source=SourcePolicy.FILE)
    assert await ch.feed(np.full(round(seconds * RATE), 0.1, np.float32))
    return ch


async def test_a_live_turn_goes_before_file_turns_queued_earlier() -> None:
    hub, _metrics = _hub()
    hub.connected = True
    files = [await _file(hub, f"batch/{n}", 1.5) for n in range(2)]   # scheduled first
    live = hub.open("call/customer", lambda _c, _h, _l: None)
    _push(live, 0.16)                                     # one chunk of a call, later
    assert _turn(hub) == live.corrid
    written = [_turn(hub) for _ in range(len(hub._outbox))]
    assert set(written) == {f.corrid for f in files}      # then the batch, in turn


async def test_file_turns_go_on_while_no_live_channel_waits() -> None:
    hub, _metrics = _hub()
    hub.connected = True
    batch = await _file(hub, "batch/0", 0.16)
    live = hub.open("call/agent", lambda _c, _h, _l: None)
    loop = asyncio.get_running_loop()
    live_turns, batch_turns = 0, 0
    for step in range(80):                                # a call at its pace, 20 ms frames
        assert await batch.feed(np.full(2560, 0.1, np.float32))   # the batch never runs dry
        live.push(np.full(FRAME, 0.1, np.float32), loop.time())
        written = _turn(hub)
        if step % 8 == 7:                                 # a live chunk just became ready:
            assert written == live.corrid                 # it goes first
            live_turns += 1
        else:
            assert written == batch.corrid                # spare turns are the batch's
            batch_turns += 1
    assert (live_turns, batch_turns) == (10, 70)


async def test_the_outbox_serves_live_then_file_and_half_closes_first() -> None:
    hub, _metrics = _hub()
    f1, f2 = (hub.open(k, lambda _c, _h, _l: None, source=SourcePolicy.FILE) for k in "ab")
    l1 = hub.open("c", lambda _c, _h, _l: None)
    outbox = Outbox()
    for ch in (f1, l1, f2):
        outbox.append(ch)
    assert len(outbox) == 3 and outbox
    assert [outbox.popleft() for _ in range(3)] == [l1, f1, f2]
    assert not outbox
    outbox.append(f1)
    outbox.append(None)
    assert outbox.popleft() is None and outbox.popleft() is f1 and not outbox
    outbox.append(l1)
    outbox.clear()
    assert not outbox and len(outbox) == 0
