"""The streaming ASR contract shared by every ASR model in this repository (sans-I/O).

See ``triton_models/README.md`` for the full contract. This module holds the parts
that do not depend on Triton: the chunk a request carries, the JSON result a
response carries, and the per-CORRID session table with its own idle expiry
(Triton does not tell a model about its sequence idle timeout).

The result's wire form is specified by ``asr_result.schema.json`` next to this file (the
one wire spec; the gateway's parser, ``gateway/asr/contract.py``, reads it with the same
class and field names; this side imports nothing of the gateway):

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

``to_dict`` rounds times to 3 decimals, writes non-finite ones as 0 and strips the text and
each word (Whisper's " hello"), so what leaves the model is what the gateway keeps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ = 16000
ResultType = Literal["partial", "final"]
Audio = npt.NDArray[np.float32]


class ContractError(ValueError):
    """A request or a result that breaks the streaming ASR contract."""


class ParameterError(ValueError):
    """A model parameter in config.pbtxt that is missing a valid value."""


@dataclass(frozen=True, slots=True)
class ChunkRequest:
    """One request of a sequence: a chunk of 16 kHz mono float32 PCM."""

    corrid: int
    start: bool
    end: bool
    audio: Audio
    phrases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.corrid <= 0:
            raise ContractError(f"CORRID must be a positive integer, got {self.corrid}")
        if self.audio.ndim != 1:
            raise ContractError(f"AUDIO must be one channel, got shape {self.audio.shape}")


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start_s: float
    end_s: float
    confidence: float = 1.0

    def to_dict(self) -> dict[str, object]:
        """The wire form (asr_result.schema.json's word)."""
        return {"word": self.word.strip(), "start_s": _round(self.start_s),
                "end_s": _round(self.end_s), "confidence": _round(self.confidence)}


@dataclass(frozen=True, slots=True)
class AsrResult:
    """One RESULT of a response: a partial or final hypothesis of one utterance."""

    type: ResultType
    segment: int
    text: str
    start_s: float
    end_s: float
    audio_s: float
    words: tuple[Word, ...] = field(default=())

    @property
    def is_final(self) -> bool:
        return self.type == "final"

    def to_dict(self) -> dict[str, object]:
        """The wire form (asr_result.schema.json)."""
        return {"type": self.type, "segment": self.segment, "text": self.text.strip(),
                "start_s": _round(self.start_s), "end_s": _round(self.end_s),
                "audio_s": _round(self.audio_s), "words": [w.to_dict() for w in self.words]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def _round(value: float) -> float:
    return round(value, 3) if math.isfinite(value) else 0.0


def samples_to_s(samples: int) -> float:
    return samples / SAMPLE_RATE_HZ


def parse_phrases(raw: list[bytes] | list[str]) -> tuple[str, ...]:
    """PHRASES items as text: UTF-8 decoded, stripped, empty ones dropped."""
    out: list[str] = []
    for item in raw:
        text = item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item
        if text.strip():
            out.append(text.strip())
    return tuple(out)


def float_parameter(params: dict[str, str], name: str, default: float, *,
                    minimum: float | None = 0.0) -> float:
    """A number parameter; ``minimum`` None allows any finite value (dBFS levels)."""
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ParameterError(f"parameter {name}={raw!r} is not a number") from None
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        raise ParameterError(f"parameter {name}={raw!r} must be a finite number >= {minimum}")
    return value


def int_parameter(params: dict[str, str], name: str, default: int) -> int:
    """A whole-number parameter (given as text, e.g. "600")."""
    value = float_parameter(params, name, float(default))
    if value != int(value):
        raise ParameterError(f"parameter {name}={params[name]!r} must be an integer")
    return int(value)


def config_parameters(model_config: dict[str, object]) -> dict[str, str]:
    """The string values of ``parameters`` in a model config (as Triton gives it as JSON)."""
    raw = model_config.get("parameters", {})
    if not isinstance(raw, dict):
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(value.get("string_value"), str):
            out[str(key)] = value["string_value"]
    return out


S = TypeVar("S")


@dataclass(slots=True)
class _Entry(Generic[S]):
    state: S
    last_seen_s: float


class SessionTable(Generic[S]):
    """Per-CORRID state with an idle expiry driven by the caller's clock (``now``)."""

    def __init__(self, idle_timeout_s: float, factory: Callable[[int], S]) -> None:
        if idle_timeout_s <= 0:
            raise ParameterError(f"state idle timeout must be > 0 s, got {idle_timeout_s}")
        self._idle_timeout_s = idle_timeout_s
        self._factory = factory
        self._entries: dict[int, _Entry[S]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, corrid: object) -> bool:
        return corrid in self._entries

    def __iter__(self) -> Iterator[int]:
        return iter(tuple(self._entries))

    def acquire(self, corrid: int, *, start: bool, now: float) -> tuple[S, bool]:
        """The state for ``corrid`` and whether it is fresh.

        START always gives fresh state. A request without START for an unknown
        CORRID (expired state, model reload) also gets fresh state: the stream
        goes on, its earlier audio is forgotten.
        """
        entry = None if start else self._entries.get(corrid)
        fresh = entry is None
        if entry is None:
            entry = _Entry(self._factory(corrid), now)
            self._entries[corrid] = entry
        entry.last_seen_s = now
        return entry.state, fresh

    def release(self, corrid: int) -> S | None:
        entry = self._entries.pop(corrid, None)
        return None if entry is None else entry.state

    def expire(self, now: float) -> tuple[int, ...]:
        """Drop state idle for longer than the timeout; the CORRIDs dropped."""
        stale = tuple(c for c, e in self._entries.items()
                      if now - e.last_seen_s > self._idle_timeout_s)
        for corrid in stale:
            del self._entries[corrid]
        return stale
