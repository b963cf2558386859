"""Pure parts of the Triton launcher's leftover detection (issue 13 item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gateway.triton_launcher import (
    PID_FILE,
    in_use_message,
    listening_inodes,
    read_pid_file,
)

# /proc/net/tcp: 127.0.0.1:8001 listening (0A), 127.0.0.1:8001 established (01), :8000 listening
TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0100007F:1F41 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1
   2: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1
"""


def test_only_listening_sockets_of_the_port_count() -> None:
    assert listening_inodes(TABLE, 8001) == {"4242"}
    assert listening_inodes(TABLE, 8000) == {"4444"}
    assert listening_inodes(TABLE, 9) == set()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_message_names_a_live_starter_first(tmp_path: Path) -> None:
    text = in_use_message(tmp_path, {"launcher": os.getpid(), "tritonserver": 12345})
    assert f"in use by pid {os.getpid()}" in text and f"kill {os.getpid()}" in text
    assert "tritonserver pid 12345" in text and "\n" not in text


def test_message_names_a_leftover_server_when_its_starter_is_gone(tmp_path: Path) -> None:
    text = in_use_message(tmp_path, {"launcher": _dead_pid(), "tritonserver": os.getpid()})
    assert f"leftover tritonserver (pid {os.getpid()}" in text
    assert f"kill {os.getpid()}" in text and "\n" not in text


def test_message_without_live_pids_points_at_the_lock(tmp_path: Path) -> None:
    text = in_use_message(tmp_path, {})
    assert str(tmp_path / "triton.lock") in text and "\n" not in text


def test_pid_file_garbage_reads_as_nothing(tmp_path: Path) -> None:
    assert read_pid_file(tmp_path) == {}
    (tmp_path / PID_FILE).write_text("not json")
    assert read_pid_file(tmp_path) == {}
    (tmp_path / PID_FILE).write_text(json.dumps({"launcher": 7, "tritonserver": "x"}))
    assert read_pid_file(tmp_path) == {"launcher": 7}
