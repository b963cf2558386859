"""Paced PCMU RTP from a fresh UDP socket, for the shell tests that play known audio into a
real media leg (recording masks, talk statistics)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from gateway.media.g711 import ulaw_encode
from gateway.media.rtp import RtpPacket

HOST = "127.0.0.1"
RATE = 8000
FRAME = 160


async def send_pcmu(port: int, pcm: npt.NDArray[np.int16], *, ssrc: int = 0x1234,
                    seq0: int = 1000, ts0: int = 50_000, at_s: float = -1.0,
                    action: Callable[[], None] = lambda: None) -> None:
    """20 ms PCMU packets on real-time deadlines; ``action()`` once the packet that starts
    at ``at_s`` was sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        for k in range(len(pcm) // FRAME):
            packet = RtpPacket(payload_type=0, sequence_number=(seq0 + k) & 0xFFFF,
                               timestamp=(ts0 + k * FRAME) & 0xFFFF_FFFF, ssrc=ssrc,
                               payload=ulaw_encode(pcm[k * FRAME:(k + 1) * FRAME]))
            sock.sendto(packet.serialize(), (HOST, port))
            if k * FRAME == round(at_s * RATE):
                action()
            await asyncio.sleep(max(0.0, start + (k + 1) * 0.02 - loop.time()))
    finally:
        sock.close()
