"""The systemd install works as README "Running under systemd" says (issue 13 item 25).

The units and the config are rendered by the Makefile with this checkout's real paths and
checked with ``systemd-analyze verify``; the config must keep every path out of /etc (the
service cannot write there) and inside the unit's StateDirectory/LogsDirectory; the
installed config must be readable by a user that is neither its owner nor root but has the
unit's SupplementaryGroups (what a DynamicUser=yes service is), and by nobody else; and
``make install-systemd`` must build both venvs (triton.service runs from .venv-triton).
"""

from __future__ import annotations

import dataclasses
import grp
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config

REPO = Path(__file__).resolve().parents[2]
UNITS = ("asr-gateway.service", "triton.service")
NOBODY = "65534"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (the Makefile's apt list has it: make apt)",
                    pytrace=False)
    return path


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([_tool("make"), "-s", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    _make("systemd-units", f"SYSTEMD_BUILD={tmp_path}", f"PREFIX={REPO}")
    return tmp_path


def _unit_values(unit: Path, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", unit.read_text(), re.MULTILINE)


def test_rendered_units_name_this_checkout_and_verify(rendered: Path) -> None:
    for name in UNITS:
        text = (rendered / name).read_text()
        assert "/opt/asr-gateway" not in text
        assert str(REPO) in text
    done = subprocess.run([_tool("systemd-analyze"), "verify", *(f"./{u}" for u in UNITS)],
                          cwd=rendered, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr   # also: every Exec*= executable


def _paths(value: Any) -> Iterator[Path]:
    """Every Path anywhere in a config (dataclasses, lists, tuples)."""
    if isinstance(value, Path):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _paths(getattr(value, field.name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _paths(item)


def test_config_keeps_state_and_events_in_the_units_writable_directories(
        rendered: Path, tmp_path: Path) -> None:
    etc = tmp_path / "etc" / "asr-gateway"             # where the config is installed
    etc.mkdir(parents=True)
    shutil.copy(rendered / "gateway.toml", etc / "gateway.toml")
    config = load_config(etc / "gateway.toml")
    unit = rendered / "asr-gateway.service"
    writable = [Path("/var/lib") / d for d in _unit_values(unit, "StateDirectory")]
    writable += [Path("/var/log") / d for d in _unit_values(unit, "LogsDirectory")]
    paths = [p for p in _paths(config)                          # set ones, not the file itself
             if p != Path("") and p != etc / "gateway.toml"]
    assert config.storage.state_dir in paths and len(paths) >= 2, paths
    for path in paths:
        assert path.is_absolute(), path
        assert not path.is_relative_to(tmp_path / "etc") and not path.is_relative_to("/etc"), path
        assert any(path.is_relative_to(root) for root in writable), (path, writable)


def test_install_makes_the_config_readable_by_the_service_user_only(
        rendered: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (chgrp, setpriv to another user), as make install-systemd")
    _tool("setpriv")
    group = grp.getgrgid(0).gr_name       # an existing group: the test adds none to the host
    # a directory the other user can traverse (pytest's tmp_path is 0700)
    top = Path(tempfile.mkdtemp(prefix="asr-systemd-"))
    try:
        top.chmod(0o755)
        config_dir, unit_dir = top / "etc" / "asr-gateway", top / "units"
        config_dir.mkdir(parents=True)
        old = config_dir / "gateway.toml"              # what the old README steps left
        shutil.copy(rendered / "gateway.toml", old)
        old.chmod(0o600)
        _make("install-systemd-files", f"SYSTEMD_BUILD={tmp_path / 'build'}",
              f"PREFIX={REPO}", f"CONFIG_DIR={config_dir}", f"SYSTEMD_UNIT_DIR={unit_dir}",
              f"CONFIG_GROUP={group}", "SYSTEMCTL=true")
        info = old.stat()
        assert stat.S_IMODE(info.st_mode) == 0o640 and info.st_gid == 0, oct(info.st_mode)
        unit = unit_dir / "asr-gateway.service"
        assert _unit_values(unit, "SupplementaryGroups") == [group]
        assert _unit_values(unit, "DynamicUser") == ["yes"]
        assert f"--config {config_dir}/gateway.toml" in unit.read_text()
        as_service = [_tool("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}"]
        read = subprocess.run([*as_service, f"--groups={group}", "cat", str(old)],
                              capture_output=True, timeout=30, check=False)
        assert read.returncode == 0 and read.stdout == old.read_bytes(), read.stderr
        other = subprocess.run([*as_service, "--clear-groups", "cat", str(old)],
                               capture_output=True, timeout=30, check=False)
        assert other.returncode != 0, "the config must not be world-readable (secrets)"
    finally:
        shutil.rmtree(top)


def test_install_systemd_builds_both_venvs() -> None:
    done = subprocess.run([_tool("make"), "-n", "-B", "install-systemd"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    installs = [line for line in done.stdout.splitlines() if "-m pip install" in line]
    assert any(line.startswith(".venv/bin/python ") for line in installs), done.stdout
    assert any(".venv-triton/bin/python " in line for line in installs), done.stdout


def test_readme_systemd_steps_use_the_install_target() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Running under systemd", 1)[1].split("\n## ", 1)[0]
    assert "make install-systemd" in section
    assert "make venv" not in section and "install -m 0640" not in section
