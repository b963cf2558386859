"""Microsoft Presidio's pattern recognizers on the redaction corpus (issue 16's library
question). Optional, not part of ``make``: presidio-analyzer is not a project dependency.

    python3 -m venv /tmp/presidio && /tmp/presidio/bin/pip install presidio-analyzer==2.2.366
    /tmp/presidio/bin/python bench/presidio_compare.py --gateway-python .venv/bin/python

Without presidio importable it says so and exits 0. What it measures, offline (no spaCy
model is installed or downloaded):

- **import cost** in a fresh interpreter (median of 5): seconds and RSS growth of
  importing presidio and building its recognizers, next to the gateway's own redactor
  (``gateway.redaction.processor`` + a ``Redactor``) in ``--gateway-python``;
- whether the recognizers run without spaCy: each ``PatternRecognizer.analyze(text,
  entities, nlp_artifacts=None)`` directly, and an ``AnalyzerEngine`` given a stub
  ``NlpEngine`` (the default engine loads, and if missing downloads, ``en_core_web_lg``);
- **recall** on the corpus labels it has recognizers for (card, ssn, email, phone, iban,
  routing, bank_account), each turn analysed alone (Presidio keeps no state across
  utterances), the found spans replaced by a tag and the value looked for with the
  corpus's leak check, at score thresholds 0 (anything found) and 0.5; split into
  numerals (``4111 1111 ...``, ``4,111, 111``) and spoken forms (digit words, "double",
  "forty one eleven", spelled e-mails); **precision** on the PII-free items; time per
  utterance.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.redaction_corpus.corpus import CorpusItem, Label, load  # noqa: E402
from tests.redaction_corpus.leaks import NUMBER_WORDS, leaks, tokens  # noqa: E402

ENTITIES = {"card": "CREDIT_CARD", "ssn": "US_SSN", "email": "EMAIL_ADDRESS",
            "phone": "PHONE_NUMBER", "iban": "IBAN_CODE", "routing": "ABA_ROUTING_NUMBER",
            "bank_account": "US_BANK_NUMBER"}
THRESHOLDS = (0.0, 0.5)
IMPORT_RUNS = 5

_MEASURE = """
import json, sys, time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
before, modules = rss(), len(sys.modules)
t0 = time.perf_counter()
{body}
print(json.dumps({{"s": time.perf_counter() - t0, "rss_mb": rss() - before,
                  "rss_total_mb": rss(), "modules": len(sys.modules) - modules}}))
"""
PRESIDIO_IMPORT = """
from presidio_analyzer.predefined_recognizers import (
    AbaRoutingRecognizer, CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
    PhoneRecognizer, UsBankRecognizer, UsSsnRecognizer)
recognizers = [c() for c in (CreditCardRecognizer, UsSsnRecognizer, EmailRecognizer,
               PhoneRecognizer, IbanRecognizer, AbaRoutingRecognizer, UsBankRecognizer)]
"""
GATEWAY_IMPORT = """
from gateway.config import RedactionConfig
from gateway.redaction.processor import Redactor
redactor = Redactor(RedactionConfig())
"""


def import_cost(python: str, body: str, cwd: Path) -> dict[str, Any] | str:
    """Median of fresh-interpreter runs (or the error when it does not import)."""
    runs = []
    for _ in range(IMPORT_RUNS):
        done = subprocess.run([python, "-c", _MEASURE.format(body=body)], cwd=cwd,
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {key: round(statistics.median(r[key] for r in runs), 3)
            for key in ("s", "rss_mb", "rss_total_mb", "modules")}


# --------------------------------------------------------------------------- presidio
def recognizers() -> list[Any]:
    from presidio_analyzer.predefined_recognizers import (  # type: ignore[import-not-found]
        AbaRoutingRecognizer,
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        PhoneRecognizer,
        UsBankRecognizer,
        UsSsnRecognizer,
    )
    return [c() for c in (CreditCardRecognizer, UsSsnRecognizer, EmailRecognizer,
                          PhoneRecognizer, IbanRecognizer, AbaRoutingRecognizer,
                          UsBankRecognizer)]


def stub_engine() -> Any:
    """An AnalyzerEngine whose NLP engine does nothing (no spaCy model)."""
    from presidio_analyzer import (  # type: ignore[import-not-found]
        AnalyzerEngine,
        RecognizerRegistry,
    )
    from presidio_analyzer.nlp_engine import (  # type: ignore[import-not-found]
        NlpArtifacts,
        NlpEngine,
    )

    class StubNlpEngine(NlpEngine):  # type: ignore[misc]
        def load(self) -> None:
            return None

        def is_loaded(self) -> bool:
            return True

        def process_text(self, text: str, language: str) -> Any:
            return NlpArtifacts(entities=[], tokens=[], tokens_indices=[], lemmas=[],
                                nlp_engine=self, language=language)

        def process_batch(self, texts: Any, language: str, batch_size: int = 1,
                          n_process: int = 1, **kwargs: Any) -> Any:
            return ((t, self.process_text(t, language)) for t in texts)

        def is_stopword(self, word: str, language: str) -> bool:
            return False

        def is_punct(self, word: str, language: str) -> bool:
            return False

        def get_supported_entities(self) -> list[str]:
            return []

        def get_supported_languages(self) -> list[str]:
            return ["en"]

    registry = RecognizerRegistry(recognizers=recognizers())
    return AnalyzerEngine(registry=registry, nlp_engine=StubNlpEngine(),
                          supported_languages=["en"])


def redact(text: str, results: Sequence[Any], threshold: float) -> str:
    spans = sorted(((r.start, r.end) for r in results if r.score >= threshold), reverse=True)
    out = text
    for start, end in spans:
        out = out[:start] + " [PII] " + out[end:]
    return out


def form_kind(label: Label) -> str:
    if label.form.startswith("garbled"):
        return "garbled"
    if label.form.startswith("whisper_commas"):
        return "whisper_commas"
    words = any(t in NUMBER_WORDS for t in tokens(label.surface))
    if label.entity == "email":
        return "spoken" if " at " in f" {label.surface.lower()} " else "written"
    return "spoken" if words else "numerals"


def evaluate(engine: Any, items: Sequence[CorpusItem]) -> dict[str, Any]:
    wanted = sorted(set(ENTITIES.values()))
    rows: dict[tuple[str, str, float], list[bool]] = {}
    clean_changed = {t: 0 for t in THRESHOLDS}
    times: list[float] = []
    cache: dict[tuple[str, int], list[Any]] = {}
    for item in items:
        for k, turn in enumerate(item.turns):
            t0 = time.perf_counter()
            cache[(item.id, k)] = engine.analyze(turn.text, language="en", entities=wanted)
            times.append(time.perf_counter() - t0)
    for item in items:
        if item.kind == "clean":
            for threshold in THRESHOLDS:
                if any(r.score >= threshold for k in range(len(item.turns))
                       for r in cache[(item.id, k)]):
                    clean_changed[threshold] += 1
        for label in item.labels:
            if label.entity not in ENTITIES:
                continue
            text = item.turns[label.turn].text
            for threshold in THRESHOLDS:
                kept = redact(text, cache[(item.id, label.turn)], threshold)
                split = "multi_turn_group" if label.form.startswith("group") else form_kind(
                    label)
                for key in ((label.entity, "all", threshold), (label.entity, split, threshold)):
                    rows.setdefault(key, []).append(not leaks(label.value, kept))
    n_clean = sum(i.kind == "clean" for i in items)
    ms = sorted(t * 1000 for t in times)
    return {
        "recall": [{"entity": e, "forms": f, "threshold": t, "labels": len(v),
                    "recall": round(sum(v) / len(v), 4)} for (e, f, t), v in sorted(rows.items())],
        "precision": [{"threshold": t, "clean_items": n_clean,
                       "precision": round(1 - clean_changed[t] / n_clean, 4)}
                      for t in THRESHOLDS],
        "ms_per_utterance": {"p50": round(ms[len(ms) // 2], 3),
                             "p99": round(ms[int(0.99 * len(ms))], 3), "utterances": len(ms)},
    }


def direct_check() -> dict[str, Any]:
    """The recognizers called directly, nlp_artifacts=None, on three written samples."""
    samples = {"CREDIT_CARD": "my card is 4111 1111 1111 1111",
               "US_SSN": "my social is 536-22-4719",
               "EMAIL_ADDRESS": "mail john.smith@example.com"}
    out = {}
    for rec in recognizers():
        entity = rec.supported_entities[0]
        if entity in samples:
            found = rec.analyze(samples[entity], [entity], nlp_artifacts=None)
            out[entity] = [(r.entity_type, round(r.score, 2)) for r in found]
    return out


def spacy_model_installed() -> bool:
    return any(importlib.util.find_spec(m) is not None
               for m in ("en_core_web_lg", "en_core_web_sm", "en_core_web_md"))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gateway-python", default=str(REPO / ".venv" / "bin" / "python"))
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = p.parse_args(argv)
    if importlib.util.find_spec("presidio_analyzer") is None:
        print("presidio_analyzer is not importable here: nothing measured (see the docstring)")
        return 0
    from importlib.metadata import version
    result: dict[str, Any] = {
        "presidio_analyzer": version("presidio-analyzer"), "spacy": version("spacy"),
        "spacy_model_installed": spacy_model_installed(),
        "import_presidio": import_cost(sys.executable, PRESIDIO_IMPORT, REPO),
        "import_gateway_redactor": import_cost(args.gateway_python, GATEWAY_IMPORT, REPO),
        "direct_analyze_without_nlp": direct_check(),
    }
    result.update(evaluate(stub_engine(), load()))
    print(json.dumps({k: v for k, v in result.items() if k != "recall"}, indent=2))
    for row in result["recall"]:
        if row["forms"] in ("all", "numerals", "whisper_commas", "spoken", "written",
                            "multi_turn_group", "garbled"):
            print(f"{row['entity']:13} {row['forms']:17} t>={row['threshold']:<4} "
                  f"{row['labels']:4} labels  recall {row['recall']:.3f}")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
