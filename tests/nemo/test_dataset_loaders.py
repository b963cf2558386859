"""An export-dataset output read by the toolkits it is for: NeMo's own manifest reader
(``read_manifest``, and ``ASRAudioText``, the collection its ASR datasets build on) and
Lhotse (``load_manifest``, ``CutSet.from_manifests``, ``validate_recordings_and_supervisions``,
audio loaded through the cuts).

The dataset is exported by the gateway's venv (``.venv/bin/python -m gateway export-dataset``)
from the stored material tests/integration/test_dataset_export_files.py makes (summary
documents with word times, stereo 8 kHz recordings, a consent store), once per module.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import soundfile  # type: ignore[import-untyped,unused-ignore]

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_PY = ROOT / ".venv" / "bin" / "python"
SPLITS = ("train", "dev", "test")
_MAKE = ("import sys; from pathlib import Path; "
         "from tests.integration.test_dataset_export_files import make_state; "
         "make_state(Path(sys.argv[1]))")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert GATEWAY_PY.exists(), f"{GATEWAY_PY} missing (the gateway's venv)"
    tmp = tmp_path_factory.mktemp("export")
    subprocess.run([str(GATEWAY_PY), "-c", _MAKE, str(tmp)], cwd=ROOT, check=True, timeout=120)
    out = tmp / "ds"
    done = subprocess.run(
        [str(GATEWAY_PY), "-m", "gateway", "export-dataset", "--config",
         str(tmp / "gateway.toml"), "--since", "2026-12-01", "--until", "2026-12-02",
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr        # one corrupt recording among them
    assert any((out / f"{s}_manifest.json").stat().st_size for s in SPLITS)
    return out


def _ours(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_nemo_reads_the_manifests_and_the_durations_are_the_audio(dataset: Path) -> None:
    from nemo.collections.asr.parts.utils.manifest_utils import read_manifest  # type: ignore[import-not-found,unused-ignore]
    from nemo.collections.common.parts.preprocessing.manifest import get_full_path  # type: ignore[import-not-found,unused-ignore]

    seen = 0
    for split in SPLITS:
        manifest = dataset / f"{split}_manifest.json"
        entries = read_manifest(str(manifest))
        assert entries == _ours(manifest)
        for entry in entries:
            path = Path(get_full_path(entry["audio_filepath"], manifest_file=str(manifest)))
            assert path.is_file() and path.parent.name == split
            info = soundfile.info(str(path))
            assert (info.samplerate, info.channels) == (16000, 1)
            assert info.frames / info.samplerate == pytest.approx(entry["duration"], abs=1e-3)
            assert entry["text"] and entry["speaker"] and entry["call_id"]
            seen += 1
    assert seen


def test_nemo_asr_collection_loads_every_entry(dataset: Path) -> None:
    from nemo.collections.common.parts.preprocessing import parsers  # type: ignore[import-not-found,unused-ignore]
    from nemo.collections.common.parts.preprocessing.collections import ASRAudioText  # type: ignore[import-not-found,unused-ignore]

    parser = parsers.make_parser(labels=list(" abcdefghijklmnopqrstuvwxyz'"), name="en",
                                 do_normalize=False)
    for split in SPLITS:
        manifest = dataset / f"{split}_manifest.json"
        ours = _ours(manifest)
        if not ours:
            continue
        collection = ASRAudioText(manifests_files=str(manifest), parser=parser)
        assert len(collection) == len(ours)
        for sample, entry in zip(collection, ours, strict=True):
            assert Path(sample.audio_file) == (manifest.parent / entry["audio_filepath"])
            assert sample.duration == entry["duration"]
            assert sample.text_tokens == parser(entry["text"])


def test_lhotse_loads_recordings_supervisions_cuts_and_audio(dataset: Path) -> None:
    from lhotse import CutSet, RecordingSet, SupervisionSet, load_manifest  # type: ignore[import-not-found,unused-ignore]
    from lhotse.qa import validate_recordings_and_supervisions  # type: ignore[import-not-found,unused-ignore]

    loaded = 0
    for split in SPLITS:
        recordings = load_manifest(dataset / "lhotse" / f"recordings_{split}.jsonl.gz")
        supervisions = load_manifest(dataset / "lhotse" / f"supervisions_{split}.jsonl.gz")
        nemo = {e["segment_id"]: e for e in _ours(dataset / f"{split}_manifest.json")}
        if not nemo:
            continue
        assert isinstance(recordings, RecordingSet)
        assert isinstance(supervisions, SupervisionSet)
        validate_recordings_and_supervisions(recordings, supervisions)
        again = RecordingSet.from_jsonl(dataset / "lhotse" / f"recordings_{split}.jsonl.gz")
        assert list(again.ids) == list(recordings.ids) == list(nemo)
        cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
        for cut in cuts:
            (sup,) = cut.supervisions
            entry = nemo[sup.recording_id]
            audio = cut.load_audio()
            assert audio.shape == (1, cut.num_samples) and cut.sampling_rate == 16000
            assert cut.duration == pytest.approx(entry["duration"], abs=1e-3)
            assert (sup.text, sup.speaker) == (entry["text"], entry["speaker"])
            assert sup.custom is not None and sup.custom["text_raw"] == entry["text_raw"]
            loaded += 1
    assert loaded == sum(len(_ours(dataset / f"{s}_manifest.json")) for s in SPLITS)
