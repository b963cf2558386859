"""Which processors the event stage runs, built from the config.

The stage itself (:mod:`gateway.events.processing`) knows nothing of what runs in it; this
module is the one place that turns the config into the ordered list: PII redaction first
(:mod:`gateway.redaction`), then conversation analytics (issue 17), which must see redacted
text.

Layer: pure core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from gateway.analytics.engine import RulesProcessor
from gateway.analytics.sentiment import SentimentScorer
from gateway.analytics.summary import Summarizer
from gateway.analytics.talk import TalkStatistics
from gateway.config import GatewayConfig
from gateway.events.processing import Processor
from gateway.redaction.processor import Redactor

P = TypeVar("P")

PROCESSOR_CONFIG_KEYS: tuple[str, ...] = ("redaction", "statistics", "analytics")
"""Config sections :func:`build_processors` reads; a SIGHUP that changes one of them
rebuilds the processors (they must also be live keys in ``gateway.config``)."""


def reconfigures_processors(changed: Sequence[str]) -> bool:
    """Whether a reload that changed these config keys must rebuild the processors."""
    return any(key == section or key.startswith(section + ".")
               for key in changed for section in PROCESSOR_CONFIG_KEYS)


def build_processors(config: GatewayConfig,
                     previous: Sequence[Processor] = ()) -> list[Processor]:
    """The ordered processors for a config: PII redaction first (``[redaction]``), then
    conversation analytics (which must see redacted text; issue 17).

    ``previous`` are the processors running now when a SIGHUP rebuilds them: the new
    redactor takes over the old one's per-call state (held finals, open context windows,
    secure mode), so a reload in the middle of a card number loses nothing."""

    processors: list[Processor] = []
    if config.redaction.enabled:
        old = _previous(previous, Redactor)
        processors.append(Redactor(config.redaction, old))
    if config.statistics.enabled:      # talk statistics and dead air ([statistics])
        talk = _previous(previous, TalkStatistics)
        processors.append(TalkStatistics(config.statistics, talk))
    if config.analytics.enabled and config.analytics.rules:   # phrase rules, redacted text
        rules = _previous(previous, RulesProcessor)
        processors.append(RulesProcessor(config.analytics, rules))
    if config.analytics.sentiment:     # a signal processor, before the summary collects it
        processors.append(SentimentScorer())
    if config.analytics.summary:       # last: it folds what every processor before it emitted
        summary = _previous(previous, Summarizer)
        processors.append(Summarizer(summary))
    return processors


def _previous(previous: Sequence[Processor], kind: type[P]) -> P | None:
    """The running processor of this kind, whose per-call state the new one takes over."""
    return next((p for p in previous if isinstance(p, kind)), None)
