"""The jobs API's request checks, views and end status (pure), and the expansion of the
paths a job names under the batch root (real files, directories and symlinks in tmp_path)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gateway.batch.jobs import batch_options, expand_files
from gateway.batch.jobspec import (
    BatchRefused,
    FileStatus,
    Job,
    JobFile,
    JobStatus,
    WebhookState,
    final_status,
    iso_time,
    job_view,
    parse_request,
    parse_status,
)


def _job(**changes: Any) -> Job:
    base: dict[str, Any] = dict(
        id="j1", created=0.0, updated=1.5, status=JobStatus.RUNNING, options={},
        webhook_url="", webhook=WebhookState.NONE, files_total=3, files_done=1,
        files_skipped=1, files_failed=0, audio_s=12.34567, cancel_requested=False, error="")
    return Job(**{**base, **changes})


def test_a_good_request() -> None:
    request = parse_request({"files": ["a.wav", "calls/"],
                             "options": {"formats": ["VTT", "txt"], "left": "customer",
                                         "mono_channel": "agent", "raw_rate": 16000,
                                         "force": True},
                             "webhook_url": "https://hooks.example/done"})
    assert request.files == ("a.wav", "calls/")
    assert request.options == {"formats": ["json", "vtt", "txt"], "left": "customer",
                               "mono_channel": "agent", "raw_rate": 16000, "force": True}
    assert request.webhook_url == "https://hooks.example/done"
    assert parse_request({"files": ["a.wav"]}).options == {}


@pytest.mark.parametrize(("body", "message"), [
    ([], "body must be a JSON object"),
    ({}, "'files' must be a non-empty array"),
    ({"files": []}, "'files' must be a non-empty array"),
    ({"files": "a.wav"}, "'files' must be a non-empty array"),
    ({"files": ["a.wav", 3]}, "'files' must be a non-empty array"),
    ({"files": [" "]}, "'files' must be a non-empty array"),
    ({"files": ["a"], "colour": 1}, "unknown field(s): colour"),
    ({"files": ["a"], "webhook_url": "ftp://x/y"}, "'webhook_url' must be an http(s) URL"),
    ({"files": ["a"], "webhook_url": "http://h:99999/"}, "'webhook_url' must be an http(s)"),
    ({"files": ["a"], "options": []}, "'options' must be a JSON object"),
    ({"files": ["a"], "options": {"speed": 2}}, "unknown option(s): speed"),
    ({"files": ["a"], "options": {"formats": ["doc"]}}, "'options.formats': unknown output"),
    ({"files": ["a"], "options": {"formats": "vtt"}}, "'options.formats' must be an array"),
    ({"files": ["a"], "options": {"left": "right"}}, "'options.left' must be"),
    ({"files": ["a"], "options": {"raw_rate": True}}, "'options.raw_rate' must be"),
    ({"files": ["a"], "options": {"raw_rate": 100}}, "'options.raw_rate' must be"),
    ({"files": ["a"], "options": {"force": "yes"}}, "'options.force' must be true or false"),
])
def test_bad_requests_are_400_with_the_field_named(body: Any, message: str) -> None:
    with pytest.raises(BatchRefused) as info:
        parse_request(body)
    assert info.value.status == 400 and info.value.message.startswith(message), info.value


def test_status_filter() -> None:
    assert parse_status(None) is None and parse_status("") is None
    assert parse_status("running") is JobStatus.RUNNING
    with pytest.raises(BatchRefused, match="must be one of queued, running"):
        parse_status("done")


def test_final_status() -> None:
    assert final_status(_job(files_failed=1)) is JobStatus.SUCCEEDED    # some failed: ran on
    assert final_status(_job(files_done=0, files_skipped=0, files_failed=3)) is JobStatus.FAILED
    assert final_status(_job(cancel_requested=True)) is JobStatus.CANCELLED


def test_job_view() -> None:
    files = [JobFile(0, "a.wav", FileStatus.DONE, "", 10.0, 0.25, ["/out/j1/a.wav.json"]),
             JobFile(1, "b.wav", FileStatus.FAILED, "not a WAV", 0.0, 0.01, [])]
    view = job_view(_job(webhook_url="http://h/x", webhook=WebhookState.PENDING), files)
    assert view["self"] == "/v1/transcriptions/j1" and view["status"] == "running"
    assert (view["created"], view["updated"]) == ("1970-01-01T00:00:00.000Z",
                                                  "1970-01-01T00:00:01.500Z")
    assert view["progress"] == {"files_total": 3, "files_finished": 2, "files_done": 1,
                                "files_skipped": 1, "files_failed": 0, "audio_s": 12.346}
    assert (view["webhook_url"], view["webhook"], view["error"]) == ("http://h/x", "pending",
                                                                     None)
    assert view["files"][0] == {"path": "a.wav", "status": "done", "error": None,
                                "audio_s": 10.0, "wall_s": 0.25,
                                "outputs": ["/out/j1/a.wav.json"]}
    assert view["files"][1]["error"] == "not a WAV"
    assert "files" not in job_view(_job())
    assert iso_time(1796290693.25) == "2026-12-03T09:38:13.250Z"


def test_batch_options_from_the_stored_ones(tmp_path: Path) -> None:
    opts = batch_options({"formats": ["json", "srt"], "left": "customer", "raw_rate": 16000},
                         tmp_path)
    assert (opts.formats, opts.left, opts.mono_channel, opts.raw_rate, opts.force,
            opts.root) == (("json", "srt"), "customer", "customer", 16000, False, tmp_path)
    assert batch_options({}, tmp_path).formats == ("json",)


# --------------------------------------------------------------------------- the paths

@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    for name in ("a.wav", "calls/b.wav", "calls/c.FLAC", "calls/deep/d.ul", "calls/notes.txt"):
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(b"x")
    (tmp_path / "secret.wav").write_bytes(b"x")
    return base


def test_files_and_directories_expand_in_order_once_each(root: Path) -> None:
    assert expand_files(root, ["calls", "a.wav", "calls/b.wav"], 100) == [
        "calls/b.wav", "calls/c.FLAC", "calls/deep/d.ul", "a.wav"]
    assert expand_files(root, ["calls/notes.txt"], 100) == ["calls/notes.txt"]  # named: tried


def test_a_symlink_inside_the_root_is_followed_to_its_target(root: Path) -> None:
    os.symlink(root / "a.wav", root / "calls" / "link.wav")
    assert expand_files(root, ["calls/link.wav"], 100) == ["a.wav"]


@pytest.mark.parametrize(("name", "message"), [
    ("../secret.wav", "paths are relative to the batch root, without '..'"),
    ("calls/../../secret.wav", "paths are relative to the batch root, without '..'"),
    ("/etc/passwd", "paths are relative to the batch root"),
    ("escape.wav", "outside the batch root"),
    ("out", "outside the batch root"),
    ("calls/missing.wav", "no such file or directory under the batch root"),
])
def test_paths_out_of_the_root_or_missing_are_refused(root: Path, name: str,
                                                      message: str) -> None:
    os.symlink(root.parent / "secret.wav", root / "escape.wav")
    os.symlink(root.parent, root / "out")
    with pytest.raises(BatchRefused) as info:
        expand_files(root, ["a.wav", name], 100)
    assert info.value.status == 400 and message in info.value.message, info.value.message


def test_a_symlink_out_of_the_root_inside_a_named_directory_is_refused(root: Path) -> None:
    os.symlink(root.parent / "secret.wav", root / "calls" / "zz.wav")
    with pytest.raises(BatchRefused, match="'calls/zz.wav': outside the batch root"):
        expand_files(root, ["calls"], 100)


def test_no_audio_files_and_too_many_are_refused(root: Path) -> None:
    (root / "empty").mkdir()
    with pytest.raises(BatchRefused, match="no audio files"):
        expand_files(root, ["empty"], 100)
    with pytest.raises(BatchRefused, match=r"more than \[batch\] max_files_per_job \(2\)"):
        expand_files(root, ["calls"], 2)
