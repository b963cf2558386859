"""asr_cpu_default's VAD endpointing through a real Triton: one final per sentence, decided
and sent during the pause after it (not after the energy timer's 600 ms of silence), also
without any further request, and at END right after speech.

Behavioural checks, not a benchmark: the deciding figure is the final's ``audio_s`` (audio
received when the utterance was closed) against the true end of speech (the synthesized
speech's energy envelope), which does not depend on how loaded the machine is; the count
of real-time silence chunks sent before the final came is recorded and only bounded by
the pause.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.speech import wer_words as word_error_rate
from tests.triton.fixtures import (
    CHUNK_SAMPLES,
    MODEL_REPOSITORY,
    SAMPLE_RATE_HZ,
    AsrStream,
    Audio,
    private_triton,
)
from tests.triton.test_asr_contract import ESPEAK_ARGS, check_sequence, phone_line, words_of
from tests.triton.test_vad import SENTENCES, envelope_bounds, espeak_voice

StreamFactory = Callable[[str], AsrStream]
Result = dict[str, Any]
CHUNK_S = CHUNK_SAMPLES / SAMPLE_RATE_HZ
OLD_TIMER_S = 0.6            # the energy endpointer's end_silence_ms
PAUSE_CHUNKS = 8             # 1.28 s between sentences
_corrids = iter(range(5001, 6000))


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str
    audio: Audio
    speech_end_s: float      # within ``audio``


def sentence(text: str, voice: tuple[str, ...] = ESPEAK_ARGS) -> Sentence:
    clean, rate = espeak_voice(text, voice)
    _, end_s = envelope_bounds(clean, rate)
    return Sentence(text, phone_line(clean, rate), end_s)


def silence(chunks: int) -> Audio:
    return np.zeros(chunks * CHUNK_SAMPLES, np.float32)


def finals_with_text(results: list[Result]) -> list[Result]:
    return [r for r in results if r["type"] == "final" and r["text"]]


class PacedSender:
    """One sequence sent at real time in 160 ms chunks, like the gateway."""

    def __init__(self, stream: AsrStream) -> None:
        self.stream, self.corrid = stream, next(_corrids)
        self.sent_samples, self._started = 0, False
        self._t0 = time.monotonic()
        self.watched: int | None = None     # a segment whose final is awaited
        self.seen_after = 0                 # samples sent when it came
        self.seen_at = 0.0                  # and the clock then

    def _look(self) -> None:
        if self.watched is not None and self.final(self.watched) is not None:
            self.watched, self.seen_after = None, self.sent_samples
            self.seen_at = time.monotonic()

    def sent_at(self, samples: int) -> float:
        """When the audio up to ``samples`` had been spoken (the real-time schedule)."""
        return self._t0 + samples / SAMPLE_RATE_HZ

    def send(self, audio: Audio, *, end: bool = False) -> str:
        pieces = [audio[i:i + CHUNK_SAMPLES] for i in range(0, audio.size, CHUNK_SAMPLES)]
        pieces = pieces or [audio]
        last = ""
        for index, piece in enumerate(pieces):
            # a chunk goes out once its last sample was spoken, as from a live call
            while (delay := self.sent_at(self.sent_samples + piece.size) - time.monotonic()) > 0:
                self._look()
                time.sleep(min(delay, 0.01))
            self._look()
            last = self.stream.send(self.corrid, piece, start=not self._started,
                                    end=end and index == len(pieces) - 1)
            self._started = True
            self.sent_samples += piece.size
        return last

    def send_watching(self, audio: Audio, segment: int, pause_chunks: int) -> int | None:
        """Send ``audio``, then ``pause_chunks`` of silence, watching for ``segment``'s
        final; the samples sent when it came, None when it had not come by the pause's end."""
        self.watched = segment
        self.send(audio)
        for _ in range(pause_chunks):
            self.send(silence(1))
        self._look()
        return None if self.watched is not None else self.seen_after

    def final(self, segment: int) -> Result | None:
        for result in self.stream.results(self.corrid):
            if result["type"] == "final" and result["segment"] == segment:
                return result
        return None

    def wait_final(self, segment: int, timeout_s: float = 120.0) -> Result:
        deadline = time.monotonic() + timeout_s
        while (result := self.final(segment)) is None:
            assert time.monotonic() < deadline, f"no final of segment {segment} in {timeout_s} s"
            time.sleep(0.02)
        return result


def run_paced_call(stream: AsrStream, sentences: list[Sentence],
                   record: Callable[[str, object], None]) -> list[tuple[Result, float, int | None]]:
    """Each sentence, then a real-time pause; per sentence: its final, when it was decided
    (audio received past the end of speech) and how many 160 ms chunks had been sent past
    the end of speech when it came (None: not within the pause); END closes the call."""
    sender, out, wall = PacedSender(stream), [], []
    for index, item in enumerate(sentences):
        speech_end = sender.sent_samples + int(item.speech_end_s * SAMPLE_RATE_HZ)
        seen = sender.send_watching(item.audio, index, PAUSE_CHUNKS)
        final = sender.wait_final(index)
        chunks = None if seen is None else math.ceil((seen - speech_end) / CHUNK_SAMPLES)
        if seen is not None:
            wall.append(round(sender.seen_at - sender.sent_at(speech_end), 3))
        out.append((final, final["audio_s"] - speech_end / SAMPLE_RATE_HZ, chunks))
    stream.wait_closed(sender.send(np.zeros(0, np.float32), end=True))
    results = stream.results(sender.corrid)
    check_sequence(results, sender.sent_samples / SAMPLE_RATE_HZ)
    assert len(finals_with_text(results)) == len(sentences), finals_with_text(results)
    decided = [round(float(d), 3) for _, d, _ in out]
    record("decided_after_speech_s", decided)
    record("silence_chunks_before_final", [c for _, _, c in out])
    record("final_after_speech_wall_s", wall)
    print("decided after speech end (audio s):", decided,
          "160 ms chunks sent past the end of speech before the final came:",
          [c for _, _, c in out], "final after the end of speech (wall s, 10 ms poll):", wall)
    return out


def check_texts(finals: list[tuple[Result, float, int | None]], sentences: list[Sentence]) -> None:
    for (final, _, _), item in zip(finals, sentences, strict=True):
        assert word_error_rate(words_of(item.text), words_of(final["text"])) <= 0.5, (
            final["text"], item.text)


def test_vad_final_per_sentence_during_the_pause(
        asr_stream_factory: StreamFactory, record_property: Callable[[str, object], None]) -> None:
    sentences = [sentence(text) for text in SENTENCES]
    finals = run_paced_call(asr_stream_factory("asr_cpu_default"), sentences, record_property)
    check_texts(finals, sentences)
    for final, decided_s, chunks in finals:
        # closed by the VAD's 256 ms trailing-silence rule, before the 600 ms timer could
        assert 0.15 <= decided_s < OLD_TIMER_S, final
        assert chunks is not None, final  # it came before the pause had all been sent


def test_vad_final_comes_without_any_further_request(asr_stream_factory: StreamFactory) -> None:
    """The request whose chunk ended the utterance is completed with its final: nothing more
    has to be sent for it to come (before, results waited for the next request)."""
    item = sentence(SENTENCES[0])
    stream = asr_stream_factory("asr_cpu_default")
    sender = PacedSender(stream)
    sender.send(np.concatenate([item.audio, silence(3)]))  # 480 ms of trailing silence
    final = sender.wait_final(0, timeout_s=60.0)
    assert word_error_rate(words_of(item.text), words_of(final["text"])) <= 0.5, final
    stream.wait_closed(sender.send(np.zeros(0, np.float32), end=True))
    check_sequence(stream.results(sender.corrid), sender.sent_samples / SAMPLE_RATE_HZ)


def test_vad_end_right_after_speech_gets_the_final(asr_stream_factory: StreamFactory) -> None:
    item = sentence(SENTENCES[1])
    cut = item.audio[:int((item.speech_end_s + 0.02) * SAMPLE_RATE_HZ)]
    stream = asr_stream_factory("asr_cpu_default")
    sender = PacedSender(stream)
    stream.wait_closed(sender.send(cut, end=True))
    results = stream.results(sender.corrid)
    last = check_sequence(results, cut.size / SAMPLE_RATE_HZ)
    assert finals_with_text(results) == [last]
    assert word_error_rate(words_of(item.text), words_of(last["text"])) <= 0.5, last


def energy_repository(target: Path) -> Path:
    """asr_cpu_default as ``asr_cpu_energy`` with endpointing = energy (today's timer)."""
    model = target / "asr_cpu_energy"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").symlink_to(MODEL_REPOSITORY / "asr_cpu_default" / "1" / "model.py")
    config = (MODEL_REPOSITORY / "asr_cpu_default" / "config.pbtxt").read_text()
    config, renamed = re.subn(r'name:\s*"asr_cpu_default"', 'name: "asr_cpu_energy"', config)
    config, switched = re.subn(r'(key:\s*"endpointing",\s*value:\s*\{\s*string_value:\s*)"vad"',
                               r'\1"energy"', config)
    assert renamed == 1 and switched == 1, "asr_cpu_default/config.pbtxt lost name or endpointing"
    (model / "config.pbtxt").write_text(config)
    return target


@pytest.mark.slow
def test_energy_endpointing_still_waits_for_its_timer(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """endpointing = energy keeps today's behaviour, and is what the VAD test's bound tells
    apart: its finals are decided only after 600 ms of silence."""
    sentences = [sentence(SENTENCES[0])]
    repository = energy_repository(tmp_path / "repo")
    with private_triton(tmp_path, ["asr_cpu_energy"], repository=repository) as server:
        stream = AsrStream(server.grpc_url, "asr_cpu_energy")
        try:
            finals = run_paced_call(stream, sentences, record_property)
        finally:
            stream.close()
    check_texts(finals, sentences)
    assert all(decided_s >= OLD_TIMER_S for _, decided_s, _ in finals), finals


# --- asr_streaming_nemo: endpointing = vad | blank -----------------------------------------

NEMO_SENTENCES = ("my account number is three eight one six zero four seven two",
                  "my phone number is five nine zero one three")
NEMO_LOOKAHEAD = "70,1"      # 80 ms chunks: the look-ahead the 300 ms goal is for


def nemo_repository(target: Path, source: Path = MODEL_REPOSITORY / "asr_streaming_nemo"
                    ) -> dict[str, str]:
    """The small NeMo model twice, ``asr_nemo_vad`` and ``asr_nemo_blank``, at
    NEMO_LOOKAHEAD; {endpointing: model name}."""
    names = {}
    for mode in ("vad", "blank"):
        name = f"asr_nemo_{mode}"
        (target / name).mkdir(parents=True)
        (target / name / "1").symlink_to(source / "1", target_is_directory=True)
        config = (source / "config.pbtxt").read_text()
        edits = [(r'name:\s*"asr_streaming_nemo"', f'name: "{name}"'),
                 (r'(key:\s*"endpointing",\s*value:\s*\{\s*string_value:\s*)"\w+"', rf'\1"{mode}"'),
                 (r'(key:\s*"att_context_size",\s*value:\s*\{\s*string_value:\s*)"[\d,]+"',
                  rf'\1"{NEMO_LOOKAHEAD}"')]
        for pattern, replacement in edits:
            config, count = re.subn(pattern, replacement, config)
            assert count == 1, f"asr_streaming_nemo/config.pbtxt: no {pattern}"
        (target / name / "config.pbtxt").write_text(config)
        names[mode] = name
    return names


def paced_finals(stream: AsrStream, sentences: list[Sentence]) -> list[Result]:
    """The sentences with PAUSE_CHUNKS of silence after each, at real time; the finals."""
    sender = PacedSender(stream)
    for item in sentences:
        sender.send(np.concatenate([item.audio, silence(PAUSE_CHUNKS)]))
    stream.wait_closed(sender.send(np.zeros(0, np.float32), end=True))
    results = stream.results(sender.corrid)
    check_sequence(results, sender.sent_samples / SAMPLE_RATE_HZ)
    return finals_with_text(results)


@pytest.mark.slow
def test_nemo_vad_final_per_sentence_before_the_blank_rule(
        tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """asr_streaming_nemo, same audio and chunks, endpointing = vad and = blank: with the VAD
    one final per sentence, decided before the blank rule's 600 ms could be, holding the
    same words the blank rule's finals hold, each on less audio (decisions in audio time)."""
    sentences = [sentence(text, ("-v", "en-us")) for text in NEMO_SENTENCES]
    names = nemo_repository(tmp_path / "repo")
    with private_triton(tmp_path, list(names.values()), repository=tmp_path / "repo") as server:
        streams = {mode: AsrStream(server.grpc_url, name) for mode, name in names.items()}
        try:
            vad = run_paced_call(streams["vad"], sentences, record_property)
            blank = paced_finals(streams["blank"], sentences)
        finally:
            for stream in streams.values():
                stream.close()
    print("blank:", [(f["text"], f["end_s"], f["audio_s"]) for f in blank])
    for final, decided_s, chunks in vad:
        assert decided_s < OLD_TIMER_S and chunks is not None, final
        same = [f for f in blank if final["start_s"] - 0.05 <= f["end_s"] <= final["end_s"]]
        assert same and same[-1]["end_s"] == final["end_s"], (final, blank)
        assert words_of(" ".join(f["text"] for f in same)) == words_of(final["text"])
        assert final["audio_s"] < same[-1]["audio_s"], (final, same[-1])


def test_nemo_endpointing_value_is_checked() -> None:
    sys.path.insert(0, str(MODEL_REPOSITORY / "asr_streaming_nemo" / "1"))
    from streaming_ctc import RecognizerConfig, StreamConfigError

    assert RecognizerConfig().endpointing == "blank"  # the Triton config turns vad on
    with pytest.raises(StreamConfigError, match="endpointing"):
        RecognizerConfig(endpointing="timer")
