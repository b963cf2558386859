"""The Whisper model's decode worker reuses an early final's decode (``vad_early_decode_ms``)
only for the same audio: pure unit tests of ``asr_cpu_default``'s ``DecodeWorker`` with a
counting decoder in place of Whisper (the real model and the VAD segmenter that cuts the
early finals are exercised by the contract, VAD and end-to-end tests).

``triton_python_backend_utils`` exists only inside Triton: a stand-in module is put in
``sys.modules`` while the model file is imported, and the worker's ``send_results`` is
replaced by a recorder."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.source_module import load_source
from tests.triton.fixtures import MODEL_REPOSITORY

MODEL_FILE = MODEL_REPOSITORY / "asr_cpu_default" / "1" / "model.py"


def _stand_in_pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1  # type: ignore[attr-defined]
    module.Logger = None  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "triton_python_backend_utils", _stand_in_pb_utils())
        patch.syspath_prepend(str(MODEL_REPOSITORY))
        try:
            yield load_source("asr_cpu_default_model", MODEL_FILE)
        finally:
            sys.modules.pop("asr_cpu_default_model", None)
            sys.modules.pop("common.triton_io", None)   # bound to the stand-in


@dataclass
class CountingDecoder:
    """Whisper's place: each decode's text names the job it decoded, and is counted."""

    model: Any
    calls: list[tuple[str, int, int, int]] = field(default_factory=list)

    def decode(self, job: Any, phrases: tuple[str, ...], audio_s: float) -> Any:
        kind = "early" if isinstance(job, self.model.EarlyFinal) else job.type
        self.calls.append((kind, job.segment, job.start_sample, job.end_sample))
        return self.model.AsrResult("final", job.segment, f"decode {len(self.calls)}",
                                    job.start_sample / 16000, job.end_sample / 16000, audio_s)


class Logger:
    def log_verbose(self, _message: str) -> None: ...
    def log_error(self, message: str) -> None:
        raise AssertionError(message)


@dataclass
class Sent:
    results: list[Any] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, _sender: Any, results: Iterable[Any], *, complete: bool) -> None:
        self.results.extend(results)
        if complete:
            self.done.set()


def _job(cls: Any, segment: int, start: int, end: int) -> Any:
    return cls("final", segment, start, end, np.zeros(end - start, np.float32))


def _stepping_worker(model: Any, decoder: CountingDecoder) -> Any:
    """The worker, telling when it has handled each submission (the model submits a final
    chunks after its early cut; here the next job waits until the previous one is done)."""

    class Stepping(model.DecodeWorker):  # type: ignore[misc]
        handled = threading.Semaphore(0)

        def _run(self, work: Any) -> None:
            try:
                super()._run(work)
            finally:
                self.handled.release()

    return Stepping(decoder, Logger())


def _run(model: Any, monkeypatch: pytest.MonkeyPatch, jobs: list[tuple[Any, bool]]
         ) -> tuple[CountingDecoder, list[Any]]:
    """Submit (job, completes a request) one after the other, the way ``_submit`` does."""
    decoder, sent = CountingDecoder(model), Sent()
    monkeypatch.setattr(model, "send_results", sent)
    session = model.StreamSession(1, segmenter=None)
    worker = _stepping_worker(model, decoder)
    try:
        for job, completes in jobs:
            if isinstance(job, model.EarlyFinal):
                session.latest_early = job
            else:
                session.finals_queued = job.segment + 1
            worker.submit(model.Work(session, job, 9.0, object() if completes else None))
            assert worker.handled.acquire(timeout=10), "the worker did not handle the job"
        assert sent.done.is_set(), "no request was completed"
    finally:
        worker.stop()
    return decoder, sent.results


def test_the_final_of_the_same_audio_is_the_early_decode(model: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    early = _job(model.EarlyFinal, 0, 1600, 24000)
    final = _job(model.DecodeJob, 0, 1600, 24000)
    decoder, results = _run(model, monkeypatch, [(early, False), (final, True)])
    assert decoder.calls == [("early", 0, 1600, 24000)]        # decoded once, early
    assert [(r.type, r.segment, r.text, r.audio_s) for r in results] == [
        ("final", 0, "decode 1", 9.0)]


@pytest.mark.parametrize(("segment", "end"), [
    (0, 28000),     # speech resumed: the utterance ends later
    (1, 24000),     # another utterance
])
def test_a_final_of_other_audio_is_decoded_afresh(model: Any, monkeypatch: pytest.MonkeyPatch,
                                                  segment: int, end: int) -> None:
    early = _job(model.EarlyFinal, 0, 1600, 24000)
    final = _job(model.DecodeJob, segment, 1600, end)
    decoder, results = _run(model, monkeypatch, [(early, False), (final, True)])
    assert decoder.calls == [("early", 0, 1600, 24000), ("final", segment, 1600, end)]
    assert [r.text for r in results] == ["decode 2"]


def test_a_superseded_early_final_is_not_used(model: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Two early cuts of one utterance (speech resumed between them): the latest replaces
    the first; a final matching the first one is decoded afresh."""
    first = _job(model.EarlyFinal, 0, 1600, 24000)
    second = _job(model.EarlyFinal, 0, 1600, 30000)
    final = _job(model.DecodeJob, 0, 1600, 24000)
    decoder, results = _run(model, monkeypatch, [(first, False), (second, False),
                                                 (final, True)])
    assert decoder.calls == [("early", 0, 1600, 24000), ("early", 0, 1600, 30000),
                             ("final", 0, 1600, 24000)]
    assert [r.text for r in results] == ["decode 3"]


def test_an_early_final_after_its_utterance_s_final_is_not_decoded(
        model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The final of segment 0 is already queued when its early cut reaches the worker: no
    wasted decode."""
    final = _job(model.DecodeJob, 0, 1600, 24000)
    early = _job(model.EarlyFinal, 0, 1600, 24000)
    decoder, _ = _run(model, monkeypatch, [(final, True), (early, False)])
    assert decoder.calls == [("final", 0, 1600, 24000)]
