"""LogOutput: a log write never raises; failures are counted and fall back (issue 13 item 1).
asyncio errors, warnings and stdlib logging reach the same JSON output (item 5)."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

import pytest
import structlog

from gateway import logs
from gateway.logs import LogOutput


def _broken_pipe() -> TextIO:
    r, w = os.pipe()
    os.close(r)                                   # the reader went away
    return open(w, "w", encoding="utf-8")          # noqa: SIM115 - closed by the test


def test_a_broken_stream_is_counted_and_the_line_goes_to_the_next_one() -> None:
    out, fallback = LogOutput(), io.StringIO()
    broken = _broken_pipe()
    out._streams = [broken, fallback]
    out.write('{"event": "a"}')
    out.write('{"event": "b"}')
    assert fallback.getvalue() == '{"event": "a"}\n{"event": "b"}\n'
    assert out.write_errors == {"file": 1}        # a broken stream is not retried
    assert out.dropped == 0
    try:
        broken.close()
    except BrokenPipeError:
        pass


def test_a_line_no_stream_takes_is_dropped_and_counted() -> None:
    out = LogOutput()
    closed = io.StringIO()
    closed.close()
    out._streams = [_broken_pipe(), closed]
    out.write("x")
    out.write("y")
    out.flush()
    assert out.dropped == 2 and out.write_errors == {"file": 2}


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure_logging("info", "json", stream=out)
    yield out
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logs._ToStructlog)]:
        root.removeHandler(handler)
    logging.captureWarnings(False)
    structlog.reset_defaults()
    logs.OUTPUT.use(sys.stdout)
    logs._level = logging.INFO
    sys.unraisablehook = sys.__unraisablehook__
    threading.excepthook = threading.__excepthook__


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]   # every line is JSON


def test_asyncio_errors_go_through_the_logger(json_log: io.StringIO) -> None:
    async def fail() -> None:
        raise RuntimeError("aclose(): asynchronous generator is already running")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(logs.loop_exception_handler)
        loop.call_soon(lambda: 1 / 0)                    # a callback that raises
        task = loop.create_task(fail())
        await asyncio.sleep(0.01)
        del task                                         # exception never retrieved
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    errors = [x for x in _lines(json_log) if x["event"] == "asyncio.error"]
    assert len(errors) == 2, json_log.getvalue()
    assert any("ZeroDivisionError" in x["error"] for x in errors)
    never = next(x for x in errors if "RuntimeError" in x["error"])
    assert never["message"] == "Task exception was never retrieved" and never["level"] == "error"


def test_warnings_and_stdlib_logging_become_json_lines(json_log: io.StringIO) -> None:
    warnings.warn("something deprecated", UserWarning, stacklevel=1)
    logging.getLogger("grpc._cython").error("a library says %s", "hello")
    logging.getLogger("chatty").debug("not shown at info")
    lines = _lines(json_log)
    assert [x["event"] for x in lines] == ["python.log", "python.log"]
    assert lines[0]["logger"] == "py.warnings" and "something deprecated" in lines[0]["message"]
    assert lines[1] == {**lines[1], "logger": "grpc._cython", "message": "a library says hello",
                        "level": "error"}


def test_a_logger_made_before_a_level_change_follows_it(json_log: io.StringIO) -> None:
    log = logs.get_logger("sip")                 # components keep their logger for life
    log.debug("hidden")
    logs.configure_logging("debug", "json", stream=json_log)    # what SIGHUP does
    log.debug("shown")
    assert logs.debug_enabled()
    assert [x["event"] for x in _lines(json_log)] == ["shown"]


def test_exceptions_python_would_print_as_text_become_json_lines(json_log: io.StringIO) -> None:
    class Finalizer:
        def __del__(self) -> None:
            raise OSError("close failed in __del__")

    Finalizer()                                            # "Exception ignored in: ..."
    worker = threading.Thread(target=lambda: 1 / 0, name="worker")
    worker.start()
    worker.join()
    lines = _lines(json_log)
    assert [x["event"] for x in lines] == ["python.unraisable", "python.thread_exception"]
    assert "OSError: close failed" in lines[0]["error"] and "Finalizer" in lines[0]["object"]
    assert lines[1]["thread"] == "worker" and "ZeroDivisionError" in lines[1]["error"]
