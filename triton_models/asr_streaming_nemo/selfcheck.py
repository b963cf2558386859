"""Stream audio through the asr_streaming_nemo runtime outside Triton and print JSON.

Uses exactly the code model.py uses (1/streaming_ctc.py: incremental log-mel,
cache-aware encoder steps on ONNX Runtime, greedy CTC, endpointing), fed in
chunks of `--chunk-ms` as the gateway sends them. No NeMo or torch import.

    .venv-triton/bin/python triton_models/asr_streaming_nemo/selfcheck.py a.wav b.wav
    .venv-triton/bin/python triton_models/asr_streaming_nemo/selfcheck.py \\
        --manifest build/nemo_data/heldout.jsonl --streams 8

WAV mode prints {"files": [{"path", "text", "results": [...]}], "step_ms": {...}}.
Manifest mode prints {"utterances", "wer", "digit_sequence_accuracy",
"digit_accuracy", "transcripts", "step_ms"} with the held-out references; it streams `--streams`
utterances side by side so batching across sequences is exercised too.
Exit status 2 with the path on stderr when the model folder is incomplete.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "1"))

from streaming_ctc import (  # noqa: E402
    F32,
    ModelFilesError,
    RecognizerConfig,
    StreamConfigError,
    StreamingRecognizer,
    StreamInput,
)

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def read_wav_16k(path: Path) -> F32:
    with wave.open(str(path), "rb") as wav:
        if wav.getframerate() != 16000 or wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: need 16 kHz 16-bit mono WAV")
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    audio: npt.NDArray[np.float32] = pcm.astype(np.float32) / 32768.0
    return audio


def word_errors(ref: Sequence[str], hyp: Sequence[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def digits_of(text: str) -> list[str]:
    return [w for w in text.split() if w in DIGIT_WORDS]


class TimedSession:
    """Wraps the encoder session to time every step (batch size recorded)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.providers = inner.providers
        self.times_ms: dict[int, list[float]] = {}

    def step(self, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = self._inner.step(*args)
        batch = int(args[0].shape[0])
        self.times_ms.setdefault(batch, []).append((time.perf_counter() - t0) * 1000)
        return out

    def summary(self) -> dict[str, dict[str, float]]:
        return {str(b): {"steps": len(t), "p50": round(float(np.percentile(t, 50)), 2),
                         "p90": round(float(np.percentile(t, 90)), 2)}
                for b, t in sorted(self.times_ms.items())}


@dataclass(slots=True)
class Transcript:
    path: str
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(r["text"] for r in self.results if r["type"] == "final" and r["text"])


def chunks(audio: F32, chunk_samples: int) -> Iterator[tuple[F32, bool]]:
    """Chunks with the END flag on the last one (an empty END chunk for empty audio)."""
    if audio.size == 0:
        yield audio, True
        return
    for start in range(0, audio.size, chunk_samples):
        yield audio[start:start + chunk_samples], start + chunk_samples >= audio.size


def transcribe_together(rec: StreamingRecognizer, items: Sequence[tuple[str, F32]],
                        chunk_samples: int, phrases: Sequence[str]) -> list[Transcript]:
    """Stream several audios side by side, one chunk each per round, like Triton batches."""
    out = [Transcript(path) for path, _ in items]
    states = [rec.new_stream(phrases) for _ in items]
    feeds = [chunks(audio, chunk_samples) for _, audio in items]
    live = list(range(len(items)))
    while live:
        batch: list[tuple[int, StreamInput]] = []
        for index in list(live):
            piece = next(feeds[index], None)
            if piece is None:
                live.remove(index)
                continue
            batch.append((index, StreamInput(states[index], piece[0], piece[1])))
        if not batch:
            break
        for (index, _), results in zip(batch, rec.process([b for _, b in batch]), strict=True):
            out[index].results.extend(json.loads(r.to_json()) for r in results)
    return out


def evaluate_manifest(rec: StreamingRecognizer, manifest: Path, limit: int, streams: int,
                      chunk_samples: int) -> dict[str, Any]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = rows[:limit] if limit > 0 else rows
    errors = words = digit_errors = digit_total = digit_utts = digit_exact = 0
    pairs: list[dict[str, str]] = []
    for start in range(0, len(rows), streams):
        group = rows[start:start + streams]
        items = [(r["audio_filepath"], read_wav_16k(Path(r["audio_filepath"]))) for r in group]
        for row, tr in zip(group, transcribe_together(rec, items, chunk_samples, ()),
                           strict=True):
            ref, hyp = row["text"].split(), tr.text.split()
            pairs.append({"reference": row["text"], "hypothesis": tr.text})
            errors += word_errors(ref, hyp)
            words += len(ref)
            ref_d, hyp_d = digits_of(row["text"]), digits_of(tr.text)
            if len(ref_d) >= 3:
                digit_utts += 1
                digit_exact += ref_d == hyp_d
                digit_errors += word_errors(ref_d, hyp_d)
                digit_total += len(ref_d)
    return {"utterances": len(rows), "wer": round(errors / max(words, 1), 4),
            "digit_sequences": digit_utts,
            "digit_sequence_accuracy": round(digit_exact / max(digit_utts, 1), 4),
            "digit_accuracy": round(max(0.0, 1 - digit_errors / max(digit_total, 1)), 4),
            "transcripts": pairs}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="stream audio through asr_streaming_nemo")
    parser.add_argument("wavs", nargs="*", type=Path)
    parser.add_argument("--model-dir", type=Path, default=HERE / "1")
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--chunk-ms", type=float, default=160.0)
    parser.add_argument("--att-context", default="70,13")
    parser.add_argument("--end-silence-ms", type=float, default=600.0)
    parser.add_argument("--end-pad-ms", type=float, default=800.0)
    parser.add_argument("--phrase", action="append", default=[])
    parser.add_argument("--phrase-boost", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--decoder", default="", help="rnnt or ctc (default: the model's)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    left, right = (int(v) for v in args.att_context.split(","))
    config = RecognizerConfig(att_context_size=(left, right), end_silence_ms=args.end_silence_ms,
                              end_pad_ms=args.end_pad_ms,
                              phrase_boost=args.phrase_boost, device="cpu", threads=args.threads,
                              decoder=args.decoder)
    try:
        rec = StreamingRecognizer(args.model_dir, config)
    except (ModelFilesError, StreamConfigError) as exc:
        print(f"selfcheck: {exc}", file=sys.stderr)
        return 2
    timed = TimedSession(rec.session)
    rec.session = timed  # type: ignore[assignment]
    chunk_samples = max(1, int(round(args.chunk_ms * 16)))
    if args.manifest is not None:
        report = evaluate_manifest(rec, args.manifest, args.limit, args.streams, chunk_samples)
    else:
        items = [(str(p), read_wav_16k(p)) for p in args.wavs]
        done = transcribe_together(rec, items, chunk_samples, args.phrase)
        report = {"files": [{"path": t.path, "text": t.text, "results": t.results}
                            for t in done]}
    report["att_context_size"] = [left, right]
    report["decoder"] = rec.decoder
    report["step_ms"] = timed.summary()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
