"""Who may place calls: trunk source-IP allow-list and a per-source INVITE rate limit (pure).

Layer: pure core.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_TRACKED_SOURCES = 10_000


def normalize_ip(host: str) -> str:
    """'::ffff:10.0.0.1' (dual-stack sockets) -> '10.0.0.1'; other text unchanged."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def allowed(host: str, networks: Sequence[IPNetwork]) -> bool:
    """True when the allow-list is empty or ``host`` is inside one of the networks."""
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(normalize_ip(host))
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token bucket per source: ``rate_per_s`` sustained, bursts up to ``burst``."""

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, source: str, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_SOURCES:
                self._evict(now)
            bucket = self._buckets[source] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate_per_s)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _evict(self, now: float) -> None:
        refill_s = self.burst / self.rate_per_s
        stale = [k for k, b in self._buckets.items() if now - b.stamp > refill_s]
        for key in stale or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[key]
