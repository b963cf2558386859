"""bench/corpus.py: the held-out set is new (in no other bench set, from no training
generator) and the corpus names resolve per model."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bench import flywheel_corpus
from bench.corpus import (
    CORPORA,
    DOMAIN_SENTENCES,
    HELDOUT_SENTENCES,
    SENTENCES,
    corpus_voices,
    resolve_corpora,
)
from tests.source_module import load_source
from tests.speech import normalise

DATA_GEN = Path(__file__).resolve().parents[2] / "triton_models/asr_streaming_nemo/data_gen.py"


def _data_gen() -> ModuleType:
    if str(DATA_GEN.parent) not in sys.path:   # data_gen imports varied_text beside it
        sys.path.insert(0, str(DATA_GEN.parent))
    return load_source("bench_test_data_gen", DATA_GEN)


def _template_re(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(template)), re.IGNORECASE)


def _key(text: str) -> str:
    return " ".join(normalise(text))


def test_heldout_is_thirty_distinct_new_sentences() -> None:
    keys = {_key(t) for t in HELDOUT_SENTENCES}
    assert len(HELDOUT_SENTENCES) == 30 and len(keys) == 30
    assert not keys & {_key(t) for t in SENTENCES + DOMAIN_SENTENCES}


@pytest.mark.filterwarnings("ignore:'audioop' is deprecated:DeprecationWarning")
def test_heldout_is_from_no_training_generator() -> None:
    module = _data_gen()
    generated = {_key(t) for t in module.SentenceGenerator(1234).unique(20000, set())}
    keys = {_key(t) for t in HELDOUT_SENTENCES}
    assert not keys & generated
    # nor any of data_gen's sentence shapes (its fixed openings and requests)
    openings = ("my account number is", "the status of", "i paid", "my name is",
                "my phone number is", "the amount due is")
    assert not [k for k in keys if k.startswith(openings)]
    patterns = [_template_re(t) for t in flywheel_corpus.TEMPLATES]
    assert not [t for t in HELDOUT_SENTENCES if any(p.fullmatch(t) for p in patterns)]
    train, _heldout = flywheel_corpus.sentences(60, 0)        # the check can fail:
    assert all(any(p.fullmatch(t) for p in patterns) for t in train)


def test_corpora_resolve_per_model() -> None:
    assert resolve_corpora("asr_streaming_nemo", ("own", "heldout")) == ("domain", "heldout")
    assert resolve_corpora("asr_cpu_default", ("own", "general", "heldout")) == (
        "general", "heldout")
    assert set(CORPORA) == {"general", "domain", "heldout"}
    with pytest.raises(ValueError, match="unknown corpus"):
        resolve_corpora("asr_cpu_default", ("nope",))


def test_voices_are_named_per_corpus() -> None:
    assert "espeak" in corpus_voices("heldout") and "flite" in corpus_voices("heldout")
    assert corpus_voices("general") == "piper (joe-us)"
