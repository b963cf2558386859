"""tts_nemo: NeMo FastPitch + HiFi-GAN behind the streaming TTS contract (GPU hosts).

The two ``.nemo`` checkpoints come from the config parameters ``fastpitch_path`` and
``hifigan_path``. initialize() checks both paths before anything heavy is imported:
when one is missing the model fails to load with an error naming it, and Triton
goes on serving its other models. NeMo's TTS collection is imported only after that
check (see ../../TTS.md for what a GPU host needs). The contract parts (request
checks, sentence chunking, streaming) are those of ``tts_cpu_default``.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # noqa: E402
from common.asr_contract import ParameterError, config_parameters  # noqa: E402
from common.triton_io import model_config  # noqa: E402

Audio = npt.NDArray[np.float32]
CONTRACT_MODULE = "tts_contract_shared"
CONTRACT_FILE = Path(__file__).resolve().parents[2] / "tts_cpu_default" / "1" / "model.py"
WEIGHT_PARAMETERS = ("fastpitch_path", "hifigan_path")


class WeightsMissingError(ParameterError):
    """A ``.nemo`` checkpoint named in config.pbtxt is not there."""


@dataclass(frozen=True, slots=True)
class NemoWeights:
    fastpitch: Path
    hifigan: Path


def weight_paths(params: dict[str, str]) -> NemoWeights:
    """Both checkpoints, or WeightsMissingError naming every missing one."""
    paths = {name: params.get(name, "").strip() for name in WEIGHT_PARAMETERS}
    missing = [f"{name}={path or '(empty)'}" for name, path in paths.items()
               if not path or not Path(path).is_file()]
    if missing:
        raise WeightsMissingError(
            f"tts_nemo: NeMo TTS weights not found: {'; '.join(missing)}. Put the FastPitch "
            "and HiFi-GAN .nemo files there or set these parameters in config.pbtxt")
    return NemoWeights(Path(paths["fastpitch_path"]), Path(paths["hifigan_path"]))


def load_contract() -> ModuleType:
    """The shared TTS contract code, which lives in tts_cpu_default's model.py."""
    spec = importlib.util.spec_from_file_location(CONTRACT_MODULE, CONTRACT_FILE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the TTS contract from {CONTRACT_FILE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[CONTRACT_MODULE] = module
    spec.loader.exec_module(module)
    return module


def parse_speakers(voices: tuple[str, ...]) -> dict[str, int | None]:
    """``name`` (single-speaker model) or ``name=speaker_id`` for each voice."""
    speakers: dict[str, int | None] = {}
    for entry in voices:
        name, _, speaker = entry.partition("=")
        if speaker and not speaker.strip().isdigit():
            raise ParameterError(f"voice {entry!r}: the speaker id must be an integer")
        speakers[name.strip()] = int(speaker) if speaker else None
    return speakers


def torch_device(args: dict[str, str]) -> str:
    """The instance's device: cuda:N for a KIND_GPU instance, else cpu."""
    if args.get("model_instance_kind") == "GPU":
        return f"cuda:{args.get('model_instance_device_id', '0')}"
    return "cpu"


class NemoSynthesizer:
    """One span through FastPitch (RATE is its pace) and HiFi-GAN, as float32 PCM."""

    def __init__(self, weights: NemoWeights, device: str,
                 speakers: dict[str, int | None]) -> None:
        import torch  # type: ignore[import-not-found]
        from nemo.collections.tts.models import (  # type: ignore[import-not-found]
            FastPitchModel,
            HifiGanModel,
        )

        self._torch = torch
        self._speakers = speakers
        self._fastpitch = FastPitchModel.restore_from(str(weights.fastpitch),
                                                      map_location=device).eval()
        self._hifigan = HifiGanModel.restore_from(str(weights.hifigan),
                                                  map_location=device).eval()
        self.sample_rate_hz = int(self._fastpitch.cfg.get("sample_rate", 22050))

    def __call__(self, span: str, request: Any) -> Audio:
        with self._torch.inference_mode():
            tokens = self._fastpitch.parse(span)
            spectrogram = self._fastpitch.generate_spectrogram(
                tokens=tokens, speaker=self._speakers[request.voice], pace=request.rate)
            audio = self._hifigan.convert_spectrogram_to_audio(spec=spectrogram)
        return np.asarray(audio.squeeze(0).float().cpu().numpy(), dtype=np.float32)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        params = config_parameters(model_config(args))
        weights = weight_paths(params)  # first: a clear error before any heavy import
        contract = load_contract()
        settings = contract.tts_settings(params, "default")
        speakers = parse_speakers(settings.voices)
        settings = contract.TtsSettings(tuple(speakers), settings.max_text_chars,
                                        settings.max_sentence_chars, settings.worker_threads)
        synthesize = NemoSynthesizer(weights, torch_device(args), speakers)
        self._streamer = contract.SpeechStreamer(synthesize, synthesize.sample_rate_hz,
                                                 settings, pb_utils.Logger)

    def execute(self, requests: list[Any]) -> None:
        self._streamer.execute(requests)

    def finalize(self) -> None:
        if hasattr(self, "_streamer"):
            self._streamer.stop()
