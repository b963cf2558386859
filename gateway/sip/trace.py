"""SIP message trace: one log record per message in or out, credentials masked. Pure.

The trace is for operators debugging a PBX or trunk (``logging.sip_trace``, switchable live by
SIGHUP). Whatever could replay or crack a credential is masked before the message is logged:

* ``Authorization`` / ``Proxy-Authorization``: Digest ``response``, ``cnonce``, ``nonce`` and
  ``opaque`` values become ``***``; any other scheme (Bearer, Basic) keeps only its name.
* ``WWW-Authenticate`` / ``Proxy-Authenticate``: ``nonce``, ``opaque`` (and ``nextnonce``).
* ``Authentication-Info``: ``rspauth``, ``cnonce``, ``nextnonce``.
* SDP ``a=crypto`` key parameters (``inline:...``), which are SRTP master keys.

``username``, ``realm``, ``uri``, ``algorithm``, ``qop`` and ``nc`` stay visible: a wrong
user or realm is the commonest registration failure and the trace must show it.

Layer: pure core.
"""

from __future__ import annotations

import re
from typing import Any, Final

MASK: Final = "***"
_CHALLENGE_HEADERS: Final = frozenset({"www-authenticate", "proxy-authenticate"})
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization"})
_INFO_HEADERS: Final = frozenset({"authentication-info", "proxy-authentication-info"})
_SECRET_PARAMS: Final = {
    "challenge": frozenset({"nonce", "opaque", "nextnonce"}),
    "credentials": frozenset({"response", "cnonce", "nonce", "opaque"}),
    "info": frozenset({"rspauth", "cnonce", "nextnonce"}),
}
# name = "quoted value" | token, inside a Digest header value
_PARAM_RE: Final = re.compile(r'(?P<name>[A-Za-z0-9_-]+)(?P<eq>\s*=\s*)(?P<value>"(?:[^"\\]|\\.)*"'
                              r'|[^\s,"]+)')
_CRYPTO_KEY_RE: Final = re.compile(r"(?i)(inline:)[^\s|;]+")


def _mask_params(value: str, secret: frozenset[str]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group("name").lower() not in secret:
            return m.group(0)
        quoted = m.group("value").startswith('"')
        return m.group("name") + m.group("eq") + (f'"{MASK}"' if quoted else MASK)

    return _PARAM_RE.sub(one, value)


def _mask_credentials(value: str) -> str:
    lead = value[:len(value) - len(value.lstrip())]
    scheme, _sep, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return lead + (f"{scheme} {MASK}" if rest.strip() else MASK)
    return _mask_params(value, _SECRET_PARAMS["credentials"])


def mask_header(name: str, value: str) -> str:
    """The header's value with its secrets masked (unchanged for other headers)."""
    key = name.strip().lower()
    if key in _CREDENTIAL_HEADERS:
        return _mask_credentials(value)
    if key in _CHALLENGE_HEADERS:
        return _mask_params(value, _SECRET_PARAMS["challenge"])
    if key in _INFO_HEADERS:
        return _mask_params(value, _SECRET_PARAMS["info"])
    return value


def _unfold(head: str) -> list[str]:
    """Header lines with RFC 3261 folding (continuation lines) joined."""
    lines: list[str] = []
    for line in head.split("\n"):
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def mask_message(data: bytes) -> str:
    """The whole message as text (undecodable bytes replaced), secrets masked."""
    text = data.decode("utf-8", errors="replace")
    head, sep, body = text.partition("\r\n\r\n")
    if not sep:
        head, sep, body = text.partition("\n\n")
    lines = _unfold(head)
    out = lines[:1]
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        out.append(f"{name}:{mask_header(name, value)}" if colon else line)
    masked_body = _CRYPTO_KEY_RE.sub(lambda m: m.group(1) + MASK, body)
    return "\r\n".join(out) + sep + masked_body


def _hostport(addr: tuple[str, int]) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def trace_fields(direction: str, data: bytes, local: tuple[str, int],
                 remote: tuple[str, int], transport: str) -> dict[str, Any]:
    """The fields of one ``sip.trace`` log line."""
    message = mask_message(data)
    return {"direction": direction, "transport": transport,
            "local": _hostport(local), "remote": _hostport(remote),
            "bytes": len(data), "first_line": message.split("\r\n", 1)[0].split("\n", 1)[0],
            "message": message}
