"""The flywheel bench's domain: home solar and heat-pump installation calls, a vocabulary the
small asr_streaming_nemo checkpoint never heard (its training text is data_gen.py's
call-centre templates: digits, amounts, dates, order status).

Sentences come from varied templates with a seed; the held-out sentences are never among the
training ones (checked). Voices: piper (joe), espeak-ng variants and flite voices, each
rendered at its own rate and brought to the 8 kHz line with soxr; cached by content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from bench.audio import speech_bounds_s
from bench.corpus import Utterance
from tests.speech import piper_wavs, read_pcm, write_wav

PHONE_RATE_HZ = 8000

PRODUCTS = ("solar panels", "heat pump", "battery storage", "hybrid inverter",
            "car charger", "thermal store", "solar battery")
PARTS = ("inverter", "isolator switch", "export meter", "monitoring app", "battery module",
         "optimiser", "scaffolding", "roof bracket", "hot water cylinder", "outdoor unit")
PLACES = ("garage", "loft", "south facing roof", "back garden", "utility room", "driveway")
TARIFFS = ("export tariff", "off peak tariff", "smart export guarantee", "overnight rate")
EVENTS = ("storm", "power cut", "firmware update", "roof survey", "installation")
WHENS = ("last winter", "since the spring", "after the engineer visit", "every sunny afternoon",
         "overnight", "this morning")

TEMPLATES = (
    "I would like to book a survey for {product} on my {place}.",
    "The {part} stopped working after the {event}.",
    "My {part} shows a red warning light {when}.",
    "How much does the {product} save on the {tariff}?",
    "Can the installer put the {part} in the {place}?",
    "Is the {part} covered by the warranty on the {product}?",
    "We signed up for the {tariff} but the {part} is not reporting.",
    "The {product} has been making a humming noise {when}.",
    "Could you send an engineer to check the {part}?",
    "Our {product} produced almost nothing {when}.",
    "Do I need planning permission for {product} on the {place}?",
    "The {part} needs to be replaced before the {product} goes live.",
    "Please explain how the {tariff} works with the {product}.",
    "I want to add {product} to the existing {part}.",
    "The scaffolding for the {product} is still in the {place}.",
)


@dataclass(frozen=True, slots=True)
class Voice:
    engine: str        # piper | espeak | flite
    name: str          # espeak voice+variant, flite voice, "" for piper
    speed: int = 0     # espeak words per minute (0: its default)


VOICES: tuple[Voice, ...] = (
    Voice("piper", ""), Voice("flite", "slt"), Voice("espeak", "en-us+m3", 150),
    Voice("piper", ""), Voice("flite", "kal"), Voice("espeak", "en-us+f2", 165),
    Voice("flite", "awb"), Voice("espeak", "en+m1", 140),
)


def _fill(template: str, rng: random.Random) -> str:
    return template.format(product=rng.choice(PRODUCTS), part=rng.choice(PARTS),
                           place=rng.choice(PLACES), tariff=rng.choice(TARIFFS),
                           event=rng.choice(EVENTS), when=rng.choice(WHENS))


def sentences(n_train: int, n_heldout: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """Distinct sentences: training ones, then held-out ones never in the training set."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    for _ in range(200 * (n_train + n_heldout)):
        if len(out) == n_train + n_heldout:
            break
        text = _fill(rng.choice(TEMPLATES), rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    if len(out) < n_train + n_heldout:
        raise ValueError(f"only {len(out)} distinct sentences for {n_train}+{n_heldout}")
    return out[:n_train], out[n_train:]


def _cache_root() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "asr-gateway-bench"


def _to_phone(src: Path, dst: Path) -> Path:
    with wave.open(str(src)) as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16)
    y = soxr.resample(pcm.astype(np.float32) / 32768, rate, PHONE_RATE_HZ)
    return write_wav(dst, (np.clip(y, -1, 1) * 32767).astype(np.int16))


def _espeak(text: str, voice: Voice, dst: Path) -> None:
    cmd = ["espeak-ng", "-v", voice.name, "-w", str(dst)]
    if voice.speed:
        cmd += ["-s", str(voice.speed)]
    subprocess.run([*cmd, text], check=True, timeout=60, capture_output=True)


def _flite(text: str, voice: Voice, dst: Path) -> None:
    subprocess.run(["flite", "-voice", voice.name, "-t", text, "-o", str(dst)], check=True,
                   timeout=60, capture_output=True)


def _render(items: Sequence[tuple[str, Voice]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / f"utt-{i}.wav" for i in range(len(items))]
    piper = [(i, t) for i, (t, v) in enumerate(items) if v.engine == "piper"
             and not out[i].exists()]
    if piper:
        with tempfile.TemporaryDirectory(prefix="flywheel-piper-") as tmp:
            wavs = piper_wavs([t for _i, t in piper], Path(tmp))
            for (i, _t), wav in zip(piper, wavs, strict=True):
                shutil.copyfile(wav, out[i])
    for i, (text, voice) in enumerate(items):
        if voice.engine == "piper" or out[i].exists():
            continue
        raw = folder / f"raw-{i}.wav"
        (_espeak if voice.engine == "espeak" else _flite)(text, voice, raw)
        _to_phone(raw, out[i])
        raw.unlink()
    return out


def utterances(texts: Sequence[str], *, voice_offset: int = 0) -> list[tuple[Utterance, Voice]]:
    """Each text in the next voice of VOICES (round robin from ``voice_offset``), 8 kHz."""
    items = [(t, VOICES[(i + voice_offset) % len(VOICES)]) for i, t in enumerate(texts)]
    key = json.dumps([[t, v.engine, v.name, v.speed] for t, v in items])
    folder = _cache_root() / f"flywheel-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    wavs = _render(items, folder)
    result = []
    for (text, voice), wav in zip(items, wavs, strict=True):
        pcm = read_pcm(wav)
        start, end = speech_bounds_s(pcm)
        result.append((Utterance(text, pcm, start, end), voice))
    return result
