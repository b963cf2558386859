"""The streaming ASR contract (see triton_models/README.md), gateway side, pure.

Each element of a response's ``RESULT`` output is one UTF-8 JSON object, specified by
``triton_models/common/asr_result.schema.json`` (the one wire spec; the models' side,
``triton_models/common/asr_contract.py``, writes it with the same class and field names):

============  =====================  ============================================  =======
key           type                   meaning                                       default
============  =====================  ============================================  =======
``type``      "partial" | "final"    final: the utterance is done                  (req.)
``segment``   integer >= 0           utterance index within the sequence           0
``text``      string                 the utterance's text, stripped                ""
``start_s``   number >= 0            utterance start (s from the sequence start)   0
``end_s``     number >= 0            utterance end                                 0
``audio_s``   number >= 0            audio the model had when it made the result   0
``words``     list of word objects   ``word`` (stripped), ``start_s``, ``end_s``,  []
                                     ``confidence`` in [0, 1] (default 1.0)
============  =====================  ============================================  =======

Times are rounded to 3 decimals and finite (non-finite ones become 0) by whoever writes a
result; text and words are stripped on both sides (the parser also strips what another
model sends).

Also what the stream's messages carry, without their protobuf types (those stay in the
shell, gateway.asr.stream): request ids, one decoded reply, BYTES tensor framing.

Layer: pure core.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ResultType = Literal["partial", "final"]


class ContractError(ValueError):
    """A model answered something that is not the streaming ASR contract."""


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start_s: float
    end_s: float
    confidence: float = 1.0

    def shifted(self, offset_s: float) -> Word:
        return Word(self.word, round(self.start_s + offset_s, 3),
                    round(self.end_s + offset_s, 3), self.confidence)

    def to_dict(self) -> dict[str, Any]:
        """The wire form (asr_result.schema.json's word)."""
        return {"word": self.word.strip(), "start_s": _round(self.start_s),
                "end_s": _round(self.end_s), "confidence": _round(self.confidence)}


@dataclass(frozen=True, slots=True)
class AsrResult:
    """One RESULT: a partial or final hypothesis of one utterance (the models' AsrResult)."""
    type: ResultType
    segment: int
    text: str
    start_s: float
    end_s: float
    audio_s: float
    words: tuple[Word, ...] = ()

    @property
    def is_final(self) -> bool:
        return self.type == "final"

    def to_dict(self) -> dict[str, Any]:
        """The wire form (asr_result.schema.json)."""
        return {"type": self.type, "segment": self.segment, "text": self.text.strip(),
                "start_s": _round(self.start_s), "end_s": _round(self.end_s),
                "audio_s": _round(self.audio_s), "words": [w.to_dict() for w in self.words]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def shifted(self, offset_s: float) -> AsrResult:
        return AsrResult(self.type, self.segment, self.text,
                         round(self.start_s + offset_s, 3), round(self.end_s + offset_s, 3),
                         round(self.audio_s + offset_s, 3),
                         tuple(w.shifted(offset_s) for w in self.words))

    def mapped(self, to_channel_s: Callable[[float], float]) -> AsrResult:
        """Every time mapped from sequence time to channel time."""
        def at(t: float) -> float:
            return round(to_channel_s(t), 3)

        return AsrResult(self.type, self.segment, self.text, at(self.start_s), at(self.end_s),
                         at(self.audio_s), tuple(Word(w.word, at(w.start_s), at(w.end_s),
                                                      w.confidence) for w in self.words))


Hypothesis = AsrResult   # the name the call side uses for a result


def _round(value: float) -> float:
    return round(value, 3) if math.isfinite(value) else 0.0


def _number(obj: dict[str, Any], key: str, default: float = 0.0) -> float:
    value = obj.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ContractError(f"RESULT.{key}: expected a number, got {value!r}")
    return float(value) if math.isfinite(value) else 0.0


def _word(obj: Any) -> Word:
    if not isinstance(obj, dict) or not isinstance(obj.get("word"), str):
        raise ContractError(f"RESULT.words: bad entry {obj!r}")
    return Word(obj["word"].strip(), _number(obj, "start_s"), _number(obj, "end_s"),
                _number(obj, "confidence", 1.0))


def parse_result(raw: bytes | str) -> AsrResult:
    """One RESULT element -> AsrResult; ContractError with the reason otherwise. A missing
    key takes the schema's default; text and words are stripped, non-finite times are 0."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(f"RESULT is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("type") not in ("partial", "final"):
        raise ContractError(f"RESULT.type must be partial or final: {str(obj)[:120]}")
    text, words = obj.get("text", ""), obj.get("words", [])
    if not isinstance(text, str) or not isinstance(words, list):
        raise ContractError("RESULT.text must be a string and RESULT.words a list")
    segment = obj.get("segment", 0)
    if not isinstance(segment, int):
        raise ContractError(f"RESULT.segment: expected an integer, got {segment!r}")
    kind: ResultType = "final" if obj["type"] == "final" else "partial"
    return AsrResult(kind, segment, text.strip(), _number(obj, "start_s"), _number(obj, "end_s"),
                     _number(obj, "audio_s"), tuple(_word(w) for w in words))


# ----------------------------------------------------------------- gRPC stream codec
@dataclass(frozen=True, slots=True)
class RequestId:
    """What a request id says: the sequence it belongs to and whether it carried END."""
    corrid: int
    end: bool

    def __str__(self) -> str:
        return f"{self.corrid}:{int(self.end)}"

    @classmethod
    def parse(cls, text: str) -> RequestId | None:
        corrid, sep, end = text.partition(":")
        if not sep or not corrid.isdigit() or end not in ("0", "1"):
            return None
        return cls(int(corrid), end == "1")


@dataclass(frozen=True, slots=True)
class StreamReply:
    """One response of the stream: results, an error, and whether it completes its request."""
    request: RequestId | None
    results: tuple[bytes, ...]
    error: str | None
    complete: bool


def bytes_tensor(items: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def split_bytes_tensor(raw: bytes) -> tuple[bytes, ...]:
    items, offset = [], 0
    while offset + 4 <= len(raw):
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise ContractError("RESULT: truncated BYTES element")
        items.append(raw[offset:offset + size])
        offset += size
    if offset != len(raw):
        raise ContractError("RESULT: trailing bytes after the last BYTES element")
    return tuple(items)
