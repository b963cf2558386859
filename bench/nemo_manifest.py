"""bench's corpora as 16 kHz WAV manifests for ``asr_streaming_nemo/selfcheck.py --manifest``:
the same 8 kHz speech the accuracy bench sends (resampled with soxr, 0.5 s of silence after
each sentence), references normalised as varied_text.py writes training text.

    .venv/bin/python -m bench.nemo_manifest --out build/bench_eval [--corpora heldout,domain]

Writes ``<out>/<corpus>.jsonl`` and ``<out>/<corpus>-NNN.wav``; prints the row counts.

Layer: shell (files).
"""

from __future__ import annotations

import argparse
import json
import re
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soxr

from bench.corpus import CORPORA, corpus_utterances

RATE_HZ = 16000
TAIL_S = 0.5


def normalise(text: str) -> str:
    """Lower-case words, apostrophes kept, other punctuation dropped (varied_text.normalise)."""
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split())


def write(corpus: str, out: Path) -> int:
    rows = []
    for i, utt in enumerate(corpus_utterances(corpus)):
        audio = soxr.resample(utt.pcm.astype(np.float32) / 32768.0, 8000, RATE_HZ)
        audio = np.concatenate([audio, np.zeros(int(TAIL_S * RATE_HZ), np.float32)])
        path = out / f"{corpus}-{i:03d}.wav"
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(RATE_HZ)
            wav.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
        rows.append({"audio_filepath": str(path), "duration": round(audio.size / RATE_HZ, 3),
                     "text": normalise(utt.text)})
    (out / f"{corpus}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                         encoding="utf-8")
    return len(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpora", default="heldout,domain")
    args = parser.parse_args(argv)
    names = [n for n in args.corpora.split(",") if n]
    unknown = [n for n in names if n not in CORPORA]
    if unknown:
        parser.error(f"unknown corpus {unknown[0]!r} (known: {', '.join(CORPORA)})")
    args.out.mkdir(parents=True, exist_ok=True)
    print(json.dumps({name: write(name, args.out) for name in names}))


if __name__ == "__main__":
    main()
