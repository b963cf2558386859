"""``asr-gateway transcribe`` end to end (issue 18) on the session's real Triton.

Whisper (``asr_cpu_default``) on a directory of three files: a stereo 8 kHz PCM call with
piper speech, the agent's sentences on the left and the customer's on the right (each
side silent while the other talks); a mono µ-law WAV of the customer; and a truncated WAV.
The run exits 1 naming the bad file, and the manifest says why; each good file's document
(the schema's ``SummaryDocument``) has its turns under the right speaker, inside the file,
and the VTT, SRT and text outputs have them too. A second run skips both good files
(untouched), ``--force`` redoes them; a run killed midway resumes where it stopped.

``asr_ack`` (no recognition: its final is the number of samples the sequence got) on a
10-minute stereo file: the final of each channel counts every sample of the file (at the
model's 16 kHz: nothing dropped on the way), the document and its statistics cover the
whole file, and the tone bursts' talk time is exact. The same on a short file with
``--left customer`` swaps the channels.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf  # type: ignore[import-untyped]

from gateway.analytics.summary import speaker_label
from gateway.triton_launcher import TritonProcess
from tests.event_files import _validator
from tests.speech import piper_wavs, read_pcm, word_error_rate

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RATE = 8000
AGENT = ("Thank you for calling Acme broadband. How can I help you today?",
         "I can offer you twenty percent off for the next twelve months.")
CUSTOMER = ("Hi. I would like to cancel my internet contract please.",
            "Okay, that sounds good. Thank you for your help.")
MONO = "The connection keeps dropping every evening and I am really frustrated."
LEAD_S, GAP_S, TRAIL_S = 0.5, 1.5, 1.5
MAX_WER = 0.35
RUN_TIMEOUT_S = 900
Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Inputs:
    root: Path
    stereo: Path
    mono: Path
    broken: Path
    stereo_s: float
    mono_s: float


@dataclass(frozen=True, slots=True)
class Run:
    rc: int
    stderr: str
    out: Path

    def manifest(self) -> dict[str, dict[str, Any]]:
        lines = (self.out / "manifest.jsonl").read_text().splitlines()
        return {Path(e["path"]).name: e for e in map(json.loads, lines)}

    def document(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.out / f"{name}.json").read_text())
        return doc


def transcribe(args: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "transcribe", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          check=False)


def run_cli(out: Path, args: Sequence[str | Path]) -> Run:
    done = transcribe([*args, "--out", out])
    return Run(done.returncode, done.stderr, out)


def silence(seconds: float) -> Pcm:
    return np.zeros(round(seconds * RATE), np.int16)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    return _validator().errors(doc, {"$ref": "#/$defs/SummaryDocument"})


# ------------------------------------------------------------------ Whisper on three files

@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    speech = [read_pcm(p) for p in piper_wavs([*AGENT, *CUSTOMER, MONO],
                                              tmp_path_factory.mktemp("piper"))]
    agent, customer, mono = speech[:2], speech[2:4], speech[4]
    left, right = [silence(LEAD_S)], [silence(LEAD_S)]
    for a, c in zip(agent, customer, strict=True):      # agent, then customer, in turn
        for talker, other, pcm in ((left, right, a), (right, left, c)):
            talker += [pcm, silence(GAP_S)]
            other.append(silence(len(pcm) / RATE + GAP_S))
    left.append(silence(TRAIL_S))
    right.append(silence(TRAIL_S))
    root = tmp_path_factory.mktemp("recordings")
    (root / "calls").mkdir()
    stereo = np.stack([np.concatenate(left), np.concatenate(right)], axis=1)
    sf.write(root / "calls" / "stereo.wav", stereo, RATE, subtype="PCM_16")
    mono_pcm = np.concatenate([silence(LEAD_S), mono, silence(TRAIL_S)])
    sf.write(root / "calls" / "mono.wav", mono_pcm, RATE, subtype="ULAW")
    raw = (root / "calls" / "stereo.wav").read_bytes()
    (root / "calls" / "broken.wav").write_bytes(raw[:len(raw) // 3])
    return Inputs(root, root / "calls" / "stereo.wav", root / "calls" / "mono.wav",
                  root / "calls" / "broken.wav", len(stereo) / RATE, len(mono_pcm) / RATE)


def whisper_args(triton: TritonProcess, inputs: Inputs) -> list[str | Path]:
    return [inputs.root, "--triton-url", triton.grpc_url, "--model", "asr_cpu_default",
            "--format", "json,vtt,srt,txt", "--concurrency", "2"]


@pytest.fixture(scope="module")
def first(triton: TritonProcess, inputs: Inputs, tmp_path_factory: pytest.TempPathFactory
          ) -> Run:
    return run_cli(tmp_path_factory.mktemp("out"), whisper_args(triton, inputs))


def turns_of(doc: dict[str, Any], speaker: str) -> str:
    return " ".join(t["text"] for t in doc["turns"] if t["speaker"] == speaker)


def test_the_bad_file_fails_with_exit_1_and_its_reason(first: Run) -> None:
    assert first.rc == 1, first.stderr
    assert "1 of 3 file(s) failed" in first.stderr
    assert "broken.wav: truncated" in first.stderr
    manifest = first.manifest()
    assert set(manifest) == {"stereo.wav", "mono.wav", "broken.wav"}
    broken = manifest["broken.wav"]
    assert broken["status"] == "failed" and broken["outputs"] == []
    assert broken["error"].startswith("truncated: the header says")
    assert not (first.out / "calls" / "broken.wav.json").exists()


def test_the_manifest_lines(first: Run, inputs: Inputs) -> None:
    manifest = first.manifest()
    for name, audio_s in (("stereo.wav", inputs.stereo_s), ("mono.wav", inputs.mono_s)):
        line = manifest[name]
        assert (line["status"], line["error"]) == ("done", None)
        assert line["audio_s"] == pytest.approx(audio_s, abs=1e-3)
        assert line["wall_s"] > 0
        stem = first.out / "calls" / name
        assert line["outputs"] == [f"{stem}.{fmt}" for fmt in ("json", "vtt", "srt", "txt")]


def test_stereo_speakers_are_agent_left_and_customer_right(first: Run) -> None:
    doc = first.document("calls/stereo.wav")
    assert schema_errors(doc) == []
    assert doc["channels"] == ["agent", "customer"]
    agent, customer = turns_of(doc, "agent"), turns_of(doc, "customer")
    assert word_error_rate(" ".join(AGENT), agent) <= MAX_WER, agent
    assert word_error_rate(" ".join(CUSTOMER), customer) <= MAX_WER, customer
    assert "cancel" in customer.lower() and "cancel" not in agent.lower()
    assert doc["turns"][0]["speaker"] == "agent"               # the agent spoke first


def test_the_mono_mulaw_file_is_the_customer(first: Run) -> None:
    doc = first.document("calls/mono.wav")
    assert schema_errors(doc) == []
    assert doc["channels"] == ["customer"]
    assert {t["speaker"] for t in doc["turns"]} == {"customer"}
    assert word_error_rate(MONO, turns_of(doc, "customer")) <= MAX_WER, doc["turns"]


def test_the_documents_cover_their_file_and_times_stay_inside(first: Run,
                                                               inputs: Inputs) -> None:
    for name, audio_s in (("stereo.wav", inputs.stereo_s), ("mono.wav", inputs.mono_s)):
        doc = first.document(f"calls/{name}")
        assert doc["duration_s"] == pytest.approx(audio_s, abs=1e-3)
        assert doc["asr_complete"] is True
        assert doc["statistics"]["duration_s"] == pytest.approx(audio_s, abs=0.02)
        starts = [t["start_s"] for t in doc["turns"]]
        assert starts == sorted(starts) and doc["turns"]
        for turn in doc["turns"]:
            assert 0.0 <= turn["start_s"] <= turn["end_s"] <= audio_s
        assert doc["recording"] == str(inputs.root / "calls" / name)


def test_vtt_srt_and_text_have_every_turn(first: Run) -> None:
    doc = first.document("calls/stereo.wav")
    stem = first.out / "calls" / "stereo.wav"
    vtt = Path(f"{stem}.vtt").read_text()
    srt = Path(f"{stem}.srt").read_text()
    txt = Path(f"{stem}.txt").read_text()
    assert vtt.startswith("WEBVTT")
    assert srt.startswith("1\n00:00:")
    for number, turn in enumerate(doc["turns"], 1):
        label, text = speaker_label(turn["speaker"]), " ".join(turn["text"].split())
        assert f"<v {label}>" in vtt
        assert f"\n{number}\n" in f"\n{srt}" and f"{label}: {text}" in srt
        assert f"{label}: {text}" in txt


def test_a_second_run_skips_complete_files_and_force_redoes_them(
        first: Run, triton: TritonProcess, inputs: Inputs, tmp_path: Path) -> None:
    stereo_json = first.out / "calls" / "stereo.wav.json"
    before = stereo_json.stat().st_mtime_ns, first.document("calls/stereo.wav")
    again = run_cli(first.out, whisper_args(triton, inputs))
    assert again.rc == 1, again.stderr                          # the broken file still fails
    manifest = again.manifest()
    assert manifest["stereo.wav"]["status"] == "skipped"
    assert manifest["mono.wav"]["status"] == "skipped"
    assert manifest["stereo.wav"]["audio_s"] == pytest.approx(inputs.stereo_s, abs=1e-3)
    assert (stereo_json.stat().st_mtime_ns, first.document("calls/stereo.wav")) == before
    old = first.document("calls/mono.wav")["conversation_id"]
    # --force redoes every file; with asr_ack (fast, its text the sample count) the new
    # documents show that the model really ran again
    forced = run_cli(first.out, [*whisper_args(triton, inputs), "--model", "asr_ack",
                                 "--config", ack_config(tmp_path), "--force"])
    assert forced.rc == 1, forced.stderr
    assert {n: e["status"] for n, e in forced.manifest().items()} == {
        "stereo.wav": "done", "mono.wav": "done", "broken.wav": "failed"}
    redone = forced.document("calls/mono.wav")
    assert redone["conversation_id"] != old
    assert turns_of(redone, "customer") == str(round(inputs.mono_s * 16000))


# ------------------------------------------------------------------ asr_ack: nothing dropped

def bursts(seconds: float, period_s: float, on_s: float, offset_s: float) -> Pcm:
    """A 400 Hz tone for ``on_s`` every ``period_s``, from ``offset_s`` (full-scale / 4)."""
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    on = ((t - offset_s) % period_s < on_s) & (t >= offset_s)
    return np.where(on, 8000 * np.sin(2 * np.pi * 400 * t), 0).astype(np.int16)


def ack_config(tmp: Path) -> Path:
    """Redaction off: the ack's final is a sample count, which a redactor may read as a
    number to hide."""
    path = tmp / "gateway.toml"
    path.write_text("[redaction]\nenabled = false\n")
    return path


def talk_by_channel(doc: dict[str, Any]) -> dict[str, float]:
    return {c["channel"]: c["talk_s"] for c in doc["statistics"]["channels"]}


def test_a_ten_minute_file_is_transcribed_whole(triton: TritonProcess, tmp_path: Path) -> None:
    seconds = 600.0
    agent = bursts(seconds, 20.0, 4.0, 1.0)      # 30 bursts of 4 s
    customer = bursts(seconds, 30.0, 6.0, 8.0)   # 20 bursts of 6 s
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "long.wav"
    sf.write(path, np.stack([agent, customer], axis=1), RATE, subtype="PCM_16")
    run = run_cli(tmp_path / "out", [path, "--triton-url", triton.grpc_url, "--model",
                                     "asr_ack", "--config", ack_config(tmp_path)])
    assert run.rc == 0, run.stderr
    doc = run.document("long.wav")
    assert schema_errors(doc) == []
    model_samples = str(round(seconds * 16000))                # every sample, at 16 kHz
    finals = {t["speaker"]: t for t in doc["turns"]}
    assert len(doc["turns"]) == 2 and set(finals) == {"agent", "customer"}
    for turn in finals.values():
        assert turn["text"] == model_samples
        assert (turn["start_s"], turn["end_s"]) == (0.0, seconds)
    assert doc["duration_s"] == seconds and doc["asr_complete"] is True
    assert doc["statistics"]["duration_s"] == seconds
    assert talk_by_channel(doc) == {"agent": 30 * 4.0, "customer": 20 * 6.0}
    line = run.manifest()["long.wav"]
    assert (line["status"], line["audio_s"]) == ("done", seconds)


def test_left_customer_swaps_the_channels(triton: TritonProcess, tmp_path: Path) -> None:
    left = bursts(10.0, 10.0, 2.0, 1.0)          # 2 s of talk on the left
    right = bursts(10.0, 10.0, 5.0, 4.0)         # 5 s on the right
    path = tmp_path / "swap.wav"
    sf.write(path, np.stack([left, right], axis=1), RATE, subtype="PCM_16")
    base: list[str | Path] = [path, "--triton-url", triton.grpc_url, "--model", "asr_ack",
                              "--config", ack_config(tmp_path)]
    plain = run_cli(tmp_path / "plain", base)
    swapped = run_cli(tmp_path / "swapped", [*base, "--left", "customer"])
    assert (plain.rc, swapped.rc) == (0, 0), plain.stderr + swapped.stderr
    assert talk_by_channel(plain.document("swap.wav")) == {"agent": 2.0, "customer": 5.0}
    assert talk_by_channel(swapped.document("swap.wav")) == {"agent": 5.0, "customer": 2.0}


def test_a_killed_run_resumes_where_it_stopped(triton: TritonProcess, tmp_path: Path) -> None:
    """SIGKILL after two files: every JSON left is whole, and the next run skips the files
    that were finished and does the others (``args[1:3]`` is ``--out DIR``)."""
    seconds, names = 300.0, [f"call-{i}.wav" for i in range(8)]
    (tmp_path / "in").mkdir()
    audio = np.stack([bursts(seconds, 20.0, 4.0, 1.0), bursts(seconds, 30.0, 6.0, 8.0)], axis=1)
    for name in names:
        sf.write(tmp_path / "in" / name, audio, RATE, subtype="PCM_16")
    out = tmp_path / "out"
    args: list[str | Path] = [tmp_path / "in", "--out", out, "--triton-url", triton.grpc_url,
                              "--model", "asr_ack", "--config", ack_config(tmp_path),
                              "--concurrency", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "transcribe", *map(str, args)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 120
    while not (manifest.exists() and len(manifest.read_text().splitlines()) >= 2):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no file finished in 120 s"
        time.sleep(0.05)
    proc.kill()
    proc.wait(30)
    finished = {Path(json.loads(line)["path"]).name
                for line in manifest.read_text().splitlines()}
    assert 2 <= len(finished) < len(names)
    for name in names:                                   # a JSON is whole or absent
        if (out / f"{name}.json").exists():
            json.loads((out / f"{name}.json").read_text())
    again = run_cli(out, args[:1] + args[3:])
    assert again.rc == 0, again.stderr
    status = {n: e["status"] for n, e in again.manifest().items()}
    assert set(status) == set(names)
    skipped = {n for n, s in status.items() if s == "skipped"}
    assert finished <= skipped and set(status.values()) <= {"skipped", "done"}
    assert "done" in status.values()
    for name in names:
        turns = Run(0, "", out).document(name)["turns"]
        assert [t["text"] for t in turns] == [str(round(seconds * 16000))] * 2
