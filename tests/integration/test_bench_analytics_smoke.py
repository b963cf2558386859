"""``python -m bench analytics`` end to end as a user runs it: the command exits 0, prints
its table and writes ``analytics.json`` with the time per final of every final of the
corpus, for both cases, and the rule outcomes it produced (so the rules did match)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.redaction_corpus.corpus import load

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120
REPEATS = 2
RULES = 120


def test_bench_analytics_writes_its_result(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench", "--results-dir", str(tmp_path / "results"),
           "--workdir", str(tmp_path / "work"), "analytics", "--repeats", str(REPEATS),
           "--rules", str(RULES)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert f"analytics: time per final in process(), {RULES} rules" in done.stdout
    assert "goals:" in done.stdout
    doc: dict[str, Any] = json.loads((tmp_path / "results" / "analytics.json").read_text())
    assert doc["benchmark"] == "analytics" and doc["parameters"]["rules"] == RULES
    finals = sum(len(item.turns) for item in load())
    cases = doc["results"]["cases"]
    assert set(cases) == {"fuzzy 0.8", "exact"}
    for case in cases.values():
        assert case["rules"] == RULES and case["finals_per_pass"] == finals
        assert case["first_pass"]["finals"] == finals
        assert case["later_passes"]["finals"] == finals * (REPEATS - 1)
        lat = case["later_passes"]
        assert 0 < lat["p50_us"] <= lat["p99_us"] <= lat["max_us"]
        outcomes = case["outcomes_per_pass"]
        assert outcomes.get("category.matched", 0) > 0
        assert outcomes.get("compliance.passed", 0) > 0
        assert outcomes.get("compliance.missed", 0) > 0
    assert "p99_under_1ms" in doc["results"]["goals"]
