"""Calls placed by the bench itself: hand-written SIP over UDP (tests/rawsip) and RTP from a
paced sender that plays many calls from one thread, with optional packet drops.

The sender keeps absolute 20 ms deadlines (like a phone) and records the wall-clock time
(``time.time()``, the clock of the gateway's event ``ts``) when packet 0 left, so a
position in the audio maps to the moment it was sent.
"""

from __future__ import annotations

import random
import re
import secrets
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tests.peers.sipp import linear_to_ulaw
from tests.rawsip import UdpPeer, request, sdp_offer

PTIME_S = 0.02
FRAME_SAMPLES = 160
PCMU = 0
SIP_TIMEOUT_S = 10.0
_M_AUDIO = re.compile(rb"m=audio (\d+) ")


class CallSetupError(RuntimeError):
    """The gateway did not answer an INVITE with 200 and an SDP answer."""


@dataclass(slots=True)
class RawCall:
    """One PCMU call to the gateway from a fresh SIP socket and a fresh RTP socket."""

    gateway_sip_port: int
    headers: str = ""
    sip_call_id: str = field(default_factory=lambda: "bench-" + secrets.token_hex(6))
    sip: UdpPeer = field(default_factory=UdpPeer)
    rtp: socket.socket = field(init=False)
    remote_rtp: tuple[str, int] | None = None
    to_tag: str = ""

    def __post_init__(self) -> None:
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))

    def _send(self, method: str, cseq: int = 1, *, to_tag: str | None = None,
              headers: str = "", body: bytes = b"") -> None:
        data = request(method, self.gateway_sip_port, local_port=self.sip.port,
                       call_id=self.sip_call_id, cseq=cseq, to_tag=to_tag, headers=headers,
                       body=body)
        self.sip.send(data, self.gateway_sip_port)

    def setup(self) -> None:
        offer = sdp_offer(self.rtp.getsockname()[1], "0")
        headers = "Content-Type: application/sdp\r\n" + self.headers
        self._send("INVITE", headers=headers, body=offer)
        replies = self.sip.replies(timeout_s=SIP_TIMEOUT_S)
        final = replies[-1] if replies else None
        if final is None or final.status != 200:
            status = final.status if final else "no reply"
            raise CallSetupError(f"INVITE {self.sip_call_id}: {status}")
        self.to_tag = (final.header("To") or "").split("tag=")[-1]
        m = _M_AUDIO.search(final.body)
        if m is None:
            raise CallSetupError(f"INVITE {self.sip_call_id}: 200 without m=audio")
        self.remote_rtp = ("127.0.0.1", int(m.group(1)))
        self._send("ACK", to_tag=self.to_tag)

    def hangup(self) -> bool:
        self._send("BYE", cseq=2, to_tag=self.to_tag)
        replies = self.sip.replies(timeout_s=SIP_TIMEOUT_S)
        return bool(replies) and replies[-1].status == 200

    def close(self) -> None:
        self.rtp.close()
        self.sip.close()


@dataclass(frozen=True, slots=True)
class Stream:
    """What one call plays: its RTP packets, and which of them the sender drops."""

    call: RawCall
    packets: Sequence[bytes]
    dropped: frozenset[int] = frozenset()


def rtp_packets(pcm: npt.NDArray[np.int16], ssrc: int) -> list[bytes]:
    """PCMU RTP packets of 20 ms (RFC 3550 header, marker on the first; a partial last frame
    is dropped)."""
    payload = linear_to_ulaw(pcm[: len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES]).tobytes()
    seq0, ts0 = ssrc % 30000, ssrc % 100000
    out = []
    for i in range(len(payload) // FRAME_SAMPLES):
        header = struct.pack("!BBHII", 0x80, PCMU | (0x80 if i == 0 else 0),
                             (seq0 + i) & 0xFFFF, (ts0 + i * FRAME_SAMPLES) & 0xFFFFFFFF, ssrc)
        out.append(header + payload[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
    return out


def talkspurt_packets(pcm: npt.NDArray[np.int16], ssrc: int, talk: Sequence[tuple[int, int]]
                      ) -> tuple[list[bytes], frozenset[int]]:
    """What a sender with silence suppression and no comfort noise sends: only the 20 ms
    slots of each talkspurt ``[first, last)`` (slot indices), sequence numbers counting sent
    packets only, timestamps by the audio's clock (a jump across each pause), the marker on
    each talkspurt's first packet. Returns one entry per slot up to the last one sent (b""
    for a silent slot) and the silent slots (``Stream.dropped``: not sent)."""
    slots = len(pcm) // FRAME_SAMPLES
    send = sorted({i for a, b in talk for i in range(max(0, a), min(b, slots))})
    if not send:
        return [], frozenset()
    payload = linear_to_ulaw(pcm[: slots * FRAME_SAMPLES]).tobytes()
    seq0, ts0 = ssrc % 30000, ssrc % 100000
    out = [b""] * (send[-1] + 1)
    sent = set(send)
    for n, i in enumerate(send):
        marker = 0x80 if i - 1 not in sent else 0
        header = struct.pack("!BBHII", 0x80, PCMU | marker, (seq0 + n) & 0xFFFF,
                             (ts0 + i * FRAME_SAMPLES) & 0xFFFFFFFF, ssrc)
        out[i] = header + payload[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]
    return out, frozenset(range(len(out))) - sent


def drop_indices(count: int, loss: float, seed: int) -> frozenset[int]:
    """Independent random drops with probability ``loss`` (reproducible from ``seed``)."""
    if not 0.0 <= loss < 1.0:
        raise ValueError(f"loss must be within 0..1, got {loss}")
    rng = random.Random(seed)
    return frozenset(i for i in range(count) if rng.random() < loss)


def play(streams: Sequence[Stream], ptime_s: float = PTIME_S) -> float:
    """Send every stream's packets on 20 ms deadlines, all calls side by side; the return is
    the wall-clock time packet 0 was due (packet i is due ``i * ptime_s`` later)."""
    longest = max((len(s.packets) for s in streams), default=0)
    start = time.monotonic()
    wall0 = time.time()
    for i in range(longest):
        delay = start + i * ptime_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for s in streams:
            if i < len(s.packets) and i not in s.dropped and s.call.remote_rtp is not None:
                s.call.rtp.sendto(s.packets[i], s.call.remote_rtp)
    return wall0
