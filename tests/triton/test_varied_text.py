"""varied_text.py and data_gen.py's text sources and packet loss: the training text of the
small NeMo model (issue 15: varied call-centre speech, not templates)."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from bench.corpus import CORPORA
from tests.triton.fixtures import MODEL_REPOSITORY

sys.path.insert(0, str(MODEL_REPOSITORY / "asr_streaming_nemo"))  # no NeMo import
import data_gen as dg  # noqa: E402
import varied_text as vt  # noqa: E402

# words any sentence about money, dates or times may share with a test sentence
CLOSED = ({*vt.DIGIT_WORDS, *vt._TEENS, *vt._TENS, "hundred", "thousand", "and", "the", "of",
           "on", "a", "in", "at", "is", "to", "i", "my"}
          | set(vt.MONTHS) | set(vt.WEEKDAYS) | {w for c in vt.CURRENCIES for w in c}
          | {vt.ordinal_words(n).split()[-1] for n in range(1, 32)})


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_same_seed_same_sentences_other_seed_others() -> None:
    first = [vt.VariedText(4).sentence() for _ in range(1)]
    assert vt.VariedText(4).unique(300) == vt.VariedText(4).unique(300)
    assert vt.VariedText(4).unique(300) != vt.VariedText(5).unique(300)
    assert first[0] == vt.VariedText(4).sentence()


def test_sentences_are_their_own_normalised_transcripts() -> None:
    for text in vt.VariedText(11).unique(3000):
        assert re.fullmatch(r"[a-z']+( [a-z']+)*", text), text
        assert vt.normalise(text) == text


def test_many_shapes_and_a_broad_vocabulary() -> None:
    texts = vt.VariedText(2).unique(5000)
    openings = {" ".join(t.split()[:3]) for t in texts}
    words = {w for t in texts for w in t.split()}
    lengths = [len(t.split()) for t in texts]
    assert len(openings) > 1000          # not a handful of templates
    assert len(words) > 900
    assert min(lengths) <= 3 and max(lengths) >= 20
    # names, streets, towns, products and services all appear
    for group in (vt.SURNAMES, vt.TOWNS, vt.STREET_TYPES, vt.RELATIVES):
        assert len(words & set(group)) > len(group) // 2


def test_unique_skips_excluded_texts_compared_normalised() -> None:
    gen = vt.VariedText(8)
    probe = vt.VariedText(8).unique(50)
    shouting = [t.upper() + "!" for t in probe[:25]]
    out = gen.unique(50, exclude=shouting)
    assert not set(out) & set(probe[:25]) and len(set(out)) == 50


def test_no_bench_sentence_is_echoed() -> None:
    """No generated sentence is a bench sentence (data_gen also excludes them by
    --exclude-text), and none shares a five-word run with a held-out one, save runs of
    closed-class words (numbers, dates, currencies, function words). The general and domain
    sets share stock phrases ("my date of birth is", "my phone number is") and may."""
    bench_text = {vt.normalise(t) for texts in CORPORA.values() for t in texts}
    heldout = [vt.normalise(t).split() for t in CORPORA["heldout"]]
    heldout_grams = set().union(*(_grams(b, 5) for b in heldout))
    for text in vt.VariedText(3).unique(20000):
        assert text not in bench_text
        for gram in _grams(text.split(), 5) & heldout_grams:
            assert set(gram) <= CLOSED, (gram, text)


def test_number_words() -> None:
    assert vt.number_words(0) == "zero"
    assert vt.number_words(305) == "three hundred and five"
    assert vt.number_words(12040) == "twelve thousand and forty"
    assert vt.number_words(999_999).startswith("nine hundred and ninety nine thousand")
    assert vt.ordinal_words(22) == "twenty second" and vt.ordinal_words(30) == "thirtieth"
    with pytest.raises(ValueError, match="out of range"):
        vt.number_words(1_000_000)


def test_data_gen_text_sources() -> None:
    varied = dg.sentences("varied", 200, 1, set())
    mixed = dg.sentences("mixed", 200, 1, set(varied[:10]))
    templates = set(dg.SentenceGenerator(1).unique(2000, exclude=set()))
    assert len(set(mixed)) == 200 and not set(mixed) & set(varied[:10])
    from_templates = sum(t in templates for t in mixed)
    assert 90 <= from_templates <= 110   # half each (a varied one may match a template)
    with pytest.raises(ValueError, match="unknown text source"):
        dg.sentences("poetry", 10, 1, set())


def test_drop_packets_silences_whole_20ms_packets() -> None:
    line = np.ones(dg.LINE_RATE_HZ * 2, dtype=np.float32)
    assert np.array_equal(dg.drop_packets(line, np.random.default_rng(0), 0.0), line)
    assert not dg.drop_packets(line, np.random.default_rng(0), 1.0).any()
    lossy = dg.drop_packets(line, np.random.default_rng(0), 0.3)
    packets = lossy.reshape(-1, dg.LINE_RATE_HZ // 50)
    lost = ~packets.any(axis=1)
    assert np.all(packets[~lost] == 1.0)            # a packet is lost whole or not at all
    assert 0.15 < lost.mean() < 0.45
    assert np.all(line == 1.0)                       # the input is left alone


def test_phone_line_with_loss_has_silent_gaps() -> None:
    rng = np.random.default_rng(1)
    audio = rng.normal(0, 0.1, dg.SAMPLE_RATE_HZ * 2).astype(np.float32)
    settings = dg.LineSettings(snr_db=(90.0, 90.0), loss_fraction=1.0, loss_rate=(0.3, 0.3))
    out = dg.phone_line(audio, dg.SAMPLE_RATE_HZ, np.random.default_rng(2), settings)
    frames = out[: out.size // 320 * 320].reshape(-1, 320)      # 20 ms at 16 kHz
    quiet = np.sqrt((frames ** 2).mean(axis=1)) < 0.005
    assert 0.1 < quiet.mean() < 0.5
    clean = dg.phone_line(audio, dg.SAMPLE_RATE_HZ, np.random.default_rng(2),
                          dg.LineSettings(snr_db=(90.0, 90.0)))
    clean_frames = clean[: clean.size // 320 * 320].reshape(-1, 320)
    assert not (np.sqrt((clean_frames ** 2).mean(axis=1)) < 0.005).any()
