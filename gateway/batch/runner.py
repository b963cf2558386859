"""Many files at once: the file list, a pool of per-file tasks, the manifest, the progress line.

:func:`find_files` turns the command line's paths into files: a directory is searched
recursively for ``.wav``, ``.flac``, ``.ul`` and ``.al`` files (any case, sorted), each
with the directory as its root (its outputs mirror the tree below it); a file is taken as
it is (whatever its name: a bad one fails on its own), with its folder as root.
:func:`run_batch` runs them ``concurrency`` at a time through
:func:`~gateway.batch.task.transcribe_file` on one shared ASR hub, appends a line per file
to ``<out>/manifest.jsonl`` as each finishes (``path``, ``status``, ``error``,
``audio_s``, ``wall_s``, ``outputs``; rewritten by every run), and keeps a progress line on
stderr (files done of all, audio hours, the real-time factor so far, the ETA): redrawn in
place on a terminal, a plain line per finished file otherwise. Two files that would write
the same outputs (the same relative name under two roots) fail the second one.

The exit status: 0 when every file succeeded (skipped ones count as success), 1 with the
failures listed on stderr, 2 when nothing could start (no files, Triton unreachable).

Layer: shell.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

from gateway.asr.stream import AsrHub
from gateway.batch.audio import AUDIO_SUFFIXES, probe_audio
from gateway.batch.formats import BadAudio
from gateway.batch.outputs import output_paths
from gateway.batch.task import (
    BatchOptions,
    FileResult,
    TaskError,
    TritonUnavailable,
    asr_hub,
    relative_path,
    transcribe_file,
)
from gateway.config import GatewayConfig

MANIFEST: Final = "manifest.jsonl"
EXIT_OK: Final = 0
EXIT_FAILURES: Final = 1
EXIT_SETUP: Final = 2
TICK_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class FileJob:
    """One file to transcribe and the root its outputs are named below."""

    path: Path
    root: Path | None


def find_files(paths: Sequence[Path]) -> list[FileJob]:
    """The files of the command line's paths (see the module docstring)."""
    jobs: list[FileJob] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            jobs += [FileJob(p, path) for p in found]
        else:
            jobs.append(FileJob(path, path.parent))
    return jobs


# ------------------------------------------------------------------ progress
def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@dataclass(slots=True)
class Tally:
    """What a run has done so far (``audio_*``: seconds of audio)."""

    total: int
    audio_total_s: float
    done: int = 0
    skipped: int = 0
    failed: int = 0
    audio_done_s: float = 0.0        # transcribed this run
    audio_finished_s: float = 0.0    # of every finished file, as probed before the run
    failures: list[FileResult] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.failed

    def add(self, result: FileResult, probed_s: float) -> None:
        if result.status == "done":
            self.done += 1
            self.audio_done_s += result.audio_s
        elif result.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
            self.failures.append(result)
        self.audio_finished_s += probed_s

    def line(self, elapsed_s: float) -> str:
        """``files 3/10 (2 done, 1 skipped, 0 failed) | audio 0.52/1.30 h | RTF 0.045 |
        ETA 1m20s``: RTF is wall time over audio transcribed (below 1: faster than real
        time), the ETA the audio left at that pace."""
        parts = [f"files {self.finished}/{self.total} ({self.done} done, {self.skipped} "
                 f"skipped, {self.failed} failed)",
                 f"audio {_hours(self.audio_finished_s)}/{_hours(self.audio_total_s)}"]
        if self.audio_done_s > 0:
            rtf = elapsed_s / self.audio_done_s
            left = max(0.0, self.audio_total_s - self.audio_finished_s)
            parts += [f"RTF {rtf:.3f}",
                      f"ETA {_duration(left * rtf) if self.finished < self.total else '0m00s'}"]
        else:
            parts += ["RTF -", "ETA -"]
        return " | ".join(parts)


class Progress:
    """The progress line on ``stream``: in place on a terminal, else a line per file."""

    def __init__(self, tally: Tally, stream: TextIO, clock: Callable[[], float]) -> None:
        self.tally, self.stream, self.clock = tally, stream, clock
        self.started = clock()
        self.tty = _isatty(stream)

    def update(self) -> None:
        line = self.tally.line(self.clock() - self.started)
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def tick(self) -> None:
        """A redraw between files (terminal only: the ETA moves)."""
        if self.tty:
            self.update()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------ manifest
class Manifest:
    """``<out>/manifest.jsonl``: a JSON line per finished file, flushed as it comes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = path.open("w", encoding="utf-8")

    def write(self, result: FileResult) -> None:
        self._f.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


# ------------------------------------------------------------------ the run
def _probe_s(job: FileJob, options: BatchOptions) -> float:
    try:
        return probe_audio(job.path, raw_rate=options.raw_rate).duration_s
    except (BadAudio, OSError, ValueError):
        return 0.0


def output_clashes(jobs: Sequence[FileJob], out_dir: Path, options: BatchOptions
             ) -> dict[int, str]:
    """Index of each job whose outputs another job before it already writes -> the error."""
    owners: dict[Path, Path] = {}
    clashes: dict[int, str] = {}
    for index, job in enumerate(jobs):
        try:
            target = output_paths(out_dir, relative_path(job.path, job.root),
                                  options.formats)["json"]
        except (TaskError, OSError):
            continue                    # the task reports it
        first = owners.setdefault(target, job.path)
        if first != job.path:
            clashes[index] = f"its outputs would overwrite those of {first} ({target})"
    return clashes


async def transcribe_many(jobs: Sequence[FileJob], out_dir: Path, *, hub: AsrHub,
                          config: GatewayConfig, options: BatchOptions, concurrency: int,
                          on_result: Callable[[int, FileResult], None]) -> list[FileResult]:
    """Every job through :func:`transcribe_file`, ``concurrency`` at a time; ``on_result``
    gets each (its index and result) as it finishes. Results in job order."""
    clashes = output_clashes(jobs, out_dir, options)
    results: list[FileResult | None] = [None] * len(jobs)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(jobs)):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            job = jobs[index]
            if index in clashes:
                result = FileResult(job.path, "failed", clashes[index], 0.0, 0.0, ())
            else:
                result = await transcribe_file(
                    job.path, out_dir, hub=hub, config=config,
                    options=dataclasses.replace(options, root=job.root))
            results[index] = result
            on_result(index, result)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(jobs))))))
    return [r for r in results if r is not None]


OnResult = Callable[[int, FileResult], None]


async def run_reported(jobs: Sequence[FileJob], out_dir: Path, *, options: BatchOptions,
                       stream: TextIO, execute: Callable[[OnResult], Awaitable[None]]) -> int:
    """A run's frame, shared by the plain and the Ray run: ``execute`` runs the jobs and
    hands each (index, result) to its callback, which keeps the tally, the manifest and the
    progress line; the report on ``stream`` after. The exit status."""
    if not jobs:
        stream.write("transcribe: no audio files (.wav, .flac, .ul, .al) found\n")
        return EXIT_SETUP
    probed = [_probe_s(job, options) for job in jobs]
    tally = Tally(len(jobs), sum(probed))
    progress = Progress(tally, stream, time.monotonic)
    manifest = Manifest(out_dir / MANIFEST)

    def finished(index: int, result: FileResult) -> None:
        tally.add(result, probed[index])
        manifest.write(result)
        progress.update()

    ticker = asyncio.create_task(_tick(progress))
    try:
        await execute(finished)
    except TritonUnavailable as exc:
        progress.end()
        stream.write(f"transcribe: {exc}\n")
        return EXIT_SETUP
    finally:
        ticker.cancel()
        manifest.close()
    progress.end()
    return _report(tally, manifest.path, stream)


async def run_batch(jobs: Sequence[FileJob], out_dir: Path, *, config: GatewayConfig,
                    options: BatchOptions, concurrency: int, stream: TextIO) -> int:
    """The whole run (the ``transcribe`` command): the exit status."""

    async def execute(on_result: OnResult) -> None:
        async with asr_hub(config) as hub:
            await transcribe_many(jobs, out_dir, hub=hub, config=config, options=options,
                                  concurrency=concurrency, on_result=on_result)

    return await run_reported(jobs, out_dir, options=options, stream=stream, execute=execute)


async def _tick(progress: Progress) -> None:
    while True:
        await asyncio.sleep(TICK_S)
        progress.tick()


def _report(tally: Tally, manifest: Path, stream: TextIO) -> int:
    if not tally.failures:
        stream.write(f"transcribe: {tally.done} done, {tally.skipped} skipped; manifest "
                     f"{manifest}\n")
        return EXIT_OK
    stream.write(f"transcribe: {len(tally.failures)} of {tally.total} file(s) failed "
                 f"(manifest {manifest}):\n")
    for result in tally.failures:
        stream.write(f"  {result.path}: {result.error}\n")
    return EXIT_FAILURES
