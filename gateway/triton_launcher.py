"""Starts the Triton Inference Server bundled in PyPI ``nvidia-pytriton`` from its own venv.

The server binary, the Python backend and its stub come from the Triton venv
(``.venv-triton``, see ``triton_models/requirements-cpu.txt``); this module only
prepares ``<workdir>/backends/python`` and the environment the stub needs, then
spawns the binary. It never imports the model code (NeMo, torch, Whisper): those
run inside the server's Python-backend stubs. ``triton_models/run_triton.sh`` does
the same for systemd.

A server started here dies with its starter: it gets SIGTERM when the thread that
started it dies (Linux parent-death signal; set when started from the main thread,
the only thread that lives as long as the process), and ``stop()`` (also run at
interpreter exit) ends its whole process group. ``<workdir>/triton.lock`` is held
(flock) by the starter and the server while either lives, and ``triton.pid`` names
them, so a second start on the same workdir, or one whose ports are taken, fails
with one line that says which process is in the way.

Layer: shell.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import errno
import fcntl
import filecmp
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from gateway.cli_help import HelpFormatter

LOOPBACK = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001
DEFAULT_METRICS_PORT = 8002
LOCK_FILE = "triton.lock"
PID_FILE = "triton.pid"
_PR_SET_PDEATHSIG = 1
_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
_PROBE = ("import json, sys, sysconfig; print(json.dumps({'purelib': sysconfig.get_paths()"
          "['purelib'], 'libdir': sysconfig.get_config_var('LIBDIR'), 'version': "
          "'%d.%d' % sys.version_info[:2]}))")


class TritonLaunchError(RuntimeError):
    """The Triton server could not be prepared or started."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(f"{message}\n--- triton log tail ---\n{log_tail}" if log_tail else message)
        self.log_tail = log_tail


class TritonVenvMissingError(TritonLaunchError):
    """The Triton venv or the server bundled in it is missing."""


class TritonInUseError(TritonLaunchError):
    """Another launcher or a leftover server holds the workdir."""


class TritonPortInUseError(TritonLaunchError):
    """One of the server's ports is taken (or cannot be bound)."""


@dataclass(frozen=True, slots=True)
class TritonInstall:
    """Where the bundled server lives inside a Triton venv."""

    venv: Path
    site_packages: Path
    python_libdir: Path
    python_version: str

    @property
    def server_root(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def server_bin(self) -> Path:
        return self.server_root / "bin" / "tritonserver"

    @property
    def stub(self) -> Path:
        stubs = self.server_root / "python_backend_stubs" / self.python_version
        return stubs / "triton_python_backend_stub"


def find_install(venv: Path) -> TritonInstall:
    """Locate the bundled server in ``venv``; TritonVenvMissingError names the fix."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise TritonVenvMissingError(f"Triton venv {venv} not found: run make triton-venv")
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True,
                           check=False, timeout=60)
    if probe.returncode != 0:
        raise TritonVenvMissingError(f"{python} does not run: {probe.stderr.strip()}")
    info = json.loads(probe.stdout)
    install = TritonInstall(venv, Path(info["purelib"]), Path(info["libdir"]), info["version"])
    for needed in (install.server_bin, install.stub):
        if not needed.exists():
            raise TritonVenvMissingError(f"{needed} missing in {venv} (nvidia-pytriton not "
                                         "installed?): run make triton-venv")
    return install


def prepare_backends(install: TritonInstall, workdir: Path) -> Path:
    """``<workdir>/backends/python`` with the backend library, its utils and the stub."""
    target = workdir / "backends" / "python"
    sources = [install.server_root / "backends" / "python" / f for f in _BACKEND_FILES]
    try:
        target.mkdir(parents=True, exist_ok=True)
        for source in [*sources, install.stub]:
            install_file(source, target / source.name)
    except OSError as exc:
        raise TritonLaunchError(f"cannot prepare {target}: {exc}") from exc
    return target.parent


def install_file(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` unless they are identical. A new copy is written beside
    ``dest`` and renamed over it: a stub still running from ``dest`` (where writing
    would fail with ETXTBSY) keeps its old file."""
    if dest.is_file() and filecmp.cmp(source, dest, shallow=False):
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def server_env(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the server: the bundled libraries first, the venv's python3 first."""
    env = dict(os.environ if base is None else base)
    libs = [str(install.site_packages / "nvidia_pytriton.libs"), str(install.python_libdir)]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libs)
    env["PATH"] = f"{install.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(install.venv)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return env


_OPT_IN = re.compile(r'key:\s*"load_by_default",\s*value:\s*\{\s*string_value:\s*"false"')


def discover_models(model_repository: Path) -> tuple[str, ...]:
    """Models to load by default: directories holding a config.pbtxt (so not ``common``),
    except those whose config says ``load_by_default: "false"`` (e.g. tts_nemo, which needs
    weights only GPU hosts have; load it with --models)."""
    return tuple(sorted(p.parent.name for p in model_repository.glob("*/config.pbtxt")
                        if not _OPT_IN.search(p.read_text())))


@dataclass(frozen=True, slots=True)
class Ports:
    http: int | None
    grpc: int | None
    metrics: int | None


def _endpoint_args(host: str, ports: Ports) -> list[str]:
    args: list[str] = []
    for name, port in (("http", ports.http), ("grpc", ports.grpc), ("metrics", ports.metrics)):
        if port is None:
            args.append(f"--allow-{name}=false")
        else:
            args += [f"--{name}-address={host}", f"--{name}-port={port}"]
    return args


def server_argv(install: TritonInstall, backends: Path, model_repository: Path, *,
                host: str, ports: Ports, models: Sequence[str]) -> list[str]:
    argv = [str(install.server_bin), f"--model-repository={model_repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={install.server_root / 'caches'}",
            "--model-control-mode=explicit", *(f"--load-model={m}" for m in models),
            "--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0",
            "--exit-timeout-secs=5", "--log-info=true"]
    return argv + _endpoint_args(host, ports)


def precompile(install: TritonInstall, model_repository: Path, models: Sequence[str]) -> None:
    """Write the models' bytecode caches (the server's own Python) before it starts. The
    Python backend writes a version folder's ``__pycache__`` when it first imports it, after
    Triton noted the folder's time; the next load of the model (a version added, a reload)
    then sees that version as changed, loads it again and drops its open sequences (calls).
    Best effort: a read-only repository is left as it is."""
    folders = [str(model_repository / m) for m in models if (model_repository / m).is_dir()]
    if not folders:
        return
    try:
        subprocess.run([str(install.venv / "bin" / "python"), "-m", "compileall", "-q",
                        *folders], capture_output=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or "?"
    except OSError:
        return "?"


def read_pid_file(workdir: Path) -> dict[str, int]:
    """``{"launcher": pid, "tritonserver": pid}`` as far as ``triton.pid`` says."""
    try:
        data = json.loads((workdir / PID_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}


def _write_pid_file(workdir: Path, pids: dict[str, int]) -> None:
    tmp = workdir / f".{PID_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(pids) + "\n")
    os.replace(tmp, workdir / PID_FILE)


def in_use_message(workdir: Path, pids: dict[str, int]) -> str:
    """One line: who holds ``workdir`` and how to get it back."""
    server, launcher = pids.get("tritonserver"), pids.get("launcher")
    if launcher is not None and _alive(launcher):
        running = f" with tritonserver pid {server}" if server is not None else ""
        return (f"Triton workdir {workdir} is in use by pid {launcher} "
                f"({_proc_name(launcher)}){running}: stop that gateway/launcher (kill "
                f"{launcher}) or give this one another workdir (storage.state_dir, --workdir)")
    if server is not None and _alive(server):
        return (f"a leftover tritonserver (pid {server}, its starter pid {launcher} is gone) "
                f"still runs from {workdir}: stop it with 'kill {server}', then start again")
    return (f"Triton workdir {workdir} is locked by another process ({workdir / LOCK_FILE}; "
            f"'fuser -v {workdir / LOCK_FILE}' names it): stop it, then start again")


def lock_workdir(workdir: Path) -> int:
    """Take ``<workdir>/triton.lock`` (flock, exclusive); the fd to keep while serving."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise TritonLaunchError(f"cannot use Triton workdir {workdir}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TritonInUseError(in_use_message(workdir, read_pid_file(workdir))) from None
    return fd


def listening_inodes(proc_net_tcp: str, port: int) -> set[str]:
    """Socket inodes listening on ``port`` in a /proc/net/tcp{,6} table."""
    inodes = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def port_owner(port: int) -> int | None:
    """The pid of a process (of ours, as far as /proc lets us see) listening on ``port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            inodes |= listening_inodes(Path(table).read_text(), port)
        except OSError:
            continue
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir() if wanted else ():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def check_port(name: str, host: str, port: int) -> None:
    """Raise TritonPortInUseError (one line, naming the holder) unless ``port`` is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return
        except OSError as exc:
            error = exc
    if error.errno != errno.EADDRINUSE:
        raise TritonPortInUseError(f"Triton cannot bind its {name} port {host}:{port}: "
                                   f"{error.strerror}")
    owner = port_owner(port)
    holder = f"pid {owner} ({_proc_name(owner)})" if owner is not None else "another process"
    stop = f"stop it (kill {owner})" if owner is not None else "stop it"
    raise TritonPortInUseError(f"Triton's {name} port {host}:{port} is already in use by "
                               f"{holder}: {stop} or choose another {name} port")


def _die_with_parent() -> Callable[[], None] | None:
    """preexec_fn: SIGTERM the child when its parent dies (Linux), or None.

    The kernel sends it when the *thread* that forked dies, so it is set only from the
    main thread; other starters rely on stop() and the exit hook."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
            threading.main_thread()):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody to serve
            os._exit(1)

    return preexec


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class TritonProcess:
    """One tritonserver child process serving ``model_repository``."""

    def __init__(self, model_repository: Path, *, venv: Path, workdir: Path,
                 http_port: int | None, grpc_port: int | None, metrics_port: int | None,
                 models: Sequence[str] | None = None, log_path: Path,
                 host: str = LOOPBACK) -> None:
        if http_port is None and grpc_port is None:
            raise ValueError("Triton needs an HTTP or a gRPC port to report readiness")
        self.model_repository = model_repository.resolve()
        self.venv = venv.resolve()
        self.workdir = workdir
        self.ports = Ports(http_port, grpc_port, metrics_port)
        self.models = tuple(models) if models is not None else discover_models(
            self.model_repository)
        self.log_path = log_path
        self.host = host
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    @property
    def grpc_url(self) -> str:
        if self.ports.grpc is None:
            raise ValueError("this Triton has no gRPC port")
        return f"{self.host}:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        if self.ports.http is None:
            raise ValueError("this Triton has no HTTP port")
        return f"http://{self.host}:{self.ports.http}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 120.0, *,
              cancel: threading.Event | None = None) -> TritonProcess:
        """Spawn the server and wait until it and every model are ready (or raise).

        ``cancel`` set while waiting stops the server and raises TritonLaunchError.
        A workdir in use or a port taken raises TritonInUseError / TritonPortInUseError
        (one line) before anything is spawned or copied.
        """
        if self.alive():
            raise TritonLaunchError(f"this Triton already runs (pid {self.pid})")
        self._release()                  # what a run that died on its own left behind
        install = find_install(self.venv)
        self._check_distinct_ports()
        lock = lock_workdir(self.workdir)
        try:
            self._spawn(install, lock)
        except BaseException:
            os.close(lock)
            raise
        self._lock_fd = lock
        atexit.register(self.stop)
        self._wait_ready(timeout_s, cancel or threading.Event())
        return self

    def _named_ports(self) -> list[tuple[str, int]]:
        ports = (("http", self.ports.http), ("grpc", self.ports.grpc),
                 ("metrics", self.ports.metrics))
        return [(name, port) for name, port in ports if port is not None]

    def _check_distinct_ports(self) -> None:
        named = self._named_ports()
        if len({port for _name, port in named}) != len(named):
            listed = ", ".join(f"{name} {port}" for name, port in named)
            raise TritonPortInUseError(f"Triton's ports must differ, got {listed}")

    def _spawn(self, install: TritonInstall, lock: int) -> None:
        for name, port in self._named_ports():
            check_port(name, self.host, port)
        backends = prepare_backends(install, self.workdir)
        precompile(install, self.model_repository, self.models)
        argv = server_argv(install, backends, self.model_repository, host=self.host,
                           ports=self.ports, models=self.models)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        _write_pid_file(self.workdir, {"launcher": os.getpid()})
        with self.log_path.open("ab") as log:
            # the server inherits the lock: it stays held while the server lives
            self._proc = subprocess.Popen(argv, env=server_env(install), stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          cwd=self.workdir, start_new_session=True,
                                          pass_fds=(lock,), preexec_fn=_die_with_parent())
        _write_pid_file(self.workdir, {"launcher": os.getpid(), "tritonserver": self._proc.pid})

    def _wait_ready(self, timeout_s: float, cancel: threading.Event) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not cancel.is_set():
            if not self.alive():
                code = None if self._proc is None else self._proc.returncode
                raise TritonLaunchError(f"tritonserver exited with {code} before it was ready",
                                        self.log_tail())
            if self._ready():
                return
            cancel.wait(0.1)
        self.stop()
        reason = "start cancelled" if cancel.is_set() else f"not ready after {timeout_s:.0f} s"
        raise TritonLaunchError(f"tritonserver {reason}", self.log_tail())

    def _ready(self) -> bool:
        if self.ports.http is not None:
            return all(self._http_ok(path) for path in self._ready_paths())
        return self._grpc_ready()

    def _ready_paths(self) -> list[str]:
        return ["/v2/health/ready", *(f"/v2/models/{m}/ready" for m in self.models)]

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=2.0) as reply:
                return int(reply.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def _grpc_ready(self) -> bool:
        import tritonclient.grpc as grpcclient  # only without HTTP: lazy, it is heavy

        try:
            client = grpcclient.InferenceServerClient(self.grpc_url)
            try:
                return bool(client.is_server_ready()) and all(
                    client.is_model_ready(m) for m in self.models)
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; whatever is left of its process
        group (backend stubs) is killed, the workdir lock released."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait(timeout_s)
        self._release()
        return proc.returncode

    def _release(self) -> None:
        """After the server exited: end its group, drop the pid file and the lock."""
        atexit.unregister(self.stop)
        if self._lock_fd is None:    # nothing started since the last release
            return
        if self._proc is not None and self._proc.poll() is not None:
            _kill_group(self._proc.pid)
        if read_pid_file(self.workdir).get("launcher") == os.getpid():
            (self.workdir / PID_FILE).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None

    def wait(self) -> int:
        if self._proc is None:
            raise ValueError("Triton was not started")
        return self._proc.wait()

    def log_tail(self, max_bytes: int = 6000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-max_bytes:].decode("utf-8", errors="replace")


def _parser() -> argparse.ArgumentParser:
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(prog="asr-gateway triton", formatter_class=HelpFormatter,
                                     description="Run the bundled Triton in the foreground "
                                     "(from PyPI nvidia-pytriton in --venv); Ctrl-C or SIGTERM "
                                     "stops it.")
    parser.add_argument("--model-repository", type=Path, default=root / "triton_models",
                        metavar="DIR", help="Triton model repository")
    parser.add_argument("--venv", type=Path, default=root / ".venv-triton", metavar="DIR",
                        help="the Triton side's venv (tritonserver and the models' packages)")
    parser.add_argument("--workdir", type=Path, default=root / ".run" / "triton", metavar="DIR",
                        help="backends folder, lock and pid files, triton.log")
    parser.add_argument("--host", default=LOOPBACK, help="address for all three ports")
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT,
                        help="Triton's HTTP/REST port")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT,
                        help="Triton's gRPC port (the gateway's triton.url)")
    parser.add_argument("--metrics-port", type=int,
                        default=DEFAULT_METRICS_PORT,
                        help="Triton's Prometheus metrics port")
    parser.add_argument("--model", action="append", dest="models", metavar="NAME",
                        help="load only these models (repeat); default: every model")
    parser.add_argument("--timeout-s", type=float, default=300.0,
                        help="how long to wait for the server to become ready, in seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Foreground launcher: start, say where the log goes, wait; SIGINT/SIGTERM stop it."""
    args = _parser().parse_args(argv)
    triton = TritonProcess(args.model_repository, venv=args.venv, workdir=args.workdir,
                           http_port=args.http_port, grpc_port=args.grpc_port,
                           metrics_port=args.metrics_port, models=args.models,
                           log_path=args.workdir / "triton.log", host=args.host)
    stop_requested = threading.Event()

    def _request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop_requested.set()  # the stop itself runs below, outside the handler

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    try:
        triton.start(args.timeout_s, cancel=stop_requested)
    except TritonLaunchError as exc:
        print(exc, file=sys.stderr)
        return 0 if stop_requested.is_set() else 1
    print(f"triton ready: grpc {triton.grpc_url}, models {', '.join(triton.models)}; "
          f"log {triton.log_path}", flush=True)
    while triton.alive() and not stop_requested.wait(0.5):
        pass
    code = triton.stop()
    return 0 if stop_requested.is_set() else (code or 1)


if __name__ == "__main__":
    sys.exit(main())
