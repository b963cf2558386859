"""``asr-gateway transcribe --ray local``: the batch task on a local Ray cluster (2 CPUs, a
small object store, started and shut down by the command) against the session's Triton with
``asr_ack`` (its final is the number of 16 kHz samples it received: the whole file heard).

Four generated recordings (mono 8 kHz PCM, stereo agent/customer, mu-law WAV in a
sub-folder, 16 kHz PCM) and a corrupt one: every good file's outputs, the manifest, and the
outputs equal to the plain (non-Ray) run's, the corrupt file failed the same way; a second
Ray run skips what is complete.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile  # type: ignore[import-untyped]

from gateway.triton_launcher import TritonProcess

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
MODEL_RATE_HZ = 16000
RUN_TIMEOUT_S = 300.0
CONVERSATION_ID = re.compile(r"^Conversation [0-9a-f]+$", re.MULTILINE)
VOLATILE = frozenset({"conversation_id", "call_id", "started_at", "ended_at"})
# name -> (rate, channels, seconds, soundfile subtype)
FILES: dict[str, tuple[int, int, float, str]] = {
    "mono.wav": (8000, 1, 1.5, "PCM_16"),
    "stereo.wav": (8000, 2, 2.25, "PCM_16"),
    "sub/mulaw.wav": (8000, 1, 1.0, "ULAW"),
    "wide.wav": (16000, 1, 1.75, "PCM_16"),
}
CORRUPT = "broken.wav"


def _tone_bursts(rate: int, seconds: float, channel: int) -> npt.NDArray[np.float32]:
    """Half-second tone bursts with pauses, the channels taking turns."""
    t = np.arange(round(rate * seconds)) / rate
    on = ((t // 0.5).astype(int) % 2) == channel % 2
    tone: npt.NDArray[np.float32] = (0.3 * np.sin(2 * np.pi * (300 + 100 * channel) * t)
                                     * on).astype(np.float32)
    return tone


def _write_inputs(root: Path) -> None:
    for name, (rate, channels, seconds, subtype) in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = np.stack([_tone_bursts(rate, seconds, c) for c in range(channels)], axis=1)
        soundfile.write(path, data, rate, subtype=subtype, format="WAV")
    (root / CORRUPT).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 7)


def _transcribe(inputs: Path, out: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "transcribe", str(inputs), "--out", str(out),
         "--triton-url", url, "--model", "asr_ack", "--concurrency", "4",
         "--format", "json,txt", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)


def _stable(value: Any) -> Any:
    """The document without its ids and wall-clock times (new in every run)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _manifest(out: Path) -> dict[str, dict[str, Any]]:
    lines = (out / "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    return {Path(r["path"]).name if "/sub/" not in r["path"] else "sub/" + Path(r["path"]).name:
            r for r in rows}


def _outputs(out: Path) -> dict[str, Any]:
    """Each file's outputs, stable across runs. asr_ack's finals all start at 0 s, so the
    two channels' turns of a stereo file tie, and a tie is in the order the finals came:
    ties are sorted here (by channel), in the JSON's turns and in the text's lines."""
    found: dict[str, Any] = {}
    for name in FILES:
        doc = _stable(json.loads((out / f"{name}.json").read_text()))
        doc["turns"].sort(key=lambda t: (t["start_s"], t["speaker"]))
        head, _, body = (out / f"{name}.txt").read_text().partition("\n\n")
        lines = sorted(body.splitlines())      # "[HH:MM:SS.mmm] Speaker: text"
        found[name] = {"json": doc, "txt": (CONVERSATION_ID.sub("Conversation <id>", head),
                                            lines)}
    return found


def _check_heard_whole(name: str, doc: dict[str, Any]) -> None:
    rate, channels, seconds, _subtype = FILES[name]
    expected = {"agent", "customer"} if channels == 2 else {"customer"}
    assert set(doc["channels"]) == expected, name
    assert doc["duration_s"] == pytest.approx(seconds, abs=1e-3), name
    assert doc["asr_complete"] is True, name
    by_speaker = {t["speaker"]: int(t["text"]) for t in doc["turns"]}
    assert set(by_speaker) == expected, (name, doc["turns"])
    for speaker, samples in by_speaker.items():   # asr_ack: the samples it was sent
        assert abs(samples - seconds * MODEL_RATE_HZ) <= 2, (name, speaker, samples)


def _check_manifest(out: Path, statuses: dict[str, str]) -> dict[str, dict[str, Any]]:
    rows = _manifest(out)
    assert {k: r["status"] for k, r in rows.items()} == statuses
    for name, (_rate, _ch, seconds, _st) in FILES.items():
        row = rows[name]
        assert row["error"] is None
        assert row["audio_s"] == pytest.approx(seconds, abs=1e-3)
        assert sorted(row["outputs"]) == sorted(str(out / f"{name}.{f}") for f in ("json", "txt"))
    assert rows[CORRUPT]["error"]
    return rows


def test_ray_run_equals_the_plain_run(triton: TritonProcess, tmp_path: Path) -> None:
    inputs = tmp_path / "recordings"
    _write_inputs(inputs)
    plain, on_ray = tmp_path / "plain", tmp_path / "ray"
    done = {**dict.fromkeys(FILES, "done"), CORRUPT: "failed"}

    first = _transcribe(inputs, plain, triton.grpc_url)
    assert first.returncode == 1, first.stderr        # the corrupt file fails, the rest go on
    ray_run = _transcribe(inputs, on_ray, triton.grpc_url, "--ray", "local", "--ray-cpus", "2",
                          "--ray-workers", "2")
    assert ray_run.returncode == 1, ray_run.stderr
    assert f"{CORRUPT}:" in ray_run.stderr            # listed among the failures

    plain_rows = _check_manifest(plain, done)
    ray_rows = _check_manifest(on_ray, done)
    assert ray_rows[CORRUPT]["error"] == plain_rows[CORRUPT]["error"]
    ray_outputs = _outputs(on_ray)
    for name, found in ray_outputs.items():
        _check_heard_whole(name, found["json"])
    assert ray_outputs == _outputs(plain)

    again = _transcribe(inputs, on_ray, triton.grpc_url, "--ray", "local", "--ray-cpus", "2")
    assert again.returncode == 1, again.stderr
    _check_manifest(on_ray, {**dict.fromkeys(FILES, "skipped"), CORRUPT: "failed"})
    assert _outputs(on_ray) == ray_outputs
