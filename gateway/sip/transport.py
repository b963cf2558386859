"""SIP over UDP and TCP (IPv4/IPv6): thin asyncio shells that hand bytes to a callback.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from gateway.logs import get_logger
from gateway.sip.message import SipParseError, StreamFramer
from gateway.sip.trace import trace_fields

Address = tuple[str, int]
Receiver = Callable[[bytes, Address, str], None]
CONNECT_TIMEOUT_S = 5.0


def _addr(raw: Any) -> Address:
    return (str(raw[0]), int(raw[1]))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, receive: Receiver) -> None:
        self._receive = receive

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data.strip(b"\r\n"):          # bare CRLF keep-alives carry nothing
            self._receive(data, _addr(addr), "udp")

    def error_received(self, exc: Exception) -> None:
        return None


class _Tcp(asyncio.Protocol):
    def __init__(self, owner: SipTransports) -> None:
        self._owner = owner
        self._framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self.local: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.peer = _addr(transport.get_extra_info("peername"))
        self.local = _addr(transport.get_extra_info("sockname"))
        self._owner.tcp_connections[self.peer] = self

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            self._owner.on_stream_error(self.peer, exc)
            if self.transport is not None:
                self.transport.close()
            return
        if self._framer.pop_pings():
            self.write(b"\r\n")                  # RFC 5626 pong
        for raw in messages:
            self._owner.tcp_in(raw, self)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._owner.tcp_connections.get(self.peer) is self:
            del self._owner.tcp_connections[self.peer]


class SipTransports:
    """Listening sockets plus outbound TCP connections, keyed by the peer's address."""

    def __init__(self, receive: Receiver, on_stream_error: Callable[[Address, Exception], None]
                 ) -> None:
        self.receive = receive
        self.on_stream_error = on_stream_error
        self.tcp_connections: dict[Address, _Tcp] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self.port = 0
        self._pending: set[asyncio.Task[None]] = set()
        self.trace_enabled = False       # logging.sip_trace: one sip.trace line per message
        self._log = get_logger("sip")

    async def start(self, host: str, port: int, transports: tuple[str, ...]) -> int:
        """Bind UDP and/or TCP on the same port (port 0: pick one free for both)."""
        for _attempt in range(20):
            try:
                return await self._bind(host, port, transports)
            except OSError:
                await self.stop()
                if port != 0:
                    raise
        raise OSError(f"could not bind SIP on {host} with a common UDP/TCP port")

    async def _bind(self, host: str, port: int, transports: tuple[str, ...]) -> int:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if "udp" in transports:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self._udp_in), local_addr=(host, port), family=family)
            port = self._udp.get_extra_info("sockname")[1]
        if "tcp" in transports:
            self._tcp_server = await loop.create_server(
                lambda: _Tcp(self), host, port, family=family, reuse_address=True)
            port = self._tcp_server.sockets[0].getsockname()[1]
        self.port = port
        return port

    def is_open(self) -> bool:
        """Every configured listening socket is still open (none was closed by an error)."""
        udp_ok = self._udp is None or not self._udp.is_closing()
        tcp_ok = self._tcp_server is None or self._tcp_server.is_serving()
        return self.port != 0 and udp_ok and tcp_ok and (
            self._udp is not None or self._tcp_server is not None)

    def _udp_in(self, data: bytes, addr: Address, transport: str) -> None:
        if self.trace_enabled:
            self._trace("in", data, self._udp_local(), addr, transport)
        self.receive(data, addr, transport)

    def tcp_in(self, data: bytes, conn: _Tcp) -> None:
        if self.trace_enabled:
            self._trace("in", data, conn.local, conn.peer, "tcp")
        self.receive(data, conn.peer, "tcp")

    def _udp_local(self) -> Address:
        return _addr(self._udp.get_extra_info("sockname")) if self._udp else ("", self.port)

    def _trace(self, direction: str, data: bytes, local: Address, remote: Address,
               transport: str) -> None:
        self._log.info("sip.trace", **trace_fields(direction, data, local, remote, transport))

    def send(self, data: bytes, addr: Address, transport: str) -> None:
        if transport == "udp":
            if self._udp is not None:
                if self.trace_enabled:
                    self._trace("out", data, self._udp_local(), addr, "udp")
                self._udp.sendto(data, addr)
            return
        conn = self.tcp_connections.get(addr)
        if conn is not None:
            if self.trace_enabled:
                self._trace("out", data, conn.local, addr, "tcp")
            conn.write(data)
            return
        task = asyncio.create_task(self._connect_and_send(data, addr))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _connect_and_send(self, data: bytes, addr: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            _t, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Tcp(self), addr[0], addr[1]), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            self.on_stream_error(addr, exc)    # the transaction's timer reports the failure
            return
        if self.trace_enabled:
            self._trace("out", data, proto.local, addr, "tcp")
        proto.write(data)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp_server is not None:
            self._tcp_server.close()
            self._tcp_server = None
        for conn in list(self.tcp_connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for task in list(self._pending):
            task.cancel()
