"""Free loopback ports for test peers.

The kernel picks an ephemeral port (bind to port 0); the socket is closed
before returning, so a small race with other processes remains. Callers that
need certainty must retry on EADDRINUSE.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"
_MAX_ATTEMPTS = 200


def _bind_probe(kind: socket.SocketKind, host: str, port: int) -> int | None:
    """Bind a socket of ``kind`` to (host, port); return the bound port or None."""
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return None
        bound: int = sock.getsockname()[1]
        return bound


def _is_free(kind: socket.SocketKind, host: str, port: int) -> bool:
    return _bind_probe(kind, host, port) is not None


def free_udp_port(host: str = LOOPBACK) -> int:
    """A UDP port on ``host`` that was free a moment ago."""
    port = _bind_probe(socket.SOCK_DGRAM, host, 0)
    if port is None:
        raise OSError(f"cannot bind any UDP port on {host}")
    return port


def distinct_tcp_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` different free TCP ports (each probed on its own, so they can repeat)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_tcp_port(host)
        if port not in ports:
            ports.append(port)
    return ports


def free_tcp_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    port = _bind_probe(socket.SOCK_STREAM, host, 0)
    if port is None:
        raise OSError(f"cannot bind any TCP port on {host}")
    return port


def free_udp_port_pair(host: str = LOOPBACK) -> int:
    """An even UDP port P such that P and P+1 are free (RTP and RTCP)."""
    for _ in range(_MAX_ATTEMPTS):
        port = free_udp_port(host)
        even = port - (port % 2)
        if even > 1024 and all(_is_free(socket.SOCK_DGRAM, host, p) for p in (even, even + 1)):
            return even
    raise OSError(f"no free even/odd UDP port pair on {host} after {_MAX_ATTEMPTS} attempts")


def free_port_both(host: str = LOOPBACK) -> int:
    """A port free for UDP and for TCP on ``host`` at the same time (SIP listeners)."""
    for _ in range(_MAX_ATTEMPTS):
        port = free_udp_port(host)
        if _is_free(socket.SOCK_STREAM, host, port):
            return port
    raise OSError(f"no port free for both UDP and TCP on {host} after {_MAX_ATTEMPTS} attempts")
