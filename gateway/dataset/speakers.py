"""Pseudonymous speaker labels and hashed ids for the training-dataset export (issue 19).

Both are HMAC-SHA256 under a per-dataset secret ``salt`` (at least 16 bytes; keep it with
the dataset's operator, never in the dataset): the same participant gets the same label in
every export made with the same salt, and without the salt a label cannot be tied back to
a name or number (no dictionary attack on phone numbers). Inputs are separated by a NUL
and a purpose string, so a conversation id and a speaker identity never share a hash.

Layer: pure core.
"""

from __future__ import annotations

import hashlib
import hmac
import re

MIN_SALT_BYTES = 16
_ROLE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _digest(salt: bytes, *parts: str) -> str:
    if len(salt) < MIN_SALT_BYTES:
        raise ValueError(f"the dataset salt must be at least {MIN_SALT_BYTES} bytes")
    message = "\0".join(parts).encode("utf-8")
    return hmac.new(salt, message, hashlib.sha256).hexdigest()


def pseudonym(salt: bytes, role: str, identity: str) -> str:
    """``<role>-<8 hex>`` for one participant (``agent-3f9a1c2b``): ``role`` is the channel
    ("agent", "customer"), ``identity`` what identifies the person (a SIP URI, a SIPREC
    participant id, a display name); the label never contains the identity."""
    if not _ROLE.match(role):
        raise ValueError(f"a speaker role is a short lowercase word, not {role!r}")
    return f"{role}-{_digest(salt, 'speaker', role, identity)[:8]}"


def hashed_id(salt: bytes, conversation_id: str) -> str:
    """The conversation's id in the dataset: 16 hex characters (64 bits) of the HMAC."""
    return _digest(salt, "conversation", conversation_id)[:16]
