"""Kamailio as a loopback registrar + proxy for integration tests.

The configuration comes from ``sip_configs/kamailio/kamailio-test.cfg.tmpl``;
users and passwords are rendered into it (no database). Other templates
(``template=``, e.g. ``dispatcher.cfg.tmpl``) may use extra placeholders
(``extra=``). Kamailio runs in the foreground as a child process with its
runtime files under ``workdir``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.peers.ports import LOOPBACK, free_port_both

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "sip_configs" / "kamailio" / "kamailio-test.cfg.tmpl"
ALGORITHMS = ("MD5", "SHA-256")
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9._+-]+$")
_SAFE_PASSWORD = re.compile(r"^[!#-\[\]-~]+$")  # printable ASCII without space, " and \
_PLACEHOLDER = re.compile(r"\{\{[A-Z_]+\}\}")
_PLACEHOLDER_NAME = re.compile(r"^[A-Z_]+$")
_PORT_ATTEMPTS = 3


class KamailioConfigError(ValueError):
    """A user, domain or option cannot be rendered into the configuration."""


class KamailioStartError(RuntimeError):
    """Kamailio exited or did not answer OPTIONS in time (message has the log tail)."""


@dataclass(frozen=True, slots=True)
class KamailioUser:
    user: str
    password: str


def find_kamailio() -> str | None:
    """Path of the kamailio binary (Debian installs it in /usr/sbin)."""
    found = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/usr/local/sbin")
    return found


def _password_block(users: Sequence[KamailioUser]) -> str:
    lines = []
    for u in users:
        if not _SAFE_TOKEN.match(u.user):
            raise KamailioConfigError(f"user name {u.user!r} must match {_SAFE_TOKEN.pattern}")
        if not _SAFE_PASSWORD.match(u.password):
            raise KamailioConfigError(f"password of {u.user!r} has spaces, quotes or backslashes")
        lines.append(f'\tif ($var(user) == "{u.user}") {{ $var(password) = "{u.password}"; }}')
    return "\n".join(lines)


def _aliases(domain: str, listen_addr: str, port: int) -> str:
    names = [f"{listen_addr}:{port}"]
    if domain != listen_addr:
        names += [domain, f"{domain}:{port}"]
    return "\n".join(f'alias="{name}"' for name in names)


def render_config(
    template: str,
    *,
    users: Sequence[KamailioUser],
    domain: str,
    port: int,
    algorithm: str = "MD5",
    listen_addr: str = LOOPBACK,
    log_level: int = 2,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Fill the template's ``{{NAME}}`` placeholders; every one must be known.

    ``extra`` adds placeholders of other templates (e.g. the dispatcher's
    ``DISPATCHER_LIST``); it may not redefine the built-in ones.
    """
    if algorithm not in ALGORITHMS:
        raise KamailioConfigError(f"algorithm {algorithm!r} not in {ALGORITHMS}")
    if not _SAFE_TOKEN.match(domain):
        raise KamailioConfigError(f"domain {domain!r} must match {_SAFE_TOKEN.pattern}")
    values = {
        "LOG_LEVEL": str(log_level),
        "LISTEN_ADDR": listen_addr,
        "PORT": str(port),
        "ALIASES": _aliases(domain, listen_addr, port),
        "NONCE_SECRET": secrets.token_hex(16),
        "ALGORITHM": algorithm,
        "DOMAIN": domain,
        "USER_PASSWORDS": _password_block(users),
    }
    values.update(_extra_values(extra or {}, set(values)))
    rendered = _PLACEHOLDER.sub(lambda m: values.get(m.group(0)[2:-2], m.group(0)), template)
    left = _PLACEHOLDER.findall(rendered)
    if left:
        raise KamailioConfigError(f"unknown placeholders in template: {sorted(set(left))}")
    return rendered


def _extra_values(extra: Mapping[str, str], builtin: set[str]) -> dict[str, str]:
    for name in extra:
        if not _PLACEHOLDER_NAME.match(name):
            raise KamailioConfigError(f"placeholder name {name!r} must match [A-Z_]+")
        if name in builtin:
            raise KamailioConfigError(f"placeholder {name!r} is built in and cannot be replaced")
    return dict(extra)


def _options_probe(port: int, timeout_s: float) -> bool:
    """True when something on 127.0.0.1:port answers an OPTIONS with 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local_port = sock.getsockname()[1]
        tag = secrets.token_hex(4)
        msg = (
            f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch=z9hG4bK{tag};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag={tag}\r\n"
            f"To: <sip:{LOOPBACK}:{port}>\r\n"
            f"Call-ID: probe-{tag}@{LOOPBACK}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout_s)
        sock.sendto(msg.encode(), (LOOPBACK, port))
        try:
            data = sock.recv(65535)
        except (TimeoutError, ConnectionRefusedError):
            return False
        return data.startswith(b"SIP/2.0 200")


class Kamailio:
    """Registrar + proxy on 127.0.0.1:port (UDP and TCP); a context manager."""

    def __init__(
        self,
        workdir: Path,
        users: Sequence[KamailioUser],
        domain: str = LOOPBACK,
        port: int | None = None,
        algorithm: str = "MD5",
        *,
        template: Path = TEMPLATE_PATH,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.template = Path(template)
        self.extra = dict(extra or {})
        self.users = tuple(users)
        self.domain = domain
        self.algorithm = algorithm
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port_both()
        self.config_path = self.workdir / "kamailio.cfg"
        self.log_path = self.workdir / "kamailio.log"
        self.pid_path = self.workdir / "kamailio.pid"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """The proxy's own SIP URI, e.g. ``sip:127.0.0.1:5070``."""
        return f"sip:{LOOPBACK}:{self.port}"

    def aor(self, user: str) -> str:
        return f"sip:{user}@{self.domain}"

    def _write_config(self) -> None:
        (self.workdir / "run").mkdir(parents=True, exist_ok=True)
        text = render_config(
            self.template.read_text(),
            users=self.users,
            domain=self.domain,
            port=self.port,
            algorithm=self.algorithm,
            extra=self.extra,
        )
        self.config_path.write_text(text)

    def _command(self) -> list[str]:
        binary = find_kamailio()
        if binary is None:
            raise KamailioStartError("kamailio binary not found (apt-get install kamailio)")
        return [
            binary, "-f", str(self.config_path), "-DD", "-E",
            "-m", "64", "-M", "8",
            "-Y", str(self.workdir / "run"), "-P", str(self.pid_path),
            "-w", str(self.workdir),
        ]  # fmt: skip

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )

    def start(self, timeout_s: float = 15) -> None:
        """Start and wait until it answers OPTIONS over UDP; raise with the log tail."""
        attempts = 1 if self._fixed_port else _PORT_ATTEMPTS
        for attempt in range(attempts):
            self._proc = self._spawn()
            if self._wait_ready(timeout_s):
                return
            in_use = "Address already in use" in self.log_tail(200)
            self.stop()
            if not (in_use and attempt + 1 < attempts):
                break
            self.port = free_port_both()
        raise KamailioStartError(
            f"kamailio on port {self.port} did not become ready in {timeout_s} s; "
            f"log tail:\n{self.log_tail()}"
        )

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            if _options_probe(self.port, timeout_s=0.2):
                return True
            time.sleep(0.05)
        return False

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 5) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout_s``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout_s)
        # Children left behind by a crashed main process.
        _signal_group(proc.pid, signal.SIGKILL)

    def log_tail(self, n: int = 50) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no kamailio log)"
        return "\n".join(lines[-n:])

    def __enter__(self) -> Kamailio:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
