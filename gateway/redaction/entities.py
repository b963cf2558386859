"""What the detectors report: entity names, found spans over tokens, custom patterns.

Layer: pure core.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

CARD: Final = "card"
CVV: Final = "cvv"
EXPIRY: Final = "expiry"
SSN: Final = "ssn"
BANK_ACCOUNT: Final = "bank_account"
ROUTING: Final = "routing"
IBAN: Final = "iban"
PHONE: Final = "phone"
EMAIL: Final = "email"
DOB: Final = "dob"
DTMF: Final = "dtmf"
"""Keypad digits in secure mode (not a text detector: the processor masks DtmfReceived)."""

BUILTIN_ENTITIES: Final[tuple[str, ...]] = (
    CARD, CVV, EXPIRY, SSN, BANK_ACCOUNT, ROUTING, IBAN, PHONE, EMAIL, DOB)

DEFAULT_TAGS: Final[dict[str, str]] = {
    CARD: "[CARD]", CVV: "[CVV]", EXPIRY: "[EXPIRY]", SSN: "[SSN]",
    BANK_ACCOUNT: "[ACCOUNT]", ROUTING: "[ROUTING]", IBAN: "[IBAN]", PHONE: "[PHONE]",
    EMAIL: "[EMAIL]", DOB: "[DOB]", DTMF: "[DTMF]",
}


@dataclass(frozen=True, slots=True)
class Found:
    """One entity found in a token sequence: tokens ``start`` (inclusive) to ``end``
    (exclusive). ``last4`` is the last four digits of a card (for ``[CARD ****1111]``),
    never any other value; ``evidence`` says why (``"luhn"``, ``"context"``,
    ``"checksum"``, ``"length"``, ``"pattern"``, ...) for tests and debugging."""

    entity: str
    start: int
    end: int
    evidence: str
    last4: str | None = None


@dataclass(frozen=True, slots=True)
class CustomPattern:
    """An operator's pattern (``[[redaction.custom]]``): a regular expression matched,
    case-insensitively, against the utterance's text (tokens joined by single spaces); a
    match redacts every token it touches as entity ``name``."""

    name: str
    regex: re.Pattern[str]
