"""A deliberately dumb SIP client for tests: hand-written requests over a UDP/TCP socket.

It does not use the gateway's parser, so it checks the gateway independently.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from dataclasses import dataclass

STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3}) ([^\r\n]*)")


@dataclass
class Reply:
    status: int
    reason: str
    raw: bytes

    def header(self, name: str) -> str | None:
        m = re.search(rb"(?im)^" + name.encode() + rb"\s*:\s*([^\r\n]*)", self.raw)
        return m.group(1).decode() if m else None

    @property
    def body(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.raw else b""


def request(method: str, port: int, *, local_port: int, call_id: str | None = None,
            uri: str | None = None, headers: str = "", body: bytes = b"", cseq: int = 1,
            branch: str | None = None, from_tag: str = "t1", to_tag: str | None = None,
            transport: str = "UDP", host: str = "127.0.0.1") -> bytes:
    call_id = call_id or secrets.token_hex(8)
    branch = branch or "z9hG4bK" + secrets.token_hex(8)
    to = f"<sip:gw@{host}:{port}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri or f'sip:gw@{host}:{port}'} SIP/2.0",
        f"Via: SIP/2.0/{transport} {host}:{local_port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:tester@{host}:{local_port}>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:tester@{host}:{local_port}>",
    ]
    if headers:
        lines += [h for h in headers.strip().splitlines() if h]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sdp_offer(port: int, codecs: str = "0 8 101", direction: str = "sendrecv") -> bytes:
    rtpmaps = {"0": "PCMU/8000", "8": "PCMA/8000", "18": "G729/8000",
               "101": "telephone-event/8000"}
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio {port} RTP/AVP {codecs}"]
    lines += [f"a=rtpmap:{pt} {rtpmaps[pt]}" for pt in codecs.split()]
    lines += ["a=ptime:20", f"a={direction}"]
    return ("\r\n".join(lines) + "\r\n").encode()


class UdpPeer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.host = host

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (self.host, port))

    def recv(self, timeout_s: float = 3.0) -> bytes | None:
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recvfrom(65535)[0]
        except TimeoutError:
            return None

    def replies(self, until_final: bool = True, timeout_s: float = 5.0) -> list[Reply]:
        """Responses (requests the gateway sends us are skipped) until a final one."""
        out: list[Reply] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data = self.recv(max(0.05, deadline - time.monotonic()))
            if data is None:
                break
            m = STATUS_RE.match(data)
            if not m:
                continue
            out.append(Reply(int(m.group(1)), m.group(2).decode(), data))
            if until_final and int(m.group(1)) >= 200:
                break
        return out

    def close(self) -> None:
        self.sock.close()


def response_to(raw_request: bytes, status: int = 200, reason: str = "OK") -> bytes:
    """A response to a request the gateway sent us (copies Via, From, To, Call-ID, CSeq)."""
    head = raw_request.split(b"\r\n\r\n", 1)[0].decode()
    keep = [line for line in head.split("\r\n")[1:]
            if line.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")]
    return ("\r\n".join([f"SIP/2.0 {status} {reason}", *keep, "Content-Length: 0"])
            + "\r\n\r\n").encode()
