"""Build and export the small reference checkpoints for tests outside the NeMo venv.

    .venv-nemo/bin/python tests/nemo/make_test_models.py --out DIR [--only rnnt,hybrid,eou] \
        [--calibrate speech.wav]

Writes DIR/<name>/ (the export: what asr_streaming_nemo's model_path points at) and
DIR/<name>.nemo for name in rnnt (transducer), hybrid (RNNT + CTC heads), eou (transducer
with <EOU> in its vocabulary, EOU frequent), ctc; prints {"name": seconds} as JSON. Same
checkpoints as tests/nemo/streaming_models.py builds for the reference tests; with
`--calibrate` (16 kHz mono WAV) the output layers are rescaled on that audio, so tokens
vary on the speech the caller will send (random encoders react to the input's level).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "triton_models" / "asr_streaming_nemo"))

import export_onnx  # noqa: E402

from tests.nemo import streaming_models as sm  # noqa: E402

KINDS = {"rnnt": ("rnnt", False), "hybrid": ("hybrid", False), "eou": ("rnnt", True),
         "ctc": ("ctc", False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", default=",".join(KINDS))
    parser.add_argument("--calibrate", type=Path)
    args = parser.parse_args()
    audio = None
    if args.calibrate is not None:
        import soundfile

        data, rate = soundfile.read(str(args.calibrate), dtype="float32")
        assert rate == sm.RATE_HZ and data.ndim == 1, "need 16 kHz mono"
        audio = data
    args.out.mkdir(parents=True, exist_ok=True)
    took: dict[str, float] = {}
    for name in args.only.split(","):
        kind, eou = KINDS[name]
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as work:
            nemo = sm.build_checkpoint(Path(work), kind, eou=eou, eou_rate=0.08,
                                       calibration=audio)
            export_onnx.export(nemo, args.out / name)
            shutil.copy(nemo, args.out / f"{name}.nemo")
        took[name] = round(time.monotonic() - started, 1)
    print(json.dumps(took))


if __name__ == "__main__":
    main()
