"""One real Triton server for the whole session (a pytest plugin loaded by tests/conftest.py).

The server runs from the Triton venv (``make triton-venv``); a missing venv is a
failure, not a skip. The served repository is a temporary folder of symlinks to
``triton_models/*`` plus ``asr_missing_weights``: asr_cpu_default with a weights
path that does not exist, left unloaded for the load-failure test.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as grpcclient

from gateway.triton_launcher import (
    TritonLaunchError,
    TritonPortInUseError,
    TritonProcess,
    discover_models,
)
from tests.peers.ports import distinct_tcp_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = REPO_ROOT / "triton_models"
TRITON_VENV = Path(os.environ.get("TRITON_VENV", str(REPO_ROOT / ".venv-triton")))
MISSING_WEIGHTS_MODEL = "asr_missing_weights"
MISSING_WEIGHTS_PATH = "/nonexistent/asr-test/whisper-weights"
SAMPLE_RATE_HZ = 16000
CHUNK_SAMPLES = 2560  # 160 ms, the gateway's default
REPLY_TIMEOUT_S = 180.0
Audio = npt.NDArray[np.float32]


def asr_models(repository: Path = MODEL_REPOSITORY) -> list[str]:
    """Models that implement the streaming ASR contract (AUDIO in, RESULT out)."""
    names = []
    for name in discover_models(repository):
        config = (repository / name / "config.pbtxt").read_text()
        if re.search(r'name:\s*"AUDIO"', config) and re.search(r'name:\s*"RESULT"', config):
            names.append(name)
    return names


def _missing_weights_config() -> str:
    config = (MODEL_REPOSITORY / "asr_cpu_default" / "config.pbtxt").read_text()
    config, renamed = re.subn(r'name:\s*"asr_cpu_default"', f'name: "{MISSING_WEIGHTS_MODEL}"',
                              config)
    config, pathed = re.subn(r'(key:\s*"model_path",\s*value:\s*\{\s*string_value:\s*)""',
                             rf'\1"{MISSING_WEIGHTS_PATH}"', config)
    assert renamed == 1 and pathed == 1, "asr_cpu_default/config.pbtxt lost name or model_path"
    return config


def build_test_repository(target: Path) -> Path:
    for child in MODEL_REPOSITORY.iterdir():
        if child.is_dir():
            (target / child.name).symlink_to(child, target_is_directory=True)
    bad = target / MISSING_WEIGHTS_MODEL
    (bad / "1").mkdir(parents=True)
    (bad / "1" / "model.py").symlink_to(MODEL_REPOSITORY / "asr_cpu_default" / "1" / "model.py")
    (bad / "config.pbtxt").write_text(_missing_weights_config())
    return target


def _start(repository: Path, workdir: Path, attempt: int) -> TritonProcess:
    http, grpc, metrics = distinct_tcp_ports(3)
    triton = TritonProcess(repository, venv=TRITON_VENV, workdir=workdir, http_port=http,
                           grpc_port=grpc, metrics_port=metrics, models=asr_models(),
                           log_path=workdir / f"triton-{attempt}.log")
    return triton.start(timeout_s=REPLY_TIMEOUT_S)


@contextlib.contextmanager
def private_triton(tmp_path: Path, models: Sequence[str], *,
                   repository: Path = MODEL_REPOSITORY,
                   start_timeout_s: float = REPLY_TIMEOUT_S) -> Iterator[TritonProcess]:
    """A started Triton of one test's own, serving ``models`` of ``repository`` on free ports,
    its workdir and log in ``tmp_path``; stopped on leaving. For a test that stops or kills
    its Triton, or whose Triton may crash: the session's shared one stays untouched."""
    http, grpc, metrics = distinct_tcp_ports(3)
    server = TritonProcess(repository, venv=TRITON_VENV, workdir=tmp_path / "triton",
                           http_port=http, grpc_port=grpc, metrics_port=metrics,
                           models=list(models), log_path=tmp_path / "triton.log")
    server.start(start_timeout_s)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    if not (TRITON_VENV / "bin" / "python").exists():
        pytest.fail(f"Triton venv {TRITON_VENV} not found: run make triton-venv", pytrace=False)
    repository = build_test_repository(tmp_path_factory.mktemp("triton_repo"))
    workdir = tmp_path_factory.mktemp("triton_work")
    for attempt in itertools.count():
        try:
            server = _start(repository, workdir, attempt)
            break
        except TritonLaunchError as exc:  # a port taken between probe and bind: retry
            raced = isinstance(exc, TritonPortInUseError) or "already in use" in exc.log_tail
            if not raced or attempt >= 2:
                pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@dataclass(frozen=True, slots=True)
class Reply:
    request_id: str
    result: dict[str, Any] | None
    closes_request: bool


class AsrStream:
    """A gRPC bidirectional stream to one ASR model; replies grouped by CORRID."""

    def __init__(self, url: str, model: str) -> None:
        self.model = model
        self._client = grpcclient.InferenceServerClient(url)
        self._cond = threading.Condition()
        self._replies: list[Reply] = []
        self.errors: list[str] = []
        self._ids = itertools.count()
        self._client.start_stream(callback=self._on_reply)

    def _on_reply(self, result: Any, error: Any) -> None:
        with self._cond:
            if error is not None:
                self.errors.append(str(error))
            else:
                self._replies.append(_reply(result))
            self._cond.notify_all()

    def send(self, corrid: int, audio: Audio, *, start: bool = False, end: bool = False,
             phrases: Sequence[str] = ()) -> str:
        request_id = f"{corrid}:{next(self._ids)}"
        inputs = [_tensor("AUDIO", audio.reshape(1, -1).astype(np.float32), "FP32")]
        if phrases:
            inputs.append(_tensor("PHRASES", np.array([list(phrases)], dtype=np.object_), "BYTES"))
        self._client.async_stream_infer(self.model, inputs, request_id=request_id,
                                        sequence_id=corrid, sequence_start=start,
                                        sequence_end=end, enable_empty_final_response=True)
        return request_id

    def wait_closed(self, request_id: str, timeout_s: float = REPLY_TIMEOUT_S) -> None:
        def closed() -> bool:
            return bool(self.errors) or any(
                r.closes_request and r.request_id == request_id for r in self._replies)

        with self._cond:
            if not self._cond.wait_for(closed, timeout_s):
                raise AssertionError(f"request {request_id} not completed in {timeout_s} s")
        assert not self.errors, self.errors

    def wait_error(self, timeout_s: float = REPLY_TIMEOUT_S) -> str:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self.errors), timeout_s):
                raise AssertionError(f"no error reported in {timeout_s} s")
            return self.errors[0]

    def results(self, corrid: int) -> list[dict[str, Any]]:
        with self._cond:
            return [r.result for r in self._replies
                    if r.result is not None and r.request_id.split(":")[0] == str(corrid)]

    def stream(self, corrid: int, audio: Audio, *, chunk_samples: int = CHUNK_SAMPLES,
               phrases: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Send ``audio`` as one sequence (START first, END last); its results after END."""
        chunks = split(audio, chunk_samples)
        last = ""
        for index, chunk in enumerate(chunks):
            last = self.send(corrid, chunk, start=index == 0, end=index == len(chunks) - 1,
                             phrases=phrases if index == 0 else ())
        self.wait_closed(last)
        return self.results(corrid)

    def close(self) -> None:
        self._client.stop_stream()
        self._client.close()


def split(audio: Audio, chunk_samples: int) -> list[Audio]:
    return [audio[i:i + chunk_samples] for i in range(0, audio.size, chunk_samples)] or [audio]


def _tensor(name: str, data: npt.NDArray[Any], datatype: str) -> Any:
    tensor = grpcclient.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def _reply(result: Any) -> Reply:
    response = result.get_response()
    final = response.parameters.get("triton_final_response")
    payload = result.as_numpy("RESULT")
    parsed = None if payload is None else json.loads(payload.reshape(-1)[0].decode("utf-8"))
    return Reply(response.id, parsed, bool(final is not None and final.bool_param))


@pytest.fixture
def asr_stream_factory(triton: TritonProcess) -> Iterator[Any]:
    streams: list[AsrStream] = []

    def make(model: str) -> AsrStream:
        stream = AsrStream(triton.grpc_url, model)
        streams.append(stream)
        return stream

    yield make
    for stream in streams:
        stream.close()


@pytest.fixture(scope="module")
def tts_loaded(triton: TritonProcess) -> Iterator[str]:
    """The shared Triton with tts_cpu_default loaded for one test module (its gRPC URL)."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    client.load_model("tts_cpu_default")
    try:
        yield triton.grpc_url
    finally:
        client.unload_model("tts_cpu_default")
        client.close()
