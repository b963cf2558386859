"""RTP port allocation from the configured range (pure): even RTP port, RTCP on port+1.

Layer: pure core.
"""

from __future__ import annotations

from collections import deque


class PortsExhausted(RuntimeError):
    """No free RTP port pair left: the call is refused with 503, never a crash."""


class PortAllocator:
    def __init__(self, port_min: int, port_max: int) -> None:
        if port_min % 2 or port_max < port_min + 1:
            raise ValueError(f"bad RTP port range {port_min}..{port_max}")
        # RTCP needs port+1, so the last even port is used only when port+1 is in range
        self._free: deque[int] = deque(range(port_min, port_max, 2))
        self._used: set[int] = set()

    @property
    def free(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        """The next free even port (round robin, so a just-freed port rests before reuse)."""
        if not self._free:
            raise PortsExhausted("no free RTP port pair in rtp.port_min..rtp.port_max")
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        if port in self._used:
            self._used.remove(port)
            self._free.append(port)

    def skip(self, port: int) -> None:
        """A port another process holds: take it out of rotation until the end of the queue."""
        self.release(port)
