"""``python -m bench redaction`` (text mode) end to end as a user runs it: the command
exits 0, prints its tables and writes ``redaction.json`` with a row per entity of the
corpus, the PII-free precision and the time per final, over the whole corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.redaction_corpus.corpus import load

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120
REPEATS = 2


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("bench-redaction")
    cmd = [sys.executable, "-m", "bench", "--results-dir", str(tmp / "results"),
           "--workdir", str(tmp / "work"), "redaction", "--repeats", str(REPEATS)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout, json.loads((tmp / "results" / "redaction.json").read_text())


def test_tables_are_printed(bench_run: tuple[str, dict[str, Any]]) -> None:
    stdout, _doc = bench_run
    for title in ("recall per entity", "precision on PII-free items", "time added per final"):
        assert f"redaction (text): {title}" in stdout, stdout
    assert "goals:" in stdout


def test_result_covers_the_whole_corpus(bench_run: tuple[str, dict[str, Any]]) -> None:
    _stdout, doc = bench_run
    items = load()
    text = doc["text"]
    assert doc["benchmark"] == "redaction" and doc["parameters"]["repeats"] == REPEATS
    assert doc["environment"]["cores"] and doc["environment"]["python"]
    assert text["items"] == len(items)
    assert text["labels"] == sum(len(i.labels) for i in items)
    entities = {label.entity for i in items for label in i.labels}
    assert {row["entity"] for row in text["entities"]} == entities
    assert sum(row["labels"] for row in text["entities"]) == text["labels"]
    assert text["clean"]["items"] == sum(i.kind == "clean" for i in items)
    assert text["redaction_applied_events"] > 0


def test_time_per_final_is_measured_over_every_pass(bench_run: tuple[str, dict[str, Any]]
                                                    ) -> None:
    _stdout, doc = bench_run
    lat = doc["text"]["latency_per_final"]
    assert lat["finals"] == REPEATS * sum(len(i.turns) for i in load())
    assert 0 < lat["p50_us"] <= lat["p99_us"] <= lat["max_us"]
    assert set(doc["text"]["goals"]) >= {"card_recall_100pct", "precision_95pct",
                                         "p99_under_1ms"}
