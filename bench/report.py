"""Where a benchmark's numbers go: ``bench/results/<name>.json`` and a short table on stdout."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from gateway import __version__ as gateway_version

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def sipp_version() -> str | None:
    binary = shutil.which("sipp")
    if binary is None:
        return None
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10,
                         check=False).stdout
    words = [w for w in out.split() if w.startswith("v") and w[1:2].isdigit()]
    return words[0] if words else out.strip() or None


def triton_version(http_url: str | None) -> str | None:
    """The server's version from its HTTP metadata endpoint (``GET /v2``)."""
    if http_url is None:
        return None
    try:
        with urllib.request.urlopen(http_url + "/v2", timeout=5) as reply:
            version = json.loads(reply.read()).get("version")
    except (OSError, ValueError):
        return None
    return str(version) if version is not None else None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def environment(triton_http_url: str | None = None) -> dict[str, Any]:
    """Host and versions: what a reader needs to compare two result files."""
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gateway": gateway_version,
        "git_commit": _git_commit(),
        "triton": triton_version(triton_http_url),
        "tritonclient": _package_version("tritonclient"),
        "sipp": sipp_version(),
        "pjsua2": _package_version("pjsua2-python"),
    }


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_result(name: str, document: Mapping[str, Any], out_dir: Path = RESULTS_DIR) -> Path:
    """Write atomically (``.tmp`` then rename), so a killed run leaves the old file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain text table (also valid Markdown) of ``columns`` from ``rows``."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |"
              for r in cells]
    return "\n".join(lines)


def show(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    print(f"\n{title}\n{table(rows, columns)}", file=sys.stdout, flush=True)
