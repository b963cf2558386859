"""asr_streaming_nemo's RecognizerConfig: every bad value names its key (pure, no ONNX)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.triton.fixtures import MODEL_REPOSITORY

sys.path.insert(0, str(MODEL_REPOSITORY / "asr_streaming_nemo" / "1"))
from streaming_ctc import RecognizerConfig, StreamConfigError  # noqa: E402


@pytest.mark.parametrize(("key", "value"), [
    ("end_pad_ms", -1.0), ("end_pad_ms", 5000.5), ("end_silence_ms", 0.0),
    ("max_batch", 0), ("device", "tpu"), ("decoder", "tdt"),
])
def test_bad_values_name_the_key(key: str, value: Any) -> None:
    with pytest.raises(StreamConfigError, match=key):
        RecognizerConfig(**{key: value})


@pytest.mark.parametrize("pad_ms", [0.0, 800.0, 5000.0])
def test_end_pad_range_is_inclusive(pad_ms: float) -> None:
    assert RecognizerConfig(end_pad_ms=pad_ms).end_pad_ms == pad_ms
