"""Structured logging: JSON lines for journald/log shippers, console when on a TTY.

Log event names, not prose (``sip.registered``, ``call.answered``); bind context
(``call_id``, ``leg``, ``sip_call_id``) with ``structlog.contextvars`` or ``log.bind``.
"""

from __future__ import annotations

import logging
import sys
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


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """(Re)configure structlog; safe to call again on SIGHUP."""
    out = stream if stream is not None else sys.stdout
    json_output = fmt == "json" or (fmt == "auto" and not out.isatty())
    structlog.configure(
        processors=_processors(json_output),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """A bound logger carrying the component name."""
    return structlog.get_logger().bind(component=name)
