"""Call admission (gateway.sip.admission): the trunk allow-list with IPv4-mapped IPv6
sources, and the per-source INVITE token bucket with time as a parameter."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.sip import admission
from gateway.sip.admission import RateLimiter, allowed, normalize_ip

NETS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]


@pytest.mark.parametrize(("host", "want"), [
    ("::ffff:10.1.2.3", "10.1.2.3"),
    ("10.1.2.3", "10.1.2.3"),
    ("2001:DB8::1", "2001:db8::1"),
    ("fe80::1%eth0", "fe80::1"),
    ("sip.example.com", "sip.example.com"),
])
def test_normalize_ip(host: str, want: str) -> None:
    assert normalize_ip(host) == want


@pytest.mark.parametrize(("host", "ok"), [
    ("10.9.8.7", True), ("::ffff:10.9.8.7", True), ("11.0.0.1", False),
    ("2001:db8:1::5", True), ("2001:db9::5", False), ("not-an-ip", False),
    ("::ffff:11.0.0.1", False),
])
def test_allow_list(host: str, ok: bool) -> None:
    assert allowed(host, NETS) is ok


def test_empty_allow_list_admits_everyone() -> None:
    assert allowed("192.0.2.1", []) and allowed("anything", [])


def test_burst_then_sustained_rate() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3.0)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("a", 0.25) is False           # half a token refilled
    assert limiter.allow("a", 0.5) is True              # one token after 0.5 s at 2/s
    assert limiter.allow("a", 0.5) is False


def test_refill_is_capped_at_the_burst() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=2.0)
    assert limiter.allow("a", 0.0)
    results = [limiter.allow("a", 1000.0) for _ in range(3)]   # long idle: only 2 tokens
    assert results == [True, True, False]


def test_sources_have_separate_buckets() -> None:
    limiter = RateLimiter(rate_per_s=1.0)
    assert limiter.burst == 1.0
    assert limiter.allow("a", 0.0) and not limiter.allow("a", 0.1)
    assert limiter.allow("b", 0.1)


def test_tracked_sources_are_bounded_stale_ones_evicted_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "MAX_TRACKED_SOURCES", 4)
    limiter = RateLimiter(rate_per_s=1.0, burst=1.0)
    for i in range(3):
        limiter.allow(f"old{i}", 0.0)
    limiter.allow("fresh", 10.0)
    limiter.allow("new", 10.5)                      # 4 tracked: the stale three go
    assert limiter.allow("fresh", 10.6) is False    # kept: its bucket is still empty
    assert len(limiter._buckets) == 2


def test_eviction_without_stale_sources_halves_the_table(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "MAX_TRACKED_SOURCES", 4)
    limiter = RateLimiter(rate_per_s=1.0, burst=1.0)
    for i in range(4):
        limiter.allow(f"s{i}", 0.0)
    limiter.allow("flood", 0.1)                     # nobody stale: oldest half evicted
    assert len(limiter._buckets) <= 4
    assert limiter.allow("s0", 0.2) is True         # evicted, so it starts with a full bucket
