"""Prometheus text exposition -> histograms, and quantiles of a histogram's growth (pure).

``quantile`` interpolates linearly inside the bucket that holds the rank, the way
PromQL's ``histogram_quantile`` does; ranks in the ``+Inf`` bucket answer the highest
finite bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+"
                     r"(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


class MetricsTextError(ValueError):
    """The exposition text lacks the histogram asked for, or has an unreadable sample."""


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative bucket counts ``(upper_bound_s, count)`` in ascending bound order."""

    buckets: tuple[tuple[float, float], ...]
    count: float
    sum: float


def _labels(raw: str | None) -> dict[str, str]:
    return {m.group("key"): m.group("value") for m in _LABEL.finditer(raw or "")}


def _value(raw: str, line: str) -> float:
    try:
        return float(raw)
    except ValueError as exc:
        raise MetricsTextError(f"unreadable sample value in {line!r}") from exc


def _matches(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def parse_histogram(text: str, name: str, labels: Mapping[str, str] | None = None
                    ) -> Histogram:
    """The histogram ``name`` (series whose labels include ``labels``), summed over the rest."""
    wanted = dict(labels or {})
    buckets: dict[float, float] = {}
    totals = {"count": 0.0, "sum": 0.0}
    seen = False
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or not m.group("name").startswith(name):
            continue
        suffix = m.group("name")[len(name):]
        found = _labels(m.group("labels"))
        if suffix not in ("_bucket", "_count", "_sum") or not _matches(found, wanted):
            continue
        seen = True
        value = _value(m.group("value"), line)
        if suffix == "_bucket":
            bound = float(found.get("le", "nan"))
            buckets[bound] = buckets.get(bound, 0.0) + value
        else:
            totals[suffix[1:]] += value
    if not seen:
        raise MetricsTextError(f"no histogram {name!r} with labels {wanted} in the metrics text")
    return Histogram(tuple(sorted(buckets.items())), totals["count"], totals["sum"])


def growth(after: Histogram, before: Histogram) -> Histogram:
    """What was observed between two scrapes of the same histogram."""
    old = dict(before.buckets)
    buckets = tuple((b, c - old.get(b, 0.0)) for b, c in after.buckets)
    return Histogram(buckets, after.count - before.count, after.sum - before.sum)


def quantile(hist: Histogram, q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``hist``; None when it holds no observations."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    total = hist.buckets[-1][1] if hist.buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in hist.buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound
