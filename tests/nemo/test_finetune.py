"""finetune.py: exported manifests -> fine-tuned served checkpoint -> a new Triton version.

A handful of espeak-ng / flite sentences are synthesized here, sent through data_gen.py's
8 kHz phone line and written as an exporter-style manifest (relative audio paths, extra
fields, a redaction tag); finetune.py runs 3 steps into a temp copy of the model repository
(never into triton_models/). The new version folder must hold every file, its finetune.json
the run's facts, and the runtime must load and transcribe with it. Bad inputs stop with a
message and install nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "triton_models" / "asr_streaming_nemo"
FINETUNE = MODEL / "finetune.py"
sys.path.insert(0, str(MODEL))
sys.path.insert(0, str(MODEL / "1"))

from data_gen import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    Voice,
    phone_line,
    synthesize,
    write_wav,
)

TRAIN = [("please reset my router", Voice("espeak", "en-us", 1.0, 50)),
         ("my router is blinking red", Voice("flite", "slt", 1.0, 0)),
         ("the modem needs an update", Voice("espeak", "en+m7", 1.1, 40)),
         ("my account number is four two one", Voice("flite", "kal", 1.0, 0))]
DEV = [("can you check my modem", Voice("espeak", "en-us+f2", 1.0, 60)),
       ("my router is offline", Voice("flite", "awb", 1.0, 0))]
VERSION_FILES = {"encoder_ctc.onnx", "model.json", "frontend.npz", "tokenizer.model",
                 "model.py", "streaming_ctc.py", "model.nemo", "feature_norm.npz",
                 "finetune.json"}


def _write_set(folder: Path, name: str, items: list[tuple[str, Voice]],
               extra: list[dict[str, Any]] | None = None, flac: bool = False) -> Path:
    """Rows as the dataset exporter writes them (16 kHz FLAC there; WAV for the dev set)."""
    import soundfile  # type: ignore[import-untyped,import-not-found,unused-ignore]

    (folder / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (text, voice) in enumerate(items):
        audio, rate = synthesize(text, voice, None)
        audio = phone_line(audio, rate, np.random.default_rng(i))
        rel = f"audio/{name}-{i}.{'flac' if flac else 'wav'}"
        if flac:
            soundfile.write(folder / rel, audio, 16000, subtype="PCM_16")
        else:
            write_wav(folder / rel, audio, 16000)
        rows.append({"audio_filepath": rel, "duration": round(audio.size / 16000, 3),
                     "text": text, "speaker": f"spk{i % 2}", "channel": "caller",
                     "call_id": f"h{i}", "confidence": 0.9, "text_raw": text})
    rows += extra or []
    path = folder / f"{name}_manifest.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("export")
    tagged = {"audio_filepath": "audio/train-0.flac", "duration": 1.0,
              "text": "my card is [card] thanks"}
    gone = {"audio_filepath": "audio/nowhere.wav", "duration": 1.0, "text": "hello"}
    return {"train": _write_set(folder, "train", TRAIN, [tagged, gone], flac=True),
            "dev": _write_set(folder, "dev", DEV)}


def _repo_copy(root: Path) -> Path:
    repo = root / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(MODEL, repo / "asr_streaming_nemo", ignore=ignore)
    shutil.copytree(ROOT / "triton_models" / "common", repo / "common", ignore=ignore)
    return repo


def _finetune(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FINETUNE), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(data: dict[str, Path],
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    repo = _repo_copy(tmp_path_factory.mktemp("models"))
    done = _finetune("--manifest", data["train"], "--dev", data["dev"], "--model-repo", repo,
                     "--model", "asr_streaming_nemo", "--steps", "3", "--lr", "1e-4",
                     "--seed", "3", "--threads", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'triton.asr_model_version = "2"' in done.stderr
    return repo, json.loads(done.stdout.strip().splitlines()[-1])


def test_new_version_has_every_file(installed: tuple[Path, dict[str, Any]]) -> None:
    repo, report = installed
    folder = repo / "asr_streaming_nemo" / "2"
    assert report["folder"] == str(folder)
    assert VERSION_FILES <= {p.name for p in folder.iterdir()}
    base = repo / "asr_streaming_nemo" / "1"
    assert (folder / "model.py").read_bytes() == (base / "model.py").read_bytes()
    assert (folder / "tokenizer.model").read_bytes() == (base / "tokenizer.model").read_bytes()
    with np.load(folder / "frontend.npz") as new, np.load(base / "frontend.npz") as old:
        assert np.array_equal(new["mean"], old["mean"]) and np.array_equal(new["std"],
                                                                          old["std"])
    assert not [p.name for p in (repo / "asr_streaming_nemo").iterdir()
                if p.name.startswith(".")]
    config = (MODEL / "config.pbtxt").read_bytes()
    assert (repo / "asr_streaming_nemo" / "config.pbtxt").read_bytes() == config


def test_finetune_json_records_the_run(installed: tuple[Path, dict[str, Any]],
                                       data: dict[str, Path]) -> None:
    repo, _ = installed
    facts = json.loads((repo / "asr_streaming_nemo" / "2" / "finetune.json").read_text())
    assert facts["base_version"] == 1 and facts["version"] == 2
    assert facts["steps"] == 3 and facts["lr"] == 1e-4 and facts["seed"] == 3
    (train,) = facts["manifests"]
    assert train["path"] == str(data["train"]) and len(train["sha256"]) == 64
    assert train["rows"] == 6 and train["used"] == 4
    assert train["skipped"] == {"redaction_tag": 1, "missing_audio": 1}
    wer = facts["dev_wer_streaming"]
    assert 0.0 <= wer["before"] <= 2.0 and 0.0 <= wer["after"] <= 2.0
    assert facts["wall_s"] > 0 and facts["steps_per_s"] > 0


def test_weights_changed_and_runtime_transcribes(
        installed: tuple[Path, dict[str, Any]], data: dict[str, Path]) -> None:
    import onnx  # type: ignore[import-not-found,unused-ignore]
    from onnx import numpy_helper
    from selfcheck import read_wav_16k, transcribe_together  # type: ignore[import-not-found,unused-ignore]
    from streaming_ctc import RecognizerConfig, StreamingRecognizer  # type: ignore[import-not-found,unused-ignore]

    repo, _ = installed
    new, old = (onnx.load(str(repo / "asr_streaming_nemo" / v / "encoder_ctc.onnx"))
                for v in ("2", "1"))
    old_w = {i.name: numpy_helper.to_array(i) for i in old.graph.initializer}
    changed = [i.name for i in new.graph.initializer
               if not np.array_equal(numpy_helper.to_array(i), old_w[i.name])]
    assert changed
    rec = StreamingRecognizer(repo / "asr_streaming_nemo" / "2",
                              RecognizerConfig(att_context_size=(70, 13), device="cpu"))
    wav = data["dev"].parent / "audio" / "dev-0.wav"
    (done,) = transcribe_together(rec, [("dev-0", read_wav_16k(wav))], 2560, ())
    assert done.text.split()
    assert any(r["type"] == "final" for r in done.results)


def _error(tmp_path: Path, *args: str | Path) -> str:
    repo = _repo_copy(tmp_path)
    done = _finetune("--model-repo", repo, "--steps", "1", *args)
    assert done.returncode == 2, done.stderr[-2000:]
    assert sorted(p.name for p in (repo / "asr_streaming_nemo").iterdir() if p.is_dir()) == ["1"]
    return done.stderr


def test_missing_manifest(tmp_path: Path) -> None:
    assert "manifest not found" in _error(tmp_path, "--manifest", tmp_path / "no.json")


def test_empty_manifest(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("\n")
    assert "holds no rows" in _error(tmp_path, "--manifest", empty)


def test_all_audio_missing(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"x{i}.wav", "duration": 1.0,
                                            "text": "hello"}) + "\n" for i in range(3)))
    assert "none of the 3 audio files" in _error(tmp_path, "--manifest", manifest)


def test_base_version_without_nemo(tmp_path: Path, data: dict[str, Path]) -> None:
    repo = _repo_copy(tmp_path)
    (repo / "asr_streaming_nemo" / "1" / "model.nemo").unlink()
    done = _finetune("--model-repo", repo, "--steps", "1", "--manifest", data["train"],
                     "--base-version", "1")
    assert done.returncode == 2
    assert "has no model.nemo" in done.stderr and "recover_nemo.py" in done.stderr


def test_an_empty_dev_manifest_is_no_dev_set(tmp_path: Path, data: dict[str, Path]) -> None:
    empty = tmp_path / "dev_manifest.json"
    empty.write_text("")
    done = _finetune("--model-repo", _repo_copy(tmp_path), "--manifest", data["train"],
                     "--dev", empty, "--steps", "1", "--no-install", "--work", tmp_path / "w")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is empty: no dev WER" in done.stderr


def test_text_policy() -> None:
    import sentencepiece  # type: ignore[import-not-found,unused-ignore]
    from finetune import TextPolicy  # type: ignore[import-not-found,unused-ignore]

    tok = sentencepiece.SentencePieceProcessor(model_file=str(MODEL / "1" / "tokenizer.model"))
    drop, strip = TextPolicy("drop", "skip", tok), TextPolicy("strip", "skip", tok)
    assert drop.clean("my card is [card] thanks") == (None, "redaction_tag")
    assert strip.clean("my card is [card] thanks") == ("my card is thanks", "")
    assert drop.clean("i don't know") == ("i dont know", "")
    assert drop.clean("a quick one") == (None, "out_of_vocabulary")
    assert TextPolicy("drop", "unk", tok).clean("a quick one") == ("a quick one", "")
    assert strip.clean("[card]") == (None, "empty_text")
