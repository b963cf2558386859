"""Whisper's hallucinated words over silence are dropped from finals (pure unit tests of
``common.whisper_decode.heard_words``; the real model is exercised by the contract and
end-to-end tests)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from tests.triton.fixtures import MODEL_REPOSITORY

sys.path.insert(0, str(MODEL_REPOSITORY))  # the models' shared, Triton-free code
from common.whisper_decode import heard_words  # noqa: E402

RATE = 16000


def _audio(voiced: list[tuple[float, float]], total_s: float, noise: float = 0.0) -> np.ndarray:
    """A 300 Hz tone at 0.3 over the `voiced` spans, optional line noise elsewhere."""
    rng = np.random.default_rng(0)
    audio = rng.normal(0.0, noise, int(total_s * RATE)).astype(np.float32)
    t = np.arange(audio.size) / RATE
    for start, end in voiced:
        span = (t >= start) & (t < end)
        audio[span] += (0.3 * np.sin(2 * np.pi * 300 * t[span])).astype(np.float32)
    return audio


def _segment(*words: tuple[str, float, float]) -> SimpleNamespace:
    return SimpleNamespace(words=[SimpleNamespace(word=w, start=s, end=e, probability=0.9)
                                  for w, s, e in words])


def _texts(words: list[SimpleNamespace]) -> list[str]:
    return [str(w.word) for w in words]


@pytest.mark.parametrize("noise", [0.0, 0.003])
def test_words_over_silence_and_past_the_end_are_dropped(noise: float) -> None:
    audio = _audio([(0.2, 1.8)], 3.0, noise)
    segments = [_segment((" my", 0.2, 0.6), (" order,", 0.7, 1.2), (" please.", 1.3, 1.8)),
                _segment((" Thank", 2.3, 2.5), (" you", 2.5, 2.9)),
                _segment((" for", 3.1, 3.4), (" watching.", 3.4, 4.0))]
    assert _texts(heard_words(segments, audio)) == [" my", " order,", " please."]


def test_rough_word_times_next_to_speech_are_kept() -> None:
    """Whisper's times can be off by 100 ms; a word just outside the sound stays."""
    audio = _audio([(0.5, 1.0)], 2.0)
    segments = [_segment((" yes", 1.05, 1.3), (" no", 0.1, 0.4))]
    assert _texts(heard_words(segments, audio)) == [" yes", " no"]


def test_quiet_caller_is_not_mistaken_for_silence() -> None:
    """The level is relative to the utterance's own loudest frame, not absolute."""
    audio = _audio([(0.2, 1.0)], 1.5) * 0.01
    assert _texts(heard_words([_segment((" hello", 0.2, 1.0))], audio)) == [" hello"]


def test_no_words_and_no_sound() -> None:
    assert heard_words([_segment()], np.zeros(RATE, dtype=np.float32)) == []
    assert heard_words([_segment((" thanks", 0.1, 0.5))], np.zeros(RATE, np.float32)) == []


def test_a_word_past_the_end_is_dropped_even_next_to_speech() -> None:
    """Speech runs to the last sample; a word Whisper places 50 ms after the audio ends is
    within the level check's margin of loud frames, yet still not heard."""
    audio = _audio([(0.2, 1.0)], 1.0)
    segments = [_segment((" okay", 0.3, 0.9), (" bye", 1.05, 1.3))]
    assert _texts(heard_words(segments, audio)) == [" okay"]
