"""A private model repository of small NeMo exports served by asr_streaming_nemo, shared by
tests/triton/test_nemo_decoders.py (the Triton contract) and
tests/integration/test_nemo_decoders_call.py (calls through the gateway).

`make_exports` builds the small checkpoints from NeMo's streaming configs and exports them
(tests/nemo/make_test_models.py in .venv-nemo, a subprocess: the main suite never imports
NeMo); `install_model` adds one of them to a repository as its own model: the committed
config.pbtxt renamed, with model_path and the other parameters set, and model.py linked.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.triton.fixtures import MODEL_REPOSITORY, REPO_ROOT

NEMO_VENV = Path(os.environ.get("NEMO_VENV", str(REPO_ROOT / ".venv-nemo")))
MAKE_MODELS = REPO_ROOT / "tests" / "nemo" / "make_test_models.py"
RUNTIME = MODEL_REPOSITORY / "asr_streaming_nemo"


def served_config(name: str, params: Mapping[str, str]) -> str:
    """asr_streaming_nemo's config.pbtxt as model `name` with `params` set."""
    config = (RUNTIME / "config.pbtxt").read_text()
    config, renamed = re.subn(r'name:\s*"asr_streaming_nemo"', f'name: "{name}"', config)
    assert renamed == 1
    for key, value in params.items():
        config, set_ = re.subn(rf'(key:\s*"{key}",\s*value:\s*\{{\s*string_value:\s*)"[^"]*"',
                               rf'\1"{value}"', config)
        assert set_ == 1, key
    return config


def make_exports(out: Path, kinds: Sequence[str], calibration_wav: Path) -> Path:
    """out/<kind>/ for each kind (rnnt, hybrid, eou, ctc), calibrated on the 16 kHz WAV."""
    python = NEMO_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no NeMo venv at {NEMO_VENV}: run make nemo-venv", pytrace=False)
    done = subprocess.run([str(python), str(MAKE_MODELS), "--out", str(out),
                           "--only", ",".join(kinds), "--calibrate", str(calibration_wav)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def install_model(repo: Path, name: str, params: Mapping[str, str]) -> Path:
    """repo/name: asr_streaming_nemo's runtime with `params` (model_path, decoder, ...)."""
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").symlink_to(RUNTIME / "1" / "model.py")
    (folder / "config.pbtxt").write_text(served_config(name, params))
    return folder
