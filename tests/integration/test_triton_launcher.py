"""The local Triton a gateway or ``asr-gateway triton`` starts (issue 13, items 2 and 3).

A Triton started by the gateway dies with it (even on SIGKILL), a second start on the same
workdir or on a taken port says in one line who is in the way, the stub copy survives a
stub that still runs, and ``run --triton-venv`` serves on the HTTP/metrics ports given.
The real bundled tritonserver (Triton venv) serves the no-op ``asr_ack`` model.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.triton_launcher import (
    PID_FILE,
    TritonInstall,
    lock_workdir,
    prepare_backends,
    read_pid_file,
)
from tests.conftest import GatewayFactory
from tests.peers.ports import LOOPBACK, distinct_tcp_ports
from tests.triton.fixtures import REPO_ROOT, TRITON_VENV

START_TIMEOUT_S = 240.0     # a shared 2-core machine: generous
GONE_TIMEOUT_S = 60.0       # SIGTERM exit is 2-5 s; --exit-timeout-secs=5


def _require_venv() -> None:
    if not (TRITON_VENV / "bin" / "python").exists():
        pytest.fail(f"Triton venv {TRITON_VENV} not found: run make triton-venv", pytrace=False)


def _gone(pid: int) -> bool:
    """No such process, or only a zombie left for its (new) parent to reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, timeout_s: float = GONE_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.2)
    return _gone(pid)


def _launcher_argv(workdir: Path, ports: list[int]) -> list[str]:
    http, grpc, metrics = ports
    return [sys.executable, "-m", "gateway.triton_launcher", "--venv", str(TRITON_VENV),
            "--model-repository", str(REPO_ROOT / "triton_models"), "--workdir", str(workdir),
            "--host", LOOPBACK, "--http-port", str(http), "--grpc-port", str(grpc),
            "--metrics-port", str(metrics), "--model", "asr_ack", "--timeout-s", "200"]


def _refused(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """A launcher that must give up at once (nothing to wait for)."""
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, list[int]]]:
    """``python -m gateway.triton_launcher`` serving asr_ack, ready."""
    _require_venv()
    workdir = tmp_path / "work"
    ports = distinct_tcp_ports(3)
    proc = subprocess.Popen(_launcher_argv(workdir, ports), cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()       # "triton ready: ..." or the failure
        assert first.startswith("triton ready"), first + proc.stdout.read()
        yield proc, workdir, ports
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        server = read_pid_file(workdir).get("tritonserver")
        if server is not None and not _gone(server):
            os.kill(server, signal.SIGKILL)


def test_second_start_and_taken_port_say_who_and_sigkill_takes_triton_along(
        launcher: tuple[subprocess.Popen[str], Path, list[int]], tmp_path: Path) -> None:
    proc, workdir, ports = launcher
    pids = read_pid_file(workdir)
    server = pids["tritonserver"]
    assert pids["launcher"] == proc.pid and not _gone(server)

    second = _refused(_launcher_argv(workdir, distinct_tcp_ports(3)))       # same workdir
    assert f"in use by pid {proc.pid}" in second.stderr and f"kill {proc.pid}" in second.stderr
    assert not _gone(server), "the refused start must leave the running Triton alone"

    other = distinct_tcp_ports(3)
    taken = _refused(_launcher_argv(tmp_path / "other", [other[0], ports[1], other[2]]))
    assert f"grpc port {LOOPBACK}:{ports[1]} is already in use by pid {server}" in taken.stderr
    assert f"kill {server}" in taken.stderr

    proc.kill()                                      # SIGKILL: no cleanup code runs
    proc.wait(10)
    assert _wait_gone(server), f"tritonserver {server} outlived its SIGKILLed launcher"
    os.close(lock_workdir(workdir))                  # and the workdir is free again


def test_port_taken_by_another_program_is_one_line_naming_it(tmp_path: Path) -> None:
    _require_venv()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        grpc, metrics = distinct_tcp_ports(2)
        done = _refused(_launcher_argv(tmp_path / "work", [port, grpc, metrics]))
    assert f"http port {LOOPBACK}:{port} is already in use by pid {os.getpid()}" in done.stderr
    assert f"kill {os.getpid()}" in done.stderr
    assert not (tmp_path / "work" / "backends").exists(), "nothing is prepared for a refusal"


def _fake_install(root: Path, stub: bytes) -> TritonInstall:
    server_root = root / "site" / "pytriton" / "tritonserver"
    (server_root / "backends" / "python").mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (server_root / "backends" / "python" / name).write_bytes(b"x")
    stubs = server_root / "python_backend_stubs" / "3.11"
    stubs.mkdir(parents=True)
    (stubs / "triton_python_backend_stub").write_bytes(stub)
    return TritonInstall(root / "venv", root / "site", root / "lib", "3.11")


def test_stub_copy_replaces_a_stub_that_still_runs(tmp_path: Path) -> None:
    """Copying over a running executable fails with ETXTBSY; a rename does not."""
    sleep = Path(shutil.which("sleep") or "/bin/sleep").read_bytes()
    install = _fake_install(tmp_path, sleep + b"\0new")
    target = tmp_path / "work" / "backends" / "python"
    target.mkdir(parents=True)
    running = target / "triton_python_backend_stub"
    running.write_bytes(sleep)
    running.chmod(0o755)
    old = subprocess.Popen([str(running), "30"])
    try:
        time.sleep(0.2)
        assert prepare_backends(install, tmp_path / "work") == target.parent
        assert running.read_bytes() == sleep + b"\0new"
        assert old.poll() is None
        inode = running.stat().st_ino
        prepare_backends(install, tmp_path / "work")      # identical: left as it is
        assert running.stat().st_ino == inode
    finally:
        old.kill()
        old.wait(5)


def test_run_with_triton_venv_uses_the_given_ports_and_sigkill_takes_triton_along(
        gateway_factory: GatewayFactory) -> None:
    _require_venv()
    http, grpc, metrics = distinct_tcp_ports(3)
    gw = gateway_factory({"triton": {"url": f"{LOOPBACK}:{grpc}", "asr_model": "asr_ack"},
                          "tts": {"enabled": False}}, start=False)
    gw.start(START_TIMEOUT_S, ["--triton-venv", str(TRITON_VENV), "--model-repository",
                               str(REPO_ROOT / "triton_models"), "--triton-http-port", str(http),
                               "--triton-metrics-port", str(metrics)])
    starting = gw.wait_log("triton.starting")
    assert (starting["http_port"], starting["metrics_port"]) == (http, metrics)
    with urllib.request.urlopen(f"http://{LOOPBACK}:{http}/v2/health/ready", timeout=5) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"http://{LOOPBACK}:{metrics}/metrics", timeout=5) as r:
        assert r.status == 200 and b"nv_" in r.read()
    workdir = Path(gw.config["storage"]["state_dir"]) / "triton"
    server = read_pid_file(workdir)["tritonserver"]
    try:
        assert (workdir / PID_FILE).exists() and not _gone(server)
        gw.kill()                                    # SIGKILL the gateway
        assert _wait_gone(server), f"tritonserver {server} outlived its SIGKILLed gateway"
    finally:
        if not _gone(server):
            os.kill(server, signal.SIGKILL)


def test_run_with_triton_venv_on_a_taken_port_exits_1_with_one_line(
        gateway_factory: GatewayFactory) -> None:
    _require_venv()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        grpc, metrics = distinct_tcp_ports(2)
        gw = gateway_factory({"triton": {"url": f"{LOOPBACK}:{grpc}", "asr_model": "asr_ack"},
                              "tts": {"enabled": False}}, start=False)
        with pytest.raises(AssertionError, match="no log event 'gateway.started'"):
            gw.start(120, ["--triton-venv", str(TRITON_VENV), "--triton-http-port", str(taken),
                           "--triton-metrics-port", str(metrics)])
        assert gw.wait(30) == 1
    failed = gw.wait_log("triton.start_failed")
    assert f"http port {LOOPBACK}:{taken} is already in use by pid {os.getpid()}" in \
        failed["error"] and "\n" not in failed["error"], failed
    assert not any("Traceback" in line for line in gw.raw), "".join(gw.raw)
