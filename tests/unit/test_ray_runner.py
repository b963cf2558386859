"""The Ray runner's pure helpers, and Ray staying out of the daemon: ``ray`` is imported only
inside functions of gateway/batch/ray_runner.py, which no module imports at its top level."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.batch.ray_runner import (
    LOCAL,
    RayOptions,
    head_endpoint,
    init_kwargs,
    pool_shape,
)

ROOT = Path(__file__).resolve().parents[2]
RUNNER = "gateway/batch/ray_runner.py"


@pytest.mark.parametrize(("files", "concurrency", "cpus", "workers", "expected"), [
    (10, 16, 2, None, (2, 8)),       # one actor per cluster CPU, the files at once spread
    (10, 4, 8, None, (4, 1)),        # never more actors than files at once
    (3, 16, 8, None, (3, 6)),        # ... nor than files
    (10, 5, 2, None, (2, 3)),        # rounded up: at least `concurrency` in flight
    (10, 16, 2, 4, (4, 4)),          # --ray-workers
    (0, 4, 2, None, (1, 4)),         # no files: one actor (it gets nothing)
    (10, 1, 0, None, (1, 1)),        # a cluster reporting no CPU
])
def test_pool_shape(files: int, concurrency: int, cpus: int, workers: int | None,
                    expected: tuple[int, int]) -> None:
    assert pool_shape(files, concurrency, cpus, workers) == expected


def test_init_kwargs_local_starts_a_bounded_cluster() -> None:
    kwargs = init_kwargs(RayOptions(LOCAL, local_cpus=2, local_object_store_bytes=80 << 20))
    assert kwargs == {"num_cpus": 2, "object_store_memory": 80 << 20,
                      "include_dashboard": False, "logging_level": logging.WARNING}


def test_init_kwargs_joins_a_cluster_at_its_address() -> None:
    assert init_kwargs(RayOptions("ray://head:10001")) == {
        "address": "ray://head:10001", "logging_level": logging.WARNING}
    assert init_kwargs(RayOptions("auto"))["address"] == "auto"


@pytest.mark.parametrize(("address", "expected"), [
    ("local", None), ("auto", None), ("ray://head:10001", ("head", 10001)),
    ("10.1.2.3:6379", ("10.1.2.3", 6379)), ("ray://[::1]:10001", ("::1", 10001)),
    ("head", None), ("ray://head:port", None),
])
def test_head_endpoint(address: str, expected: tuple[str, int] | None) -> None:
    assert head_endpoint(address) == expected


def test_options_are_checked() -> None:
    for bad in ({"address": ""}, {"workers": 0}, {"local_cpus": 0}):
        with pytest.raises(ValueError):
            RayOptions(**bad)


def _top_level_imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _all_imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_ray_is_imported_only_lazily_by_the_ray_runner() -> None:
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        ray_names = {n for n in _all_imports(tree) if n == "ray" or n.startswith("ray.")}
        if rel != RUNNER:
            assert not ray_names, f"{rel} imports {ray_names}: only {RUNNER} may"
        top = _top_level_imports(tree)
        assert not {n for n in top if n == "ray" or n.startswith("ray.")}, \
            f"{rel} imports ray at its top level: import it inside the function"
        assert "gateway.batch.ray_runner" not in top, \
            f"{rel} imports the Ray runner at its top level: import it where --ray is used"


def test_the_daemon_and_the_command_line_load_without_ray() -> None:
    code = ("import sys, gateway.server, gateway.http_api, gateway.cli, gateway.batch.task; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
