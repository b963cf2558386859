"""Structured logging: JSON lines for journald/log shippers, console when on a TTY.

Log event names, not prose (``sip.registered``, ``call.answered``); bind context
(``call_id``, ``leg``, ``sip_call_id``) with ``structlog.contextvars`` or ``log.bind``.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def _lead_fields(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Put timestamp, level and event first so a human scanning the lines finds them."""
    lead: dict[str, Any] = {k: event.pop(k) for k in ("timestamp", "level", "event") if k in event}
    return {**lead, **event}


def _processors(json_output: bool) -> list[Any]:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    if json_output:
        shared.append(_lead_fields)
        shared.append(structlog.processors.JSONRenderer(sort_keys=False))
    else:
        shared.append(structlog.dev.ConsoleRenderer(colors=False))
    return shared


class LogOutput:
    """Where log lines go: the configured stream, else stderr, else nowhere. Never raises.

    A log write that fails (EPIPE when the reader of a pipe went away, ENOSPC, a closed
    file) must not turn into an exception in whatever was logging: a signal handler, a SIP
    dispatch, a callback. The failure is counted per stream, the line goes to the next
    stream, and a line no stream took is counted as dropped. A stream that failed is not
    tried again; when it was the process's stdout, fd 1 is pointed at /dev/null so the
    interpreter's own flush at exit (and any library writing to stdout) cannot fail either.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()     # re-entrant: a signal handler may log mid-write
        self._streams: list[TextIO] = []
        self._broken: set[int] = set()
        self.write_errors: dict[str, int] = {}
        self.dropped = 0

    def use(self, primary: TextIO) -> None:
        with self._lock:
            self._streams = [primary] if primary is sys.stderr else [primary, sys.stderr]

    def write(self, line: str) -> None:
        with self._lock:
            for stream in self._streams:
                if id(stream) in self._broken:
                    continue
                try:
                    stream.write(line + "\n")
                    stream.flush()
                    return
                except (OSError, ValueError):  # ValueError: I/O on a closed file
                    self._fail(stream)
            self.dropped += 1

    def _fail(self, stream: TextIO) -> None:
        name = _stream_name(stream)
        self.write_errors[name] = self.write_errors.get(name, 0) + 1
        self._broken.add(id(stream))
        _silence_fd(stream)

    def flush(self) -> None:
        """Flush every stream, swallowing errors (the forced-exit path calls this)."""
        with self._lock:
            for stream in self._streams:
                if id(stream) in self._broken:
                    continue
                try:
                    stream.flush()
                except (OSError, ValueError):
                    self._fail(stream)


def _stream_name(stream: TextIO) -> str:
    if stream is sys.__stdout__ or stream is sys.stdout:
        return "stdout"
    if stream is sys.__stderr__ or stream is sys.stderr:
        return "stderr"
    return "file"


def _silence_fd(stream: TextIO) -> None:
    """Point a broken standard stream's fd at /dev/null and drop what its buffer holds."""
    if stream not in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        return
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        stream.flush()         # the buffered bytes that failed now go to /dev/null
    except (OSError, ValueError):
        pass


OUTPUT = LogOutput()
_level = logging.INFO


class _SafeLogger:
    """structlog's final logger: hands each rendered line to :data:`OUTPUT`."""

    def __init__(self, output: LogOutput) -> None:
        self._output = output

    def msg(self, message: str) -> None:
        self._output.write(message)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _safe_logger_factory(*_args: Any) -> _SafeLogger:
    return _SafeLogger(OUTPUT)


class _ToStructlog(logging.Handler):
    """Routes stdlib logging (asyncio, grpc, warnings via ``py.warnings``) to structlog, so
    every line on stdout has the configured format."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            structlog.get_logger().log(record.levelno, "python.log", **fields)
        except Exception:  # logging must not raise into the caller
            OUTPUT.dropped += 1


def _route_stdlib_logging(level: int) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ToStructlog)]:
        root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(max(level, logging.INFO))   # library debug chatter stays out
    logging.captureWarnings(True)
    sys.unraisablehook = _unraisable
    threading.excepthook = _thread_exception


def _emit_error(event: str, exc: BaseException | None, **fields: Any) -> None:
    if exc is not None:
        fields["error"] = f"{type(exc).__name__}: {exc}"[:500]
        fields["exc_info"] = (type(exc), exc, exc.__traceback__)
    try:
        structlog.get_logger().error(event, **fields)
    except Exception:
        OUTPUT.dropped += 1


def _unraisable(unraisable: Any) -> None:
    """``Exception ignored in: ...`` (an error in ``__del__``, a finalizer, a callback that
    cannot raise) as one ``python.unraisable`` line instead of text on stderr."""
    _emit_error("python.unraisable", unraisable.exc_value,
                message=str(unraisable.err_msg or "Exception ignored in"),
                object=repr(unraisable.object)[:300])


def _thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    _emit_error("python.thread_exception", args.exc_value,
                thread=args.thread.name if args.thread is not None else None)


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """(Re)configure structlog; safe to call again on SIGHUP."""
    out = stream if stream is not None else sys.stdout
    json_output = fmt == "json" or (fmt == "auto" and not _isatty(out))
    OUTPUT.use(out)
    global _level
    _level = LEVELS[level]
    structlog.configure(
        processors=_processors(json_output),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=_safe_logger_factory,
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(LEVELS[level])


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


def loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's unexpected errors (a callback that raised, a task destroyed while pending, an
    exception never retrieved) as one structured ``asyncio.error`` line instead of stderr text."""
    exc = context.get("exception")
    fields: dict[str, Any] = {"message": str(context.get("message", ""))}
    for key in ("task", "future", "handle", "callback"):
        if key in context:
            fields[key] = repr(context[key])[:500]
    if isinstance(exc, BaseException):
        fields["error"] = f"{type(exc).__name__}: {exc}"
        fields["exc_info"] = (type(exc), exc, exc.__traceback__)
    try:
        structlog.get_logger().error("asyncio.error", **fields)
    except Exception:
        OUTPUT.dropped += 1


def flush() -> None:
    OUTPUT.flush()


def get_logger(name: str, **context: Any) -> Any:
    """A logger carrying the component name (and ``context``). It follows the configuration
    live: a SIGHUP that changes ``logging.level`` applies to loggers made before it."""
    return structlog.get_logger(component=name, **context)


def debug_enabled() -> bool:
    """Cheap check for code that would compute debug fields per packet."""
    return _level <= logging.DEBUG
