"""The layers of ``gateway/``, checked on the source with ``ast`` (nothing is imported).

Two kinds of module:

- **pure core**: no I/O, no threads, no logging, no clock reads (time is a parameter); it
  imports only pure modules of its own package and the foundation's pure modules
  (``gateway``, ``gateway.config``). Unit tests drive it with bytes and a fake clock.
- **shell**: sockets, asyncio, files, logging, the Triton clients, the process.

And four tiers; a module imports only modules of its own tier or a lower one:

0 foundation        config, logs, metrics, sdnotify, events/ (types, processing, bus, sinks)
1 protocols, media  sip/, media/, asr/, tts/, triton_health
2 calls             calls/ (lifecycle, commands, registry, conversation, timeline, voice),
                    channels, bot, batch/ (batch transcription: files, jobs)
3 process           server, http_api, http_auth, cli, probe, tail, triton_launcher ...

On top: no import cycles between packages (``gateway.sip``, ``gateway.media`` ...) and
top-level modules, and every module's docstring names its layer (``Layer: pure core.``,
``Layer: shell.``, ``Layer: package.`` for an ``__init__``). A new module must be placed in
:data:`TIERS` (and in :data:`PURE` if it is one) before this passes.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gateway"

PURE: frozenset[str] = frozenset({
    "gateway/config.py",
    "gateway/channels.py",
    "gateway/cli_help.py",
    "gateway/http_auth.py",
    "gateway/asr/audioqueue.py",
    "gateway/calls/commands.py",
    "gateway/calls/lifecycle.py",
    "gateway/asr/contract.py",
    "gateway/events/processing.py",
    "gateway/events/schema.py",
    "gateway/events/types.py",
    "gateway/processors.py",
    *(f"gateway/redaction/{m}.py" for m in ("entities", "numbers", "detect", "processor")),
    *(f"gateway/analytics/{m}.py" for m in ("summary", "sentiment")),
    *(f"gateway/analytics/{m}.py" for m in ("text", "rules", "engine")),
    *(f"gateway/analytics/{m}.py" for m in ("activity", "talk")),
    *(f"gateway/batch/{m}.py" for m in ("formats", "outputs")),
    "gateway/batch/jobspec.py",
    "gateway/consent/policy.py",
    *(f"gateway/dataset/{m}.py" for m in (
        "card", "model", "normalize", "review", "segment", "speakers", "split")),
    *(f"gateway/media/{m}.py" for m in (
        "dtmf", "g711", "jitter", "leg", "masking", "packetizer", "ports", "resample", "rtcp",
        "rtp", "rtpstats", "timeout", "vad")),
    *(f"gateway/sip/{m}.py" for m in (
        "admission", "callside", "core", "dialog", "digest", "liveness", "message",
        "multipart", "registration", "sdp", "siprec", "trace", "transaction")),
})

TIERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("gateway/__init__.py", "gateway/config.py", "gateway/logs.py",
                    "gateway/metrics.py", "gateway/sdnotify.py", "gateway/events/",
                    "gateway/sqlite_store.py",
                    "gateway/processors.py",
                    "gateway/redaction/", "gateway/analytics/")),
    ("protocols and media", ("gateway/sip/", "gateway/media/", "gateway/asr/", "gateway/tts/",
                             "gateway/triton_health.py")),
    ("calls", ("gateway/calls/", "gateway/channels.py", "gateway/bot.py",
               "gateway/batch/", "gateway/dataset/", "gateway/consent/")),
    ("process", ("gateway/server.py", "gateway/http_api.py", "gateway/http_auth.py",
                 "gateway/cli.py", "gateway/cli_help.py", "gateway/__main__.py",
                 "gateway/probe.py", "gateway/probe_phone.py", "gateway/pjsua_agent.py",
                 "gateway/tail.py", "gateway/transcribe.py",
                 "gateway/triton_launcher.py")),
)

# What a pure module may import of the project besides its own package.
FOUNDATION_PURE = frozenset({"gateway", "gateway.config", "gateway.events.types",
                             "gateway.events.processing"})
# ... and the pure packages of the foundation, whole (the event stage builds the redactor).
FOUNDATION_PURE_PACKAGES = ("gateway.redaction", "gateway.analytics")

# Top-level names a pure module must not import (I/O, threads, logging, clocks, the heavy
# network stacks). ``random``/``secrets`` are allowed: randomness is not a clock, and the
# cores take a random source as a parameter where tests need to fix it.
FORBIDDEN_IN_PURE = frozenset({
    "asyncio", "socket", "ssl", "selectors", "select", "signal", "subprocess", "threading",
    "multiprocessing", "concurrent", "time", "logging", "structlog", "grpc", "tritonclient",
    "aiohttp", "aiortc", "av", "uvloop", "prometheus_client", "urllib3", "requests",
    "http", "urllib.request", "pjsua2",
})

# Calls that read a clock: ``<module>.<attr>`` as written in the source.
CLOCK_CALLS = frozenset({
    "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns", "time.perf_counter",
    "time.perf_counter_ns", "time.process_time", "time.thread_time", "datetime.now",
    "datetime.utcnow", "datetime.today", "date.today", "datetime.datetime.now",
    "datetime.datetime.utcnow", "datetime.date.today", "loop.time", "self._loop.time",
    "self.loop.time",
})
LOOP_GETTERS = frozenset({"asyncio.get_running_loop", "asyncio.get_event_loop",
                          "get_running_loop", "get_event_loop"})

# Import edges that break a rule above but stay for now, each with its reason.
# (Empty: the known ones were fixed. Add "importer -> imported": "why" only with a reason.)
ALLOWED_VIOLATIONS: dict[str, str] = {}

# Forbidden imports of a pure module that stay for now: "path: top-level name" -> why.
# (Empty. Example entry: "gateway/media/x.py: aiohttp": "why it must stay for now".)
ALLOWED_EXTERNAL: dict[str, str] = {}

LAYER_TAG = re.compile(r"^Layer: (pure core|shell|package)\b", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Module:
    path: str          # "gateway/sip/core.py"
    name: str          # "gateway.sip.core"
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package the module lives in ("gateway.sip"; "gateway" for top-level ones)."""
        return self.name if self.path.endswith("__init__.py") else self.name.rpartition(".")[0]

    @property
    def unit(self) -> str:
        """What the cycle check looks at: a sub-package as a whole, or a top-level module."""
        parts = self.name.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else self.name


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@cache
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        found[_module_name(path)] = Module(rel, _module_name(path),
                                           ast.parse(path.read_text(), filename=rel))
    return found


def _imported_names(module: Module) -> Iterator[tuple[str, int]]:
    """Every name imported anywhere in the module (functions, TYPE_CHECKING blocks too)."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def project_imports(module: Module) -> set[str]:
    """Project modules this module imports (``from pkg import mod`` resolves to the module)."""
    known = modules()
    out = set()
    for name, _line in _imported_names(module):
        if not name.startswith("gateway"):
            continue
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module.name:
            out.add(name)
    return out


def _external_imports(module: Module) -> Iterator[tuple[str, int]]:
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def tier_of(path: str) -> int | None:
    matches = [i for i, (_name, members) in enumerate(TIERS)
               for member in members
               if path == member or (member.endswith("/") and path.startswith(member))]
    return matches[0] if len(set(matches)) == 1 else None


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def clock_reads(module: Module) -> list[str]:
    reads = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in CLOCK_CALLS:
                reads.append(f"{module.path}:{node.lineno} {name}()")
            elif (isinstance(node.func, ast.Attribute) and node.func.attr == "time"
                  and isinstance(node.func.value, ast.Call)
                  and _dotted(node.func.value.func) in LOOP_GETTERS):
                reads.append(f"{module.path}:{node.lineno} get_*_loop().time()")
    return reads


def _pure(module: Module) -> bool:
    return module.path in PURE


def _edge_allowed(importer: Module, imported: str) -> bool:
    return f"{importer.name} -> {imported}" in ALLOWED_VIOLATIONS


# --------------------------------------------------------------------------- placement

def test_every_module_is_in_exactly_one_tier() -> None:
    unplaced = [m.path for m in modules().values() if tier_of(m.path) is None]
    assert not unplaced, f"place these in TIERS (exactly one tier each): {unplaced}"


def test_pure_list_names_existing_modules() -> None:
    paths = {m.path for m in modules().values()}
    assert not PURE - paths, f"PURE lists modules that do not exist: {sorted(PURE - paths)}"


def test_every_module_docstring_names_its_layer() -> None:
    wrong = []
    for module in modules().values():
        doc = ast.get_docstring(module.tree) or ""
        tag = LAYER_TAG.search(doc)
        expected = ("package" if module.path.endswith("__init__.py")
                    else "pure core" if _pure(module) else "shell")
        if tag is None or tag.group(1) != expected:
            found = tag.group(1) if tag else "no 'Layer: ...' line"
            wrong.append(f"{module.path}: expected 'Layer: {expected}', found {found}")
    assert not wrong, "\n".join(wrong)


# --------------------------------------------------------------------------- pure cores

@pytest.mark.parametrize("path", sorted(PURE))
def test_pure_module_imports_no_io_threads_logging_or_clock(path: str) -> None:
    module = next(m for m in modules().values() if m.path == path)
    bad = sorted({f"{path}:{line} imports {name}" for name, line in _external_imports(module)
                  if (name.split(".")[0] in FORBIDDEN_IN_PURE or name in FORBIDDEN_IN_PURE)
                  and f"{path}: {name.split('.')[0]}" not in ALLOWED_EXTERNAL})
    assert not bad, "\n".join(bad)
    assert not clock_reads(module), "\n".join(clock_reads(module))


@pytest.mark.parametrize("path", sorted(PURE))
def test_pure_module_imports_only_pure_modules_of_its_package_or_the_foundation(
        path: str) -> None:
    known = modules()
    module = next(m for m in known.values() if m.path == path)
    bad = []
    for name in sorted(project_imports(module)):
        target = known[name]
        if _edge_allowed(module, name):
            continue
        if not (_pure(target) or target.path.endswith("__init__.py")):
            bad.append(f"{name} is a shell")
        elif (target.package != module.package and name not in FOUNDATION_PURE
              and not name.startswith(FOUNDATION_PURE_PACKAGES)):
            bad.append(f"{name} is outside {module.package} and not the foundation")
    assert not bad, f"{path}: " + "; ".join(bad)


# --------------------------------------------------------------------------- tiers

def test_no_module_imports_a_higher_tier() -> None:
    known = modules()
    bad = []
    for module in known.values():
        mine = tier_of(module.path)
        for name in sorted(project_imports(module)):
            theirs = tier_of(known[name].path)
            if (mine is not None and theirs is not None and theirs > mine
                    and not _edge_allowed(module, name)):
                bad.append(f"{module.name} ({TIERS[mine][0]}) imports {name} "
                           f"({TIERS[theirs][0]})")
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_packages_and_top_level_modules() -> None:
    known = modules()
    graph: dict[str, set[str]] = {}
    for module in known.values():
        for name in project_imports(module):
            if not _edge_allowed(module, name) and known[name].unit != module.unit:
                graph.setdefault(module.unit, set()).add(known[name].unit)
    assert not _cycles(graph), f"import cycles between packages/modules: {_cycles(graph)}"


def test_no_import_cycles_between_modules() -> None:
    known = modules()
    graph = {m.name: {n for n in project_imports(m) if not _edge_allowed(m, n)}
             for m in known.values()}
    assert not _cycles(graph), f"import cycles between modules: {_cycles(graph)}"


# --------------------------------------------------------------------------- the checker

def _fake(path: str, source: str) -> Module:
    name = path.removesuffix(".py").replace("/", ".")
    return Module(path, name, ast.parse(source))


def test_checker_sees_imports_everywhere_and_clock_reads() -> None:
    source = ("import typing\nif typing.TYPE_CHECKING:\n    import asyncio\n"
              "def f():\n    from gateway.calls import CallManager\n    return time.monotonic()\n"
              "def g(loop):\n    return loop.time() + asyncio.get_running_loop().time()\n"
              "def h():\n    return datetime.now()\n")
    module = _fake("gateway/media/fake.py", source)
    assert "asyncio" in {n for n, _ in _external_imports(module)}
    assert project_imports(module) == {"gateway.calls"}
    assert sorted(r.split(" ")[1] for r in clock_reads(module)) == [
        "datetime.now()", "get_*_loop().time()", "loop.time()", "time.monotonic()"]


def test_allow_lists_name_only_live_violations() -> None:
    """An entry whose violation is gone must be removed, so the lists never hide new ones."""
    known = modules()
    for entry in ALLOWED_EXTERNAL:
        path, _sep, name = entry.partition(": ")
        module = next(m for m in known.values() if m.path == path)
        assert any(n.split(".")[0] == name for n, _ in _external_imports(module)), entry
    for entry in ALLOWED_VIOLATIONS:
        importer, _sep, imported = entry.partition(" -> ")
        assert imported in project_imports(known[importer]), entry


def test_checker_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
