"""Test-side audio and RTP tools, independent of the gateway's own codecs and packet code:
stdlib ``audioop`` for G.711 and resampling, ``struct`` for RTP headers."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import tempfile
import time
import warnings
import wave
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000
FRAME = 160          # 20 ms at 8 kHz
SENTENCE = "Your order number is four two seven nine. It will arrive on Tuesday."


def speech_8k(text: str = SENTENCE) -> npt.NDArray[np.int16]:
    """espeak-ng speech, resampled to 8 kHz mono 16-bit (what a phone line carries)."""
    exe = shutil.which("espeak-ng")
    assert exe, "espeak-ng missing: the Makefile installs it (Debian espeak-ng)"
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run([exe, "-w", str(wav), "-s", "150", text], check=True, timeout=60)
        with wave.open(str(wav)) as w:
            rate, raw = w.getframerate(), w.readframes(w.getnframes())
    converted, _state = audioop.ratecv(raw, 2, 1, rate, RATE, None)
    return np.frombuffer(converted, dtype=np.int16).copy()


def encode(pcm: npt.NDArray[np.int16], codec: str) -> bytes:
    raw = pcm.astype("<i2").tobytes()
    return audioop.lin2ulaw(raw, 2) if codec == "PCMU" else audioop.lin2alaw(raw, 2)


def rtp_packet(seq: int, ts: int, ssrc: int, pt: int, payload: bytes,
               marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, ssrc) + payload


def packets(pcm: npt.NDArray[np.int16], codec: str, *, ssrc: int = 0x1234, seq0: int = 1000,
            ts0: int = 5000) -> list[bytes]:
    pt = 0 if codec == "PCMU" else 8
    frames = [pcm[i:i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]
    return [rtp_packet(seq0 + i, ts0 + i * FRAME, ssrc, pt, encode(f, codec), marker=i == 0)
            for i, f in enumerate(frames)]


def send_paced(sock: socket.socket, items: Iterable[bytes], addr: tuple[str, int],
               ptime_s: float = 0.02) -> None:
    """Send on absolute deadlines, like a phone would (bounded by the list length)."""
    start = time.monotonic()
    for i, data in enumerate(items):
        delay = start + i * ptime_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sock.sendto(data, addr)


def read_wav(path: Path) -> tuple[int, int, npt.NDArray[np.int16]]:
    with wave.open(str(path)) as w:
        return w.getframerate(), w.getnchannels(), np.frombuffer(
            w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())


def best_lag(reference: npt.NDArray[np.int16], signal: npt.NDArray[np.int16],
             max_lag: int) -> int:
    """Lag (samples) where ``signal`` best matches ``reference`` (signal[lag:] ~ reference)."""
    ref = reference[: RATE * 2].astype(np.float64)
    scores = []
    for lag in range(0, max_lag):
        seg = signal[lag: lag + len(ref)].astype(np.float64)
        if len(seg) < len(ref):
            break
        scores.append(float(np.dot(ref, seg)))
    return int(np.argmax(scores))


def window_correlations(reference: npt.NDArray[np.int16], signal: npt.NDArray[np.int16],
                        window: int = RATE // 2) -> list[float]:
    """Normalised correlation per window over the part where the reference has sound."""
    out: list[bytes] = []
    for i in range(0, min(len(reference), len(signal)) - window + 1, window):
        a = reference[i:i + window].astype(np.float64)
        b = signal[i:i + window].astype(np.float64)
        if np.sqrt(np.mean(a * a)) < 300:       # skip near-silent windows (pauses)
            continue
        out.append(float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9)))
    return out


def g711_roundtrip(pcm: npt.NDArray[np.int16], codec: str) -> npt.NDArray[np.int16]:
    return g711_decode(encode(pcm, codec), codec)


def g711_decode(data: bytes, codec: str) -> npt.NDArray[np.int16]:
    lin = audioop.ulaw2lin(data, 2) if codec == "PCMU" else audioop.alaw2lin(data, 2)
    return np.frombuffer(lin, dtype="<i2").copy()


def dtmf_packets(digit_code: int, *, seq0: int, ts: int, ssrc: int, pt: int = 101,
                 steps: int = 5, step_samples: int = 160) -> list[bytes]:
    """An RFC 4733 event: updates every 20 ms, then the end bit three times."""
    out: list[bytes] = []
    for i in range(1, steps + 1):
        payload = struct.pack("!BBH", digit_code, 10, i * step_samples)
        out.append(rtp_packet(seq0 + len(out), ts, ssrc, pt, payload, marker=i == 1))
    end = struct.pack("!BBH", digit_code, 0x80 | 10, steps * step_samples)
    out += [rtp_packet(seq0 + len(out) + k, ts, ssrc, pt, end) for k in range(3)]
    return out


def reorder_pairs(items: Sequence[bytes], at: Sequence[int]) -> list[bytes]:
    out = list(items)
    for i in at:
        out[i], out[i + 1] = out[i + 1], out[i]
    return out
