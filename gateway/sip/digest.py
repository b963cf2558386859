"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 3261 section 22), sans-I/O.

Client side: parse a ``WWW-Authenticate`` / ``Proxy-Authenticate`` challenge, pick the best
of several, and build the ``Authorization`` / ``Proxy-Authorization`` value. The same
``expected_response`` serves a server-side verifier (see ``verify``).

Layer: pure core.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
# Canonical spelling, keyed by upper case; order = preference (best first).
_ALGORITHMS = {name.upper(): name for name in ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")}
_PREFERENCE = tuple(_ALGORITHMS.values())


class DigestError(ValueError):
    """A challenge or credentials value is malformed or cannot be answered."""


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


# --------------------------------------------------------------------------- parsing


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise DigestError("unterminated quoted string")


def _read_param(text: str, pos: int) -> tuple[str, str, int]:
    """Read ``name = (token | quoted-string)`` at ``pos``; return name, value, next index."""
    eq = text.find("=", pos)
    if eq < 0:
        raise DigestError(f"auth-param without '=' in {text[pos:]!r}")
    name = text[pos:eq].strip().lower()
    if not name or any(ch in name for ch in ' \t",;'):
        raise DigestError(f"bad auth-param name {text[pos:eq]!r}")
    pos = eq + 1
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    if pos < len(text) and text[pos] == '"':
        value, pos = _read_quoted(text, pos)
        rest_end = text.find(",", pos)
        junk = text[pos : rest_end if rest_end >= 0 else len(text)]
        if junk.strip():
            raise DigestError(f"junk after quoted value of {name}")
        return name, value, rest_end if rest_end >= 0 else len(text)
    end = text.find(",", pos)
    end = len(text) if end < 0 else end
    return name, text[pos:end].strip(), end


def _parse_auth_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        if text[pos] in " \t,":
            pos += 1
            continue
        name, value, pos = _read_param(text, pos)
        if name in params:
            raise DigestError(f"duplicate auth-param {name}")
        params[name] = value
    return params


def _split_scheme(value: str) -> tuple[str, str]:
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported auth scheme {scheme!r}")
    return "Digest", rest


def _canonical_algorithm(value: str | None) -> str:
    if value is None:
        return "MD5"
    algorithm = _ALGORITHMS.get(value.strip().upper())
    if algorithm is None:
        raise DigestError(f"unsupported digest algorithm {value!r}")
    return algorithm


def parse_challenge(value: str) -> Challenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate value (one Digest challenge)."""
    scheme, rest = _split_scheme(value)
    params = _parse_auth_params(rest)
    if "realm" not in params or "nonce" not in params:
        raise DigestError("challenge lacks realm or nonce")
    qop = tuple(item.strip().lower() for item in params.get("qop", "").split(",") if item.strip())
    return Challenge(
        scheme=scheme,
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=_canonical_algorithm(params.get("algorithm")),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").strip().lower() == "true",
    )


def _answerable(challenge: Challenge) -> bool:
    return not challenge.qop or "auth" in challenge.qop or "auth-int" in challenge.qop


def choose_challenge(values: Sequence[str]) -> Challenge:
    """Pick the strongest usable challenge (SHA-256 over MD5); skip unparseable/unsupported."""
    usable: list[Challenge] = []
    for value in values:
        try:
            challenge = parse_challenge(value)
        except DigestError:
            continue
        if _answerable(challenge):
            usable.append(challenge)
    if not usable:
        raise DigestError("no usable Digest challenge offered")
    return min(usable, key=lambda ch: _PREFERENCE.index(ch.algorithm))


def parse_credentials(value: str) -> dict[str, str]:
    """Parse an Authorization / Proxy-Authorization Digest value into lower-cased params."""
    _, rest = _split_scheme(value)
    return _parse_auth_params(rest)


# --------------------------------------------------------------------------- computing


def _hash_for(algorithm: str) -> Callable[[bytes], str]:
    return _HASHES[algorithm.removesuffix("-sess")]


def _ha1(ch: Challenge, username: str, password: str, cnonce: str | None) -> str:
    digest = _hash_for(ch.algorithm)
    ha1 = digest(f"{username}:{ch.realm}:{password}".encode())
    if ch.algorithm.endswith("-sess"):
        if cnonce is None:
            raise DigestError(f"{ch.algorithm} needs a cnonce")
        ha1 = digest(f"{ha1}:{ch.nonce}:{cnonce}".encode())
    return ha1


def expected_response(
    ch: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int | None,
    cnonce: str | None,
    qop: str | None,
    body: bytes = b"",
) -> str:
    """The ``response`` hex digest for these inputs (client and server compute the same)."""
    digest = _hash_for(ch.algorithm)
    ha1 = _ha1(ch, username, password, cnonce)
    if qop == "auth-int":
        ha2 = digest(f"{method}:{uri}:{digest(body)}".encode())
    else:
        ha2 = digest(f"{method}:{uri}".encode())
    if qop is None:
        return digest(f"{ha1}:{ch.nonce}:{ha2}".encode())
    if qop not in ("auth", "auth-int"):
        raise DigestError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise DigestError("qop requires nc and cnonce")
    return digest(f"{ha1}:{ch.nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}".encode())


def _choose_qop(ch: Challenge) -> str | None:
    if not ch.qop:
        return None
    if "auth" in ch.qop:
        return "auth"
    if "auth-int" in ch.qop:
        return "auth-int"
    raise DigestError(f"no supported qop in {ch.qop!r}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    ch: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int,
    cnonce: str,
    body: bytes = b"",
) -> str:
    """Full Authorization / Proxy-Authorization value answering ``ch``.

    qop is "auth" when offered, else "auth-int" (digesting ``body``); without qop the
    RFC 2069 form (no qop/nc/cnonce) is produced.
    """
    if not 0 < nc <= 0xFFFFFFFF:
        raise DigestError(f"nonce count out of range: {nc}")
    qop = _choose_qop(ch)
    response = expected_response(
        ch, method=method, uri=uri, username=username, password=password,
        nc=nc, cnonce=cnonce, qop=qop, body=body,
    )  # fmt: skip
    parts = [
        f"username={_quote(username)}", f"realm={_quote(ch.realm)}",
        f"nonce={_quote(ch.nonce)}", f"uri={_quote(uri)}",
        f"response={_quote(response)}", f"algorithm={ch.algorithm}",
    ]  # fmt: skip
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc:08x}", f"cnonce={_quote(cnonce)}"]
    if ch.opaque is not None:
        parts.append(f"opaque={_quote(ch.opaque)}")
    return "Digest " + ", ".join(parts)


def verify(
    ch: Challenge, credentials: dict[str, str], *, method: str, password: str, body: bytes = b""
) -> bool:
    """Server-side check of parsed credentials against the challenge that was issued."""
    try:
        if credentials.get("realm") != ch.realm or credentials.get("nonce") != ch.nonce:
            return False
        if _canonical_algorithm(credentials.get("algorithm")) != ch.algorithm:
            return False
        nc_text = credentials.get("nc")
        expected = expected_response(
            ch, method=method, uri=credentials["uri"], username=credentials["username"],
            password=password, nc=int(nc_text, 16) if nc_text is not None else None,
            cnonce=credentials.get("cnonce"), qop=credentials.get("qop"), body=body,
        )  # fmt: skip
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, credentials.get("response", "").lower())


__all__ = [
    "Challenge",
    "DigestError",
    "authorization",
    "choose_challenge",
    "expected_response",
    "parse_challenge",
    "parse_credentials",
    "verify",
]
