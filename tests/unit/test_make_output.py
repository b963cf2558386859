"""`make run` / `make test` show what they install (issue 13 item 24).

The recipes are read with ``make -n -B`` (print every command, run none): each pip install
must show its progress (no -q, a progress bar), and PIP_PROGRESS=off must turn the bar off.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _dry_run(*args: str) -> list[str]:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed (the project's entry point)", pytrace=False)
    done = subprocess.run([make, "-n", "-B", "venv", "triton-venv", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def _pip_installs(lines: list[str]) -> list[str]:
    return [line for line in lines if "-m pip install" in line]


def test_every_pip_install_shows_progress() -> None:
    lines = _dry_run()
    installs = _pip_installs(lines)
    assert len(installs) == 2, lines          # the gateway venv and the Triton venv loop
    for line in installs:
        words = line.split()
        assert "-q" not in words and "--quiet" not in words, line
        assert "--progress-bar on" in line, line
    assert any(".venv-triton" in line and "GB" in line for line in lines), \
        "the big Triton install says what it is about to do"


def test_progress_bar_can_be_turned_off_for_logs() -> None:
    for line in _pip_installs(_dry_run("PIP_PROGRESS=off")):
        assert "--progress-bar off" in line, line
