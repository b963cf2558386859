"""The batch task's pieces that need no Triton: outputs (paths, SRT, atomic writes, resume),
word times, the root check, options, the file search and the progress line."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from gateway.analytics.summary import build_summary
from gateway.asr.contract import Word
from gateway.batch.outputs import output_paths, parse_formats, to_srt
from gateway.batch.runner import FileJob, Tally, find_files
from gateway.batch.task import (
    BatchOptions,
    FileResult,
    TaskError,
    complete_outputs,
    monotonic_words,
    relative_path,
    write_outputs,
)
from gateway.events.types import SummaryDocument, SummaryTurn


def doc(duration_s: float = 12.5) -> SummaryDocument:
    base = build_summary("conv-1", [], 1000.0, 1000.0 + duration_s)
    turns = (
        SummaryTurn(speaker="agent", start_s=0.5, end_s=2.25, text="Hello,  how can\nI help?",
                    confidence=0.9, call_id="c", segment=0, redacted=()),
        SummaryTurn(speaker="customer", start_s=3661.0, end_s=3661.0, text="Cancel.",
                    confidence=None, call_id="c", segment=0, redacted=()),
    )
    return dataclasses.replace(base, turns=turns)


def test_srt_has_a_numbered_cue_per_turn_with_comma_times_and_the_speaker() -> None:
    assert to_srt(doc()) == (
        "1\n00:00:00,500 --> 00:00:02,250\nAgent: Hello, how can I help?\n\n"
        "2\n01:01:01,000 --> 01:01:01,001\nCustomer: Cancel.\n")


def test_outputs_mirror_the_relative_path_with_the_format_added() -> None:
    paths = output_paths(Path("/out"), Path("day1/a.wav"), ("srt", "vtt"))
    assert paths == {"json": Path("/out/day1/a.wav.json"), "vtt": Path("/out/day1/a.wav.vtt"),
                     "srt": Path("/out/day1/a.wav.srt")}


def test_formats_are_parsed_and_unknown_ones_refused() -> None:
    assert parse_formats("txt, VTT") == ("json", "vtt", "txt")
    with pytest.raises(ValueError, match="mp4"):
        parse_formats("json,mp4")
    with pytest.raises(ValueError, match="docx"):
        BatchOptions(formats=("docx",))


def test_options_refuse_unknown_channels_and_rates() -> None:
    with pytest.raises(ValueError, match="left"):
        BatchOptions(left="caller")
    with pytest.raises(ValueError, match="mono_channel"):
        BatchOptions(mono_channel="both")
    with pytest.raises(ValueError, match="raw_rate"):
        BatchOptions(raw_rate=0)


def test_word_times_are_made_monotonic_and_kept_inside_the_file() -> None:
    words = [Word("a", -0.2, 0.4), Word("b", 0.3, 0.9), Word("c", 0.8, 0.7),
             Word("d", 9.5, 10.4), Word("e", 11.0, 12.0)]
    out = monotonic_words(words, 10.0)
    times = [(w.start_s, w.end_s) for w in out]
    assert times == [(0.0, 0.4), (0.4, 0.9), (0.9, 0.9), (9.5, 10.0), (10.0, 10.0)]
    assert [w.word for w in out] == ["a", "b", "c", "d", "e"]


def test_a_path_outside_the_root_is_refused_symlinks_included(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "day").mkdir(parents=True)
    (root / "day" / "a.wav").write_bytes(b"x")
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"x")
    (root / "link.wav").symlink_to(outside)
    assert relative_path(root / "day" / "a.wav", root) == Path("day/a.wav")
    assert relative_path(outside, None) == Path("secret.wav")
    for path in (outside, root / "link.wav", root / ".." / "secret.wav"):
        with pytest.raises(TaskError, match="outside the allowed root"):
            relative_path(path, root)


def test_outputs_are_complete_only_when_all_exist_are_newer_and_the_json_reads(
        tmp_path: Path) -> None:
    source = tmp_path / "a.wav"
    source.write_bytes(b"audio")
    os.utime(source, (1_000_000, 1_000_000))
    targets = output_paths(tmp_path / "out", Path("a.wav"), ("vtt", "txt"))
    assert complete_outputs(source, targets) is None
    written = write_outputs(doc(), targets)
    assert written == tuple(targets.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.wav.json", "a.wav.txt", "a.wav.vtt"]                 # no temporary left behind
    assert json.loads(targets["json"].read_text())["conversation_id"] == "conv-1"
    assert complete_outputs(source, targets) == 12.5
    targets["vtt"].unlink()
    assert complete_outputs(source, targets) is None           # one missing: redo
    write_outputs(doc(), targets)
    os.utime(source, None)                                      # the recording changed since
    os.utime(targets["json"], (1_000_000, 1_000_000))
    assert complete_outputs(source, targets) is None
    write_outputs(doc(), targets)
    targets["json"].write_text('{"conversation_id": ')          # a broken JSON: redo
    assert complete_outputs(source, targets) is None


def test_a_failed_write_leaves_no_temporary_and_no_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    targets = output_paths(out, Path("a.wav"), ("vtt",))
    out.mkdir()
    targets["vtt"].mkdir()                                      # a directory in the way
    with pytest.raises(OSError):
        write_outputs(doc(), targets)
    assert sorted(p.name for p in out.iterdir()) == ["a.wav.vtt"]


def test_directories_are_searched_recursively_for_audio(tmp_path: Path) -> None:
    for name in ("b/2.WAV", "b/c/3.flac", "a.ul", "x.al", "notes.txt", "b/c/4.mp3"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"")
    single = tmp_path / "single.mp3"
    jobs = find_files([tmp_path / "in", single])
    root = tmp_path / "in"
    assert jobs == [FileJob(root / "a.ul", root), FileJob(root / "b/2.WAV", root),
                    FileJob(root / "b/c/3.flac", root), FileJob(root / "x.al", root),
                    FileJob(single, tmp_path)]


def test_the_progress_line_has_files_audio_hours_rtf_and_eta() -> None:
    tally = Tally(total=4, audio_total_s=4 * 900.0)
    assert tally.line(1.0) == ("files 0/4 (0 done, 0 skipped, 0 failed) | audio 0.00 h/1.00 h "
                               "| RTF - | ETA -")
    tally.add(FileResult(Path("a"), "done", None, 900.0, 45.0, ()), 900.0)
    tally.add(FileResult(Path("b"), "skipped", None, 900.0, 0.0, ()), 900.0)
    tally.add(FileResult(Path("c"), "failed", "bad", 0.0, 0.0, ()), 900.0)
    assert tally.line(90.0) == ("files 3/4 (1 done, 1 skipped, 1 failed) | audio 0.75 h/1.00 h "
                                "| RTF 0.100 | ETA 1m30s")
    assert [r.path for r in tally.failures] == [Path("c")]


def test_a_file_gone_before_its_turn_fails_alone_with_the_reason(tmp_path: Path) -> None:
    """A job lists a file that is deleted before it is processed: that file fails with a
    clear error (no exception, no hub touched), the job goes on with the others."""
    import asyncio
    from typing import cast

    from gateway.asr.stream import AsrHub
    from gateway.batch.task import BatchOptions, transcribe_file
    from gateway.config import GatewayConfig

    gone = tmp_path / "in" / "call-7.wav"
    gone.parent.mkdir()
    gone.write_bytes(b"RIFF")
    gone.unlink()
    result = asyncio.run(transcribe_file(gone, tmp_path / "out", hub=cast(AsrHub, None),
                                         config=GatewayConfig(),
                                         options=BatchOptions(root=tmp_path / "in")))
    assert result.status == "failed" and result.error is not None
    assert "call-7.wav" in result.error and "No such file" in result.error, result.error
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))
