"""The streaming ASR contract (see triton_models/README.md), gateway side, pure.

Each response carries one UTF-8 JSON object in output ``RESULT``:
``{"type": "partial"|"final", "segment", "text", "start_s", "end_s", "words": [...],
"audio_s"}`` with times in seconds from the start of the Triton sequence.

Also what the stream's messages carry, without their protobuf types (those stay in the
shell, gateway.asr.stream): request ids, one decoded reply, BYTES tensor framing.

Layer: pure core.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class ContractError(ValueError):
    """A model answered something that is not the streaming ASR contract."""


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start_s: float
    end_s: float
    confidence: float

    def shifted(self, offset_s: float) -> Word:
        return Word(self.word, round(self.start_s + offset_s, 3),
                    round(self.end_s + offset_s, 3), self.confidence)

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start_s": self.start_s, "end_s": self.end_s,
                "confidence": self.confidence}


@dataclass(frozen=True, slots=True)
class Hypothesis:
    is_final: bool
    segment: int
    text: str
    start_s: float
    end_s: float
    words: tuple[Word, ...]
    audio_s: float

    def shifted(self, offset_s: float) -> Hypothesis:
        return Hypothesis(self.is_final, self.segment, self.text,
                          round(self.start_s + offset_s, 3), round(self.end_s + offset_s, 3),
                          tuple(w.shifted(offset_s) for w in self.words),
                          round(self.audio_s + offset_s, 3))

    def mapped(self, to_channel_s: Callable[[float], float]) -> Hypothesis:
        """Every time mapped from sequence time to channel time."""
        def at(t: float) -> float:
            return round(to_channel_s(t), 3)

        return Hypothesis(self.is_final, self.segment, self.text, at(self.start_s),
                          at(self.end_s), tuple(Word(w.word, at(w.start_s), at(w.end_s),
                                                     w.confidence) for w in self.words),
                          at(self.audio_s))


def _number(obj: dict[str, Any], key: str, default: float = 0.0) -> float:
    value = obj.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ContractError(f"RESULT.{key}: expected a number, got {value!r}")
    return float(value)


def _word(obj: Any) -> Word:
    if not isinstance(obj, dict) or not isinstance(obj.get("word"), str):
        raise ContractError(f"RESULT.words: bad entry {obj!r}")
    return Word(obj["word"], _number(obj, "start_s"), _number(obj, "end_s"),
                _number(obj, "confidence", 1.0))


def parse_result(raw: bytes | str) -> Hypothesis:
    """One RESULT element -> Hypothesis; ContractError with the reason otherwise."""
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
    return Hypothesis(obj["type"] == "final", segment, text.strip(), _number(obj, "start_s"),
                      _number(obj, "end_s"), tuple(_word(w) for w in words),
                      _number(obj, "audio_s"))


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
