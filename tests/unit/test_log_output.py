"""LogOutput: a log write never raises; failures are counted and fall back (issue 13 item 1)."""

from __future__ import annotations

import io
import os
from typing import TextIO

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
