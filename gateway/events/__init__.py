"""Gateway events: typed event definitions, the processing stage, the bus and its sinks.

Layer: package. ``types``, ``processing`` and ``schema`` are pure cores (no asyncio,
no I/O, no clock reads); ``bus`` and ``sinks`` are the asyncio shell.

The shell names (``EventBus``, ``build_sinks``, ``sign_body`` ...) resolve lazily here,
so ``from gateway.events import EventBus`` keeps working while importing a pure module
(``gateway.events.types``) does not load aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.events.bus import EventBus as EventBus
    from gateway.events.sinks import build_sinks as build_sinks
    from gateway.events.sinks import sign_body as sign_body

_SHELL = {"EventBus": "gateway.events.bus", "build_sinks": "gateway.events.sinks",
          "sign_body": "gateway.events.sinks"}


def __getattr__(name: str) -> Any:
    module = _SHELL.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.events' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
