"""The PII detectors: ASR tokens of one utterance in, non-overlapping ``Found`` spans out.

:func:`detect` finds cards, CVVs, expiry dates, SSNs, routing and bank account numbers,
IBANs, phone numbers, e-mail addresses (written or spoken), dates of birth and the
operator's custom patterns; :func:`asked_for` tells which of them an (agent's) utterance
asks for, which the caller hands back as ``context`` for the customer's next utterances.

How a digit run (:func:`gateway.redaction.numbers.digit_runs`) is judged, first match wins:

1. 13-19 digits, Luhn-valid, with a known IIN: a card, whatever the context.
2. A run followed by a unit (``dollars``, ``pm``, ``minutes`` ...) is a quantity.
3. When the nearest cue before the run (since the previous run, at most 12 tokens back)
   names a PII-free number (``order``, ``ticket``, ``reference``, ``room`` ...), nothing.
4. A card run on into an expiry and/or a CVV in one breath (``4111 1111 1111 1111 123``;
   ``twelve twenty seven one two three`` under an expiry cue) is split at a token boundary.
5. The cues just before the run (``card``, ``security code``, ``expires``, ``social``,
   ``routing``, ``account``, ``phone``, ``born`` ...; ``the code`` only where cards are
   talked about) decide; else the cues anywhere in the utterance and the caller's
   ``context``; under them, in this order: an expiry (MMYY, MYY, MMYYYY; under a card cue
   only written with a slash or said as a month and a year from 20 to 39, ``oh nine twenty
   six``), a numeric date of birth, a CVV (3-4 digits; also any 3-4 digits after an expiry
   in card talk), an SSN (2-9 digits: whole, "the last four", or one group of it), a
   routing number (9 digits, ABA checksum), a phone number of phone shape, a card (4+
   digits: groups read one at a time, or a garbled number), part of an IBAN (4+ digits), a
   bank account (6-17 digits), a phone number (7-15 digits).
6. Else the shape alone: an SSN written 3-2-4 or read digit by digit (valid area, group,
   serial); a NANP number (``(555) 123-4567``, 10 digits, optional leading 1); ``+`` or
   ``plus`` and 10-15 digits; a UK number (11 digits, ``01``/``02``/``03``/``07``).

Dates with a month name (``march fourteenth nineteen eighty five``, ``the 14th of march``,
``september twenty twenty six``) are a date of birth under a birth cue, an expiry under an
expiry or card cue (month and year only), else a plain date that no digit rule may claim.
E-mail addresses are written (``a@b.com``) or spoken (``john dot smith at example dot com``:
up to three words of local part before ``at``, a domain ending in a known TLD; in e-mail
talk also with the ``at`` misheard, ``smith of example dot com``, or not heard); an IBAN is
a known country code, its length, and mod 97, written or spelled letter by letter (its
first part alone, 8+ characters, when an IBAN was asked for).

:func:`asked_for` drops a card word beside a CVV or expiry question (``when does the card
expire`` asks for the expiry only) and cues inside an aside (``the mobile number on the
account`` asks for a phone number only).
Layer: pure core.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Final

from gateway.redaction.entities import (
    BANK_ACCOUNT,
    BUILTIN_ENTITIES,
    CARD,
    CVV,
    DOB,
    EMAIL,
    EXPIRY,
    IBAN,
    PHONE,
    ROUTING,
    SSN,
    CustomPattern,
    Found,
)
from gateway.redaction.numbers import (
    DigitRun,
    digit_runs,
    has_digits,
    normalise,
    ordinal_value,
)

_NOT_PII: Final = "-"        # the cue of a PII-free number (order, ticket, room ...)
_CARD_WORD: Final = "card?"  # "card", "visa" ...: a card cue, but not a request on its own
_CODE_WORD: Final = "code?"  # "the code": a CVV cue where cards are talked about
_ASIDE: Final = "~"          # "on the account", "of the card": masks the cues inside it
_CARD_TALK: Final = frozenset({CARD, _CARD_WORD, CVV, EXPIRY})
_LEAD_TOKENS: Final = 12

_CUE_PHRASES: Final[dict[str, tuple[str, ...]]] = {
    CARD: ("long number", "sixteen digit", "sixteen digits", "16 digit", "16 digits",
           "card number", "pan number", "number on the card", "number on your card",
           "number on the front", "card details", "card no"),
    _CARD_WORD: ("card", "cards", "visa", "mastercard", "master card", "amex",
                 "american express", "credit", "debit", "on the front"),
    CVV: ("cvv", "cvc", "cvv2", "cvc2", "csc", "cid", "security code", "security digits",
          "verification code", "verification number", "three digits", "three digit",
          "3 digits", "3 digit", "three-digit", "3-digit", "on the back", "digit code",
          "code on the front", "code on the back"),
    _CODE_WORD: ("the code", "that code"),
    EXPIRY: ("expiry", "expires", "expire", "expired", "expiring", "expiration", "exp",
             "valid thru", "valid through", "valid until", "good thru", "good through",
             "valid-thru", "valid-through", "end date"),
    SSN: ("ssn", "social", "social security", "s s n", "s.s.n"),
    ROUTING: ("routing", "aba", "transit number"),
    BANK_ACCOUNT: ("account", "accounts", "acct", "sort code", "checking", "savings"),
    IBAN: ("iban", "i b a n"),
    PHONE: ("phone", "telephone", "mobile", "cell", "cellphone", "landline", "reach you",
            "call you", "call me", "callback", "call back", "contact number", "best number",
            "text me"),
    EMAIL: ("email", "e-mail", "e mail", "emails", "email address"),
    DOB: ("birth", "born", "birthday", "birthdate", "dob", "d.o.b"),
    _NOT_PII: ("order", "orders", "ticket", "reference", "ref", "confirmation", "tracking",
               "invoice", "booking", "reservation", "case", "claim", "room", "flight",
               "model", "serial", "part", "item", "sku", "extension", "ext", "zip",
               "postcode", "receipt", "transaction", "version", "page", "step", "gate",
               "seat", "floor", "suite", "apartment", "apt", "street", "avenue", "road",
               "price", "cost", "costs", "total", "balance", "amount", "quantity", "chapter",
               "episode", "channel", "platform", "route", "bus", "train", "score"),
    _ASIDE: ("on the account", "on your account", "on my account", "on the card",
             "on your card", "on my card", "of the card", "of your card", "on file",
             "for the account", "to the account", "direct debit"),
}

_UNITS_AFTER: Final = frozenset({
    "dollars", "dollar", "bucks", "cents", "cent", "pounds", "pound", "quid", "pence",
    "euros", "euro", "percent", "per", "am", "pm", "a.m", "p.m", "o'clock", "oclock",
    "minutes", "minute", "mins", "min", "hours", "hour", "hrs", "seconds", "secs", "days",
    "day", "weeks", "week", "months", "month", "years", "year", "times", "items", "pieces",
    "boxes", "units", "miles", "mile", "km", "kilometers", "kilos", "kg", "lbs", "grams",
    "gb", "mb", "people", "points", "degrees", "feet", "foot", "inches", "meters", "metres",
    "nights", "tickets", "orders"})


def _cue_index() -> dict[str, tuple[tuple[tuple[str, ...], str], ...]]:
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for entity, phrases in _CUE_PHRASES.items():
        for phrase in phrases:
            words = tuple(phrase.split())
            index.setdefault(words[0], []).append((words, entity))
    return {w: tuple(v) for w, v in index.items()}


_CUES: Final = _cue_index()


def _cue_hits(low: Sequence[str]) -> list[tuple[int, str]]:
    """(token index, cue) for every cue phrase in the normalised tokens, in order, less
    those inside an aside (``the mobile number on the account``: no account cue)."""
    hits: list[tuple[int, str]] = []
    masked: set[int] = set()
    for i, word in enumerate(low):
        for words, entity in _CUES.get(word, ()):
            if tuple(low[i:i + len(words)]) == words:
                if entity == _ASIDE:
                    masked.update(range(i + 1, i + len(words)))
                else:
                    hits.append((i, entity))
    return [h for h in hits if h[0] not in masked] if masked else hits


def _positives(cues: Iterable[str]) -> frozenset[str]:
    """The entities among cues (a card word counts as a card, "the code" as a CVV)."""
    named = {CARD if c == _CARD_WORD else CVV if c == _CODE_WORD else c for c in cues}
    named.discard(_NOT_PII)
    return frozenset(named)


def _card_talk(hits: list[tuple[int, str]], context: Collection[str]) -> list[tuple[int, str]]:
    """The hits, less "the code" unless cards are talked about (here or in the context)."""
    if any(c == _CODE_WORD for _, c in hits) and not _CARD_TALK.intersection(
            {c for _, c in hits}.union(context)):
        return [h for h in hits if h[1] != _CODE_WORD]
    return hits


def asked_for(tokens: Sequence[str]) -> frozenset[str]:
    """The entities an utterance names or asks for (``"can I have your card number"`` ->
    ``{"card"}``; ``"and the three digits on the back"`` -> ``{"cvv"}``; ``"last four of
    your social"`` -> ``{"ssn"}``). A card word beside a CVV or expiry request is not a
    request for the card number (``"when does the card expire"`` -> ``{"expiry"}``). The
    caller passes them as ``context`` to :func:`detect` for the other party's next
    utterances."""
    cues = {c for _, c in _card_talk(_cue_hits([normalise(t) for t in tokens]), ())}
    if _CARD_WORD in cues and cues & {CVV, EXPIRY}:
        cues.discard(_CARD_WORD)
    return _positives(cues)


_TRAILING_CUE_TOKENS: Final = 5


def trailing_cues(tokens: Sequence[str]) -> frozenset[str]:
    """The entities a (customer's) utterance announces at its end and leaves for the next
    one to say (``"my social security number is"`` -> ``{"ssn"}``, when an ASR cut the
    number off into the next final): cue phrases starting in the last five tokens with no
    digits after them. A card word alone (``"I lost my card"``) does not count; a PII-free
    number's cue (``"my order number is"``) ends it."""
    low = [normalise(t) for t in tokens]
    runs = digit_runs(tokens)
    after = max(len(low) - _TRAILING_CUE_TOKENS, runs[-1].end if runs else 0)
    cues = [c for i, c in _card_talk(_cue_hits(low), ()) if i >= after]
    if not cues or cues[-1] == _NOT_PII:
        return frozenset()
    return _positives(c for c in cues if c not in (_CARD_WORD, _CODE_WORD))


# ------------------------------------------------------------------ the utterance

@dataclass(slots=True)
class _Utt:
    """One utterance, analysed once: normalised tokens, cue hits, digit runs."""

    tokens: Sequence[str]
    low: list[str]
    hits: list[tuple[int, str]]
    runs: list[DigitRun]
    context: frozenset[str]
    everywhere: frozenset[str] = frozenset()
    newest: frozenset[str] = frozenset()      # the last entity of an ordered context
    run_at: dict[int, DigitRun] = field(default_factory=dict)
    run_ending: dict[int, DigitRun] = field(default_factory=dict)

    def word(self, i: int) -> str:
        return self.low[i] if 0 <= i < len(self.low) else ""

    def lead(self, start: int, floor: int) -> tuple[frozenset[str], bool]:
        """The cues just before ``start`` (from ``floor``, at most 12 tokens back), and
        whether the nearest of them names a PII-free number."""
        lo = max(floor, start - _LEAD_TOKENS)
        near = [e for i, e in self.hits if lo <= i < start]
        if not near:
            return frozenset(), False
        if near[-1] == _NOT_PII:
            return frozenset(), True
        return _positives(near), False


def _utterance(tokens: Sequence[str], context: Collection[str]) -> _Utt:
    low = [normalise(t) for t in tokens]
    hits = _card_talk(_cue_hits(low), context)
    runs = _trim_counts(tokens, low, digit_runs(tokens))
    newest = frozenset(context[-1:]) if isinstance(context, Sequence) else frozenset()
    u = _Utt(tokens, low, hits, runs, frozenset(context), _positives(c for _, c in hits),
             newest)
    u.run_at = {r.start: r for r in runs}
    u.run_ending = {r.end: r for r in runs}
    return u


def _trim_counts(tokens: Sequence[str], low: list[str], runs: list[DigitRun]) -> list[DigitRun]:
    """``the last four 6789``: the count after ``last``/``first`` is not part of the digits."""
    out: list[DigitRun] = []
    for r in runs:
        if r.start > 0 and low[r.start - 1] in ("last", "first") and r.end - r.start > 1:
            out += [replace(s, start=s.start + r.start + 1, end=s.end + r.start + 1)
                    for s in digit_runs(tokens[r.start + 1:r.end])]
        else:
            out.append(r)
    return out


# ------------------------------------------------------------------ checksums and shapes

def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of a card number."""
    total = 0
    for n, c in enumerate(reversed(digits)):
        d = int(c) * (2 if n % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The scheme whose IIN range ``digits`` falls in, or None."""
    p2, p4 = int(digits[:2]), int(digits[:4])
    n = len(digits)
    if digits[0] == "4":
        return "visa"
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return "mastercard"
    if p2 in (34, 37):
        return "amex" if n == 15 else None
    if p4 == 6011 or p2 == 65 or 644 <= int(digits[:3]) <= 649:
        return "discover"
    if 3528 <= p4 <= 3589:
        return "jcb"
    if p2 in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return "diners"
    if p2 == 62:
        return "unionpay"
    if p2 == 50 or 56 <= p2 <= 69:
        return "maestro"
    return None


def _is_card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and luhn_ok(digits) and card_brand(digits) is not None


def aba_ok(digits: str) -> bool:
    """The ABA routing number checksum (weights 3, 7, 1)."""
    if len(digits) != 9:
        return False
    d = [int(c) for c in digits]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


def ssn_ok(digits: str) -> bool:
    """A possible US SSN: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    return (len(digits) == 9 and digits[:3] not in ("000", "666") and digits[0] != "9"
            and digits[3:5] != "00" and digits[5:] != "0000")


def _bounds(groups: tuple[int, ...]) -> set[int]:
    out, at = set(), 0
    for g in groups[:-1]:
        at += g
        out.add(at)
    return out


def _loose(run: DigitRun) -> bool:
    """Read digit by digit (words, or single numerals): the grouping says nothing."""
    return run.spoken or all(g == 1 for g in run.groups)


def _ssn_shape(run: DigitRun) -> bool:
    return ssn_ok(run.digits) and (run.groups == (3, 2, 4) or _loose(run))


def _nanp(run: DigitRun) -> bool:
    d = run.digits
    if len(d) == 11 and d[0] == "1":
        d, allowed = d[1:], {1, 4, 7}
    elif len(d) == 10:
        allowed = {3, 6}
    else:
        return False
    return d[0] in "23456789" and (_loose(run) or _bounds(run.groups) <= allowed)


def _uk_phone(run: DigitRun) -> bool:
    d = run.digits
    return len(d) == 11 and d[0] == "0" and d[1] in "1237"


def _spoken_expiry(run: DigitRun) -> bool:
    """``twelve twenty seven``, ``oh nine twenty six``, ``nine twenty six``: a month, then a
    year from twenty to thirty nine, as people say an expiry (not as they read card digits)."""
    month = run.groups[:-1]
    return (run.spoken and run.groups[-1] == 2 and month in ((2,), (1, 1), (1,))
            and 20 <= int(run.digits[-2:]) <= 39 and _expiry_ok(run.digits))


def _expiry_ok(d: str) -> bool:
    """MMYY, MYY, MMYYYY or MYYYY (``12/27``, ``9/26``, ``12/2027``)."""
    if len(d) in (4, 6) and 1 <= int(d[:2]) <= 12:
        return len(d) == 4 or d[2:4] == "20"
    if len(d) in (3, 5) and d[0] != "0":
        return len(d) == 3 or d[1:3] == "20"
    return False


def _ymd_ok(year: str, month: str, day: str) -> bool:
    ok_year = len(year) == 2 or (len(year) == 4 and year[:2] in ("19", "20"))
    return ok_year and 1 <= int(month) <= 12 and 1 <= int(day) <= 31


def _numeric_date(run: DigitRun) -> bool:
    """``03/14/1985``, ``14.03.1985``, ``1985-03-14``, ``031485``, ``3/14/85`` ..."""
    d = run.digits
    if len(run.groups) == 3 and not _loose(run):
        a, b = run.groups[0], run.groups[0] + run.groups[1]
        parts = [(d[:a], d[a:b], d[b:])]
    elif len(d) == 8:
        parts = [(d[:2], d[2:4], d[4:]), (d[:4], d[4:6], d[6:])]
    elif len(d) == 6:
        parts = [(d[:2], d[2:4], d[4:])]
    else:
        return False
    return any(_ymd_ok(z, x, y) or _ymd_ok(z, y, x) or _ymd_ok(x, y, z) for x, y, z in parts)


# ------------------------------------------------------------------ digit runs

def _found(entity: str, run: DigitRun, evidence: str) -> Found:
    last4 = run.digits[-4:] if entity == CARD and len(run.digits) >= 4 else None
    return Found(entity, run.start, run.end, evidence, last4)


def _slashy(u: _Utt, run: DigitRun) -> bool:
    return any("/" in u.low[i] or u.low[i] == "slash" for i in range(run.start, run.end))


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the words around a run say about it, beyond its digits."""

    slashy: bool            # written or said with a slash: a date, never a card
    phone: bool             # NANP, UK or +/plus shaped
    after_expiry: bool      # an expiry came earlier in the utterance: 3-4 digits are a CVV


# An SSN is 9 digits, but an ASR may repeat or add some ("five three six two two, eight seven
# four, eight seven four"): after the speaker's own SSN cue, up to 11 are still that SSN (a card
# has 12 or more), not the entity of an older question.
SSN_HEARD_MAX = 11


def _by_context(run: DigitRun, cues: frozenset[str], local: bool, shape: _Shape) -> str | None:
    """The entity ``cues`` make of the run, or None."""
    d, n = run.digits, len(run.digits)
    cvv_next = shape.after_expiry and n in (3, 4) and bool(cues & _CARD_TALK)
    said_as_expiry = shape.slashy or _spoken_expiry(run)
    card_expiry = CARD in cues and CVV not in cues and said_as_expiry
    cvv_not_expiry = CVV in cues and n == 3 and not said_as_expiry
    if (not (cvv_next or cvv_not_expiry) and (EXPIRY in cues or card_expiry)
            and _expiry_ok(d)):
        return EXPIRY
    if DOB in cues and _numeric_date(run):
        return DOB
    if shape.slashy:
        return None
    if cvv_next or (CVV in cues and (n == 3 or (n == 4 and (local or CARD not in cues)))):
        return CVV
    if SSN in cues and (2 <= n <= 9 or (local and n <= SSN_HEARD_MAX)):
        return SSN
    if ROUTING in cues and aba_ok(d):
        return ROUTING
    if PHONE in cues and shape.phone:
        return PHONE
    if CARD in cues and n >= 4:
        return CARD
    if IBAN in cues and n >= 4:
        return IBAN
    if BANK_ACCOUNT in cues and 6 <= n <= 17:
        return BANK_ACCOUNT
    if PHONE in cues and 7 <= n <= 15:
        return PHONE
    return None


def _plus(u: _Utt, run: DigitRun) -> bool:
    """``+44 ...`` or ``plus four four ...``."""
    return u.word(run.start - 1) == "plus" or u.tokens[run.start].strip().startswith("+")


def _phone_found(u: _Utt, run: DigitRun, evidence: str) -> Found:
    """A phone number's span, with the ``plus`` said before it."""
    return Found(PHONE, run.start - (u.word(run.start - 1) == "plus"), run.end, evidence)


def _by_shape(u: _Utt, run: DigitRun) -> Found | None:
    """What the run is without any cue: an SSN or a phone number by its shape."""
    if _ssn_shape(run):
        return _found(SSN, run, "pattern")
    if (_plus(u, run) and 10 <= len(run.digits) <= 15) or _nanp(run) or _uk_phone(run):
        return _phone_found(u, run, "pattern")
    return None


def _sub_run(u: _Utt, i: int, k: int) -> DigitRun | None:
    """Tokens ``[i, k)`` as one digit run of their own, or None."""
    runs = digit_runs(u.tokens[i:k])
    if len(runs) != 1 or runs[0].start != 0 or runs[0].end != k - i:
        return None
    return replace(runs[0], start=i, end=k)


def _tail(run: DigitRun, cues: frozenset[str], head: str) -> list[Found] | None:
    """What may follow a card or an expiry in one breath: a CVV, or an expiry (and CVV)."""
    n = len(run.digits)
    if n == 4 and head == CARD and _expiry_ok(run.digits) and (
            EXPIRY in cues or CVV not in cues):
        return [_found(EXPIRY, run, "context")]
    if n in (3, 4):
        return [_found(CVV, run, "context")]
    return None


@lru_cache(maxsize=4096)
def _token_digits(token: str) -> int:
    """How many digits ``token`` spells alone (``forty`` 2, ``4111`` 4, ``uh`` 0)."""
    return sum(len(r.digits) for r in digit_runs((token,)))


_TENS_WORDS: Final = frozenset({"twenty", "thirty", "forty", "fifty", "sixty", "seventy",
                               "eighty", "ninety"})
_UNIT_WORDS: Final = frozenset({"one", "two", "three", "four", "five", "six", "seven",
                               "eight", "nine"})


def _heads(u: _Utt, run: DigitRun, card: bool) -> list[int]:
    """Token boundaries where a card (13-19 digits) or an expiry (3-6) may end with a tail
    (3-4 digits, or after a card an expiry and a CVV) after it, longest head first. Digits
    are counted per token (``forty one`` 2), which a quantity (``hundred``) may overcount."""
    counts = []
    for k in range(run.start, run.end):
        tens_unit = u.low[k] in _UNIT_WORDS and u.word(k - 1) in _TENS_WORDS
        counts.append(0 if tens_unit else _token_digits(u.tokens[k]))
    total, left, out = sum(counts), 0, []
    for k in range(run.start + 1, run.end):
        left += counts[k - 1 - run.start]
        right = total - left
        as_card = card and 13 <= left <= 19 and 3 <= right <= 12
        if as_card or (3 <= left <= 6 and 3 <= right <= 4):
            out.append(k)
    return out[::-1]


def _split(u: _Utt, run: DigitRun, cues: frozenset[str], card: bool = True) -> list[Found]:
    """A run that is a card, then an expiry and/or a CVV, said without a break between
    them (``4111 1111 1111 1111 123``, ``twelve twenty seven one two three``); else []."""
    if len(run.digits) > 30:
        return []
    for k in _heads(u, run, card):
        left, right = _sub_run(u, run.start, k), _sub_run(u, k, run.end)
        if left is None or right is None:
            continue
        if card and _is_card_number(left.digits):
            head, evidence = CARD, "luhn"
        elif EXPIRY in cues and _expiry_ok(left.digits):
            head, evidence = EXPIRY, "context"
        else:
            continue
        tail = _tail(right, cues, head) or (
            _split(u, right, cues | {EXPIRY}, False) if head == CARD else None)
        if tail:
            return [_found(head, left, evidence), *tail]
    return []


def _judge_run(u: _Utt, run: DigitRun, floor: int, after_expiry: bool) -> list[Found]:
    """The entity (or entities, see :func:`_split`) a digit run is: see the module
    docstring."""
    if _is_card_number(run.digits):
        return [_found(CARD, run, "luhn")]
    if u.word(run.end) in _UNITS_AFTER:
        return []
    local, negative = u.lead(run.start, floor)
    if negative:
        return []
    anywhere = u.everywhere | u.context
    if len(run.digits) >= 16 or (len(run.digits) >= 6 and anywhere & {CARD, EXPIRY, CVV}):
        parts = _split(u, run, local | anywhere)
        if parts:
            return parts
    phone = (_plus(u, run) and 10 <= len(run.digits) <= 15) or _nanp(run) or _uk_phone(run)
    shape = _Shape(_slashy(u, run), phone, after_expiry)
    entity = _by_context(run, local, True, shape) if local else None
    if entity is None and u.newest:
        entity = _by_context(run, u.newest, False, shape)
    entity = entity or _by_context(run, anywhere, False, shape)
    if entity is None:
        found = None if shape.slashy else _by_shape(u, run)
        return [] if found is None else [found]
    if entity == PHONE:
        return [_phone_found(u, run, "context")]
    return [_found(entity, run, "checksum" if entity == ROUTING else "context")]


def _run_finds(u: _Utt, blocked: set[int], dates: list[Found]) -> list[Found]:
    out: list[Found] = []
    floor = 0
    for run in u.runs:
        if not all(i in blocked for i in range(run.start, run.end)):
            after_expiry = any(f.entity == EXPIRY and f.start < run.start for f in dates + out)
            out += _judge_run(u, run, floor, after_expiry)
        floor = run.end
    return out


# ------------------------------------------------------------------ dates with month names

_MONTHS: Final = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
    "oct": 10, "nov": 11, "dec": 12}


@dataclass(frozen=True, slots=True)
class _Date:
    start: int
    end: int
    day: bool
    year: bool


def _ordinal_at(u: _Utt, i: int) -> int | None:
    """The index after a day ordinal at ``i`` (``14th``, ``fourteenth``, ``twenty first``)."""
    v = ordinal_value(u.word(i))
    if v is not None and 1 <= v <= 31:
        return i + 1
    nxt = ordinal_value(u.word(i + 1))
    if u.word(i) in ("twenty", "thirty") and nxt is not None and nxt < 10:
        return i + 2
    return None


def _year_like(d: str) -> bool:
    return len(d) == 2 or (len(d) == 4 and d[:2] in ("19", "20"))


def _day_before(u: _Utt, m: int) -> int | None:
    """Where ``the fourteenth of march`` / ``14 march`` starts, for the month at ``m``."""
    j = m - 2 if u.word(m - 1) == "of" else m - 1
    start = None
    if ordinal_value(u.word(j)) is not None:
        start = j - 1 if u.word(j - 1) in ("twenty", "thirty") else j
    elif j + 1 in u.run_ending and 1 <= int(u.run_ending[j + 1].digits[-2:]) <= 31:
        run = u.run_ending[j + 1]
        start = run.start if len(run.digits) <= 2 else None
    if start is not None and u.word(start - 1) == "the":
        start -= 1
    return start


def _after_month(u: _Utt, m: int) -> tuple[int, bool, bool]:
    """(end, has day, has year) of what follows the month at ``m``."""
    k = m + 2 if u.word(m + 1) == "the" else m + 1
    after_day = _ordinal_at(u, k)
    if after_day is not None:
        y = after_day + 1 if u.word(after_day) in ("", "of") else after_day
        run = u.run_at.get(y)
        if run is not None and _year_like(run.digits):
            return run.end, True, True
        return after_day, True, False
    run = u.run_at.get(k)
    if run is None:
        return m + 1, False, False
    d = run.digits
    if len(d) <= 2:                        # "march fourteen", or "march thirty two"
        return run.end, 1 <= int(d) <= 31, int(d) > 31
    if len(d) == 4 and _year_like(d):
        return run.end, False, True
    if len(d) in (3, 4) or (len(d) in (5, 6) and _year_like(d[-4:])):
        return run.end, True, True
    return m + 1, False, False


def _year_before(u: _Utt, m: int) -> int | None:
    """Where ``nineteen ninety four, may twenty eighth`` starts, for the month at ``m``."""
    run = u.run_ending.get(m)
    if run is not None and len(run.digits) == 4 and _year_like(run.digits):
        return run.start
    return None


def _date_at(u: _Utt, m: int) -> _Date | None:
    before = _day_before(u, m)
    end, day, year = _after_month(u, m)
    year_first = _year_before(u, m) if before is None and day and not year else None
    if year_first is not None:
        return _Date(year_first, end, True, True)
    if before is not None:
        day = True
    if not (day or year):
        return None
    return _Date(m if before is None else before, end, day, year)


def _judge_date(u: _Utt, date: _Date) -> str | None:
    floor = max((r.end for r in u.runs if r.end <= date.start), default=0)
    local, negative = u.lead(date.start, floor)
    if negative:
        return None
    cues = local or (u.everywhere | u.context)
    partial = not (date.day and date.year)
    if EXPIRY in cues and partial:
        return EXPIRY
    if DOB in cues:
        return DOB
    if CARD in cues and partial and date.year:
        return EXPIRY
    return None


def _date_finds(u: _Utt) -> tuple[list[Found], set[int]]:
    """Dates with a month name: the DOB/expiry ones, and every token of any date."""
    out: list[Found] = []
    taken: set[int] = set()
    for m, word in enumerate(u.low):
        if word not in _MONTHS or m in taken:
            continue
        date = _date_at(u, m)
        if date is None:
            continue
        taken.update(range(date.start, date.end))
        entity = _judge_date(u, date)
        if entity is not None:
            out.append(Found(entity, date.start, date.end, "context"))
    return out, taken


# ------------------------------------------------------------------ e-mail

_EMAIL: Final = re.compile(r"^[\w.+-]+@[\w-]+(?:\.[\w-]+)+$")
_LABEL: Final = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_LOCAL: Final = re.compile(r"^[a-z0-9._+-]+$")
_TLDS: Final = frozenset({
    "com", "org", "net", "edu", "gov", "mil", "int", "io", "co", "uk", "us", "ca", "au",
    "de", "fr", "es", "it", "nl", "be", "ch", "at", "se", "no", "dk", "fi", "ie", "pl", "pt",
    "in", "jp", "cn", "br", "mx", "ru", "nz", "za", "info", "biz", "me", "tv", "ai", "app",
    "dev", "xyz", "online", "site", "email", "cloud", "tech", "store", "shop", "eu", "ac"})
_JOINERS: Final = frozenset({"dot", "period", "underscore", "dash", "hyphen", "plus", "_",
                             "-", "."})
_NOT_LOCAL: Final = frozenset({
    "is", "my", "email", "e-mail", "mail", "address", "it's", "its", "it", "the", "a", "an",
    "to", "me", "you", "your", "that's", "thats", "that", "this", "at", "of", "and", "or",
    "please", "yes", "yeah", "sure", "ok", "okay", "so", "well", "send", "sent", "reach",
    "contact", "write", "was", "be", "i", "i'm", "im", "on", "in", "for", "with", "by",
    "from", "hi", "hello", "mine", "our", "us", "here", "there", "called", "name", "use",
    "using", "try", "just", "also", "then", "now", "can", "could", "will", "would", "do",
    "uh", "um", "er", "erm", "actually", "under", "'s", "",
    # verbs and places before an "at" that is not an address's
    "look", "looking", "arrived", "arrive", "stay", "staying", "meet", "live", "lives",
    "living", "work", "works", "working", "based", "located", "available", "find", "found",
    "visit", "online", "website", "site", "them", "him", "her", "we", "they", "go", "shop",
    "buy", "bought", "order", "ordered", "sign", "signed", "log", "logged", "login",
    "register", "registered", "check", "home", "office", "details",
})
_PROVIDERS: Final = frozenset({"gmail", "googlemail", "yahoo", "hotmail", "outlook", "icloud",
                               "aol", "protonmail", "proton", "live", "msn", "me", "mac"})


def _domain_end(low: Sequence[str], j: int, dotted: Collection[int] = ()) -> int | None:
    """The end of ``example dot co dot uk`` (or ``example.com``, or as an ASR writes it,
    ``example .com`` / ``example. com``: ``dotted`` holds the indices of tokens that ended in
    a dot before normalising) starting at ``j``."""
    labels, end, want_label = 0, None, True
    for k in range(j, min(len(low), j + 12)):
        w = low[k]
        if want_label and all(_LABEL.match(p) for p in w.split(".")) and w:
            parts = w.split(".")
            labels += len(parts)
            if labels >= 2 and parts[-1] in _TLDS:
                end = k + 1
            want_label = k in dotted
        elif not want_label and w.startswith(".") and _labels_ok(w[1:]):
            parts = w[1:].split(".")
            labels += len(parts)
            if parts[-1] in _TLDS:
                end = k + 1
        elif not want_label and w in ("dot", "period", "."):
            want_label = True
        elif labels == 1 and low[k - 1] in _PROVIDERS and w in _TLDS:     # gmail com
            labels, end = 2, k + 1
        elif not want_label and w in ("dash", "hyphen", "-"):
            want_label, labels = True, labels - 1
        else:
            break
    return end


def _labels_ok(text: str) -> bool:
    return bool(text) and all(_LABEL.match(p) for p in text.split("."))


_SPELLING_ASIDES: Final = (("all", "one", "word"), ("one", "word"), ("no", "spaces"),
                           ("that's",), ("thats",), ("that", "is"), ("spelled",), ("spelt",))


def _aside_before(low: Sequence[str], k: int) -> int:
    """How many tokens ending at ``k`` say how an address is spelled (``all one word``)."""
    for phrase in _SPELLING_ASIDES:
        n = len(phrase)
        if k - n + 1 >= 0 and tuple(low[k - n + 1:k + 1]) == phrase:
            return n
    return 0


def _local_start(low: Sequence[str], at: int) -> int:
    """Where the local part before ``at`` starts (``at`` itself when there is none): up to
    three words, any letters spelled, digits, joiners (``dot``, ``underscore``), and
    spelling asides (``john smith, all one word, at ...``)."""
    start, words, k = at, 0, at - 1
    while k >= 0 and at - k <= 24:
        w = low[k]
        aside = _aside_before(low, k)
        if aside or w in _JOINERS:
            k, words = k - max(aside, 1), 0 if aside else words
            continue
        spelled = len(w) == 1 and start < at and len(low[start]) == 1
        if not _LOCAL.match(w) or (w in _NOT_LOCAL and not spelled):
            break
        if len(w) > 1 and not has_digits(w):
            words += 1
            if words > 3:
                break
        start, k = k, k - 1
    return start


_HALF_EMAIL: Final = re.compile(r"^[\w.+-]+@[a-z0-9-]+$")     # michael@example dot com
_DOTTED: Final = re.compile(r"^[a-z0-9_+-]+(?:\.[a-z0-9_+-]+){2,}\.?$")   # john.smith.example.com


def _lost_at(u: _Utt, w: str) -> bool:
    """``john.smith.example.com`` where the ASR dropped the "at": an address when e-mail is
    being talked about (a cue in the utterance or the agent's question) and it ends in a
    top-level domain."""
    if not _email_talk(u):
        return False
    return bool(_DOTTED.match(w)) and w.rstrip(".").rsplit(".", 1)[-1] in _TLDS


def _dotted(u: _Utt) -> frozenset[int]:
    """Indices of tokens written with one trailing dot (``example.``; not ``...``), when
    e-mail is being talked about (else ``at noon. In ...`` would read as an address)."""
    if not _email_talk(u):
        return frozenset()
    return frozenset(k for k, t in enumerate(u.tokens)
                     if t.rstrip().endswith(".") and not t.rstrip().endswith(".."))


_AT_MISHEARD: Final = frozenset({"of", "add", "ad", "and", "hat", "app", "it", "ats"})
"""What an ASR writes for a spoken "at" (``john dot smith of example dot com``): an "at"
where e-mail is being talked about."""
_AT_WORDS: Final = frozenset({"at", "@"}) | _AT_MISHEARD


def _email_talk(u: _Utt) -> bool:
    return EMAIL in u.everywhere or EMAIL in u.context


def _address(u: _Utt, at: int, domain: int, dotted: frozenset[int]) -> Found | None:
    """A spoken address: local-part words before ``at`` and a domain from ``domain``
    (``at + 1`` past the "at", or what the ASR heard for it; ``at`` itself when the "at"
    went missing, ``john smith example dot com``)."""
    end = _domain_end(u.low, domain, dotted)
    if end is None:
        return None
    start = _local_start(u.low, at)
    return Found(EMAIL, start, end, "spoken") if start < at else None


def _email_finds(u: _Utt) -> list[Found]:
    out: list[Found] = []
    talk = _email_talk(u)
    dotted = _dotted(u)
    for i, w in enumerate(u.low):
        if out and i < out[-1].end:
            continue
        found: Found | None = None
        if _EMAIL.match(w) or _lost_at(u, w):
            found = Found(EMAIL, i, i + 1, "pattern")
        elif _HALF_EMAIL.match(w):
            end = _domain_end([w.partition("@")[2], *u.low[i + 1:i + 12]], 0)
            found = None if end is None else Found(EMAIL, i, i + end, "spoken")
        elif w in ("at", "@") or (talk and w in _AT_MISHEARD):
            found = _address(u, i, i + 1, dotted)
        if (found is None and talk and i > 0 and u.low[i - 1] not in _AT_WORDS
                and u.low[i - 1] not in _JOINERS):
            found = _address(u, i, i, dotted)
        if found is not None:
            out.append(found)
    return out


# ------------------------------------------------------------------ IBAN

_IBAN_LENGTHS: Final = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20}
_IBAN_HEAD: Final = re.compile(r"^([a-z]{2})(?:\d{2}[a-z0-9]*)?$")
_ALNUM: Final = re.compile(r"^[a-z0-9]+$")


def iban_ok(text: str) -> bool:
    """The ISO 13616 check: known country, its length, check digits by mod 97."""
    s = text.upper()
    if _IBAN_LENGTHS.get(s[:2]) != len(s) or not s[2:4].isdigit() or not s.isalnum():
        return False
    return int("".join(str(int(c, 36)) for c in s[4:] + s[:4])) % 97 == 1


def _iban_country(u: _Utt, i: int) -> str | None:
    m = _IBAN_HEAD.match(u.low[i])
    if m:
        code = m.group(1)
    elif len(u.low[i]) == 1 and len(u.word(i + 1)) == 1:
        code = u.low[i] + u.low[i + 1]
    else:
        return None
    return code.upper() if code.upper() in _IBAN_LENGTHS else None


def _iban_text(u: _Utt, i: int, length: int, run_at: dict[int, DigitRun]) -> tuple[str, int]:
    """The characters spelled from token ``i`` on (at most ``length``), and the end token."""
    text, j = "", i
    while j < len(u.low) and len(text) < length:
        run, w = run_at.get(j), u.low[j]
        if run is not None:
            text, j = text + run.digits, run.end
        elif _ALNUM.match(w) and (len(w) <= 4 or any(c.isdigit() for c in w)):
            text, j = text + w, j + 1
        elif not w:
            j += 1
        else:
            break
        if len(text) >= 4 and not text[2:4].isdigit():
            break
    return text, j


def _iban_at(u: _Utt, i: int, letter_o: dict[int, DigitRun]) -> Found | None:
    """An IBAN written or spelled from token ``i`` (letters alone, numerals, digit words);
    a spelled ``o`` is tried as zero, then as the letter."""
    country = _iban_country(u, i)
    if country is None:
        return None
    length = _IBAN_LENGTHS[country]
    for run_at in (u.run_at, letter_o):
        text, j = _iban_text(u, i, length, run_at)
        if iban_ok(text):
            return Found(IBAN, i, j, "checksum")
    asked = IBAN in u.context or IBAN in u.everywhere
    if asked and 8 <= len(text) < length and text[2:4].isdigit():
        return Found(IBAN, i, j, "context")            # the first part, read in two turns
    return None


def _runs_with_letter_o(u: _Utt) -> dict[int, DigitRun]:
    if "o" not in u.low:
        return u.run_at
    tokens = ["letter-o" if w == "o" else t for t, w in zip(u.tokens, u.low, strict=True)]
    return {r.start: r for r in digit_runs(tokens)}


def _iban_finds(u: _Utt) -> list[Found]:
    out: list[Found] = []
    letter_o = _runs_with_letter_o(u)
    i = 0
    while i < len(u.low):
        found = _iban_at(u, i, letter_o)
        if found is not None:
            out.append(found)
            i = found.end
        else:
            i += 1
    return out


# ------------------------------------------------------------------ custom patterns

@lru_cache(maxsize=256)
def _insensitive(regex: re.Pattern[str]) -> re.Pattern[str]:
    if regex.flags & re.IGNORECASE:
        return regex
    return re.compile(regex.pattern, regex.flags | re.IGNORECASE)


def _custom_finds(tokens: Sequence[str], custom: Sequence[CustomPattern]) -> list[Found]:
    """Every token a custom pattern's match touches, over the tokens joined by spaces."""
    if not custom:
        return []
    starts, at = [], 0
    for tok in tokens:
        starts.append(at)
        at += len(tok) + 1
    text = " ".join(tokens)
    out: list[Found] = []
    for pattern in custom:
        for m in _insensitive(pattern.regex).finditer(text):
            if m.end() > m.start():
                first = bisect_right(starts, m.start()) - 1
                last = bisect_right(starts, m.end() - 1) - 1
                out.append(Found(pattern.name, first, last + 1, "pattern"))
    return out


# ------------------------------------------------------------------ detect

def _resolve(candidates: Iterable[Found], n: int) -> list[Found]:
    """Earlier candidates win; a later one keeps only its tokens nobody took."""
    taken = [False] * n
    out: list[Found] = []
    for f in candidates:
        i = f.start
        while i < f.end:
            if taken[i]:
                i += 1
                continue
            j = i
            while j < f.end and not taken[j]:
                j += 1
            out.append(f if (i, j) == (f.start, f.end) else replace(f, start=i, end=j))
            i = j
        taken[f.start:f.end] = [True] * (f.end - f.start)
    return sorted(out, key=lambda f: f.start)


def detect(tokens: Sequence[str], *, context: Collection[str] = (),
           custom: Sequence[CustomPattern] = (),
           entities: Collection[str] = BUILTIN_ENTITIES) -> list[Found]:
    """The PII in one utterance's tokens: sorted, non-overlapping spans of token indices.

    ``context`` holds the entities the other party just asked for (:func:`asked_for`); a
    sequence is taken as oldest to newest, and its last entity is tried first (the card
    asked for a minute ago, then the CVV: four digits now are the CVV, not a card group).
    ``entities`` the built-in entities to look for; ``custom`` patterns always apply.
    Priority where spans meet: e-mail, IBAN, dates, digit runs, custom patterns (a later
    span keeps the tokens left free)."""
    if not tokens:
        return []
    u = _utterance(tokens, context)
    emails, ibans = _email_finds(u), _iban_finds(u)
    dates, date_tokens = _date_finds(u)
    blocked = date_tokens.union(*(range(f.start, f.end) for f in emails + ibans))
    builtin = [f for f in emails + ibans + dates + _run_finds(u, blocked, dates)
               if f.entity in entities]
    return _resolve(builtin + _custom_finds(tokens, custom), len(tokens))
