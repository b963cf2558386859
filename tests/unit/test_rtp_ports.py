"""RTP port allocation (gateway.media.ports): even ports only, RTCP's port+1 inside the
range, round robin so a freed port rests, exhaustion is an exception (a 503), a port held
by another process goes to the back of the queue."""

from __future__ import annotations

import pytest

from gateway.media.ports import PortAllocator, PortsExhausted


def test_pairs_are_even_and_rtcp_stays_inside_the_range() -> None:
    ports = PortAllocator(10000, 10007)
    got = [ports.allocate() for _ in range(ports.free)]
    assert got == [10000, 10002, 10004, 10006]
    assert all(p % 2 == 0 and p + 1 <= 10007 for p in got)


def test_the_last_even_port_is_left_out_when_its_rtcp_port_is_not_in_range() -> None:
    ports = PortAllocator(10000, 10006)
    assert [ports.allocate() for _ in range(ports.free)] == [10000, 10002, 10004]


@pytest.mark.parametrize(("low", "high"), [(10001, 10010), (10000, 10000), (10000, 9000)])
def test_bad_ranges_are_refused(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="bad RTP port range"):
        PortAllocator(low, high)


def test_exhaustion_raises_and_a_release_makes_room_again() -> None:
    ports = PortAllocator(20000, 20003)
    first, second = ports.allocate(), ports.allocate()
    assert ports.free == 0
    with pytest.raises(PortsExhausted):
        ports.allocate()
    ports.release(first)
    assert ports.free == 1 and ports.allocate() == first
    assert second == 20002


def test_round_robin_a_freed_port_is_reused_last() -> None:
    ports = PortAllocator(30000, 30007)
    a = ports.allocate()
    ports.release(a)
    assert [ports.allocate() for _ in range(4)] == [30002, 30004, 30006, a]


def test_double_or_unknown_release_does_not_duplicate_a_port() -> None:
    ports = PortAllocator(40000, 40003)
    a = ports.allocate()
    ports.release(a)
    ports.release(a)                  # a second hangup path releasing again
    ports.release(40002)              # never allocated
    ports.release(12345)              # outside the range
    assert ports.free == 2
    assert sorted(ports.allocate() for _ in range(2)) == [40000, 40002]
    with pytest.raises(PortsExhausted):
        ports.allocate()


def test_a_port_held_elsewhere_is_skipped_to_the_back() -> None:
    ports = PortAllocator(50000, 50005)
    held = ports.allocate()
    ports.skip(held)                  # bind failed: another process has it
    assert [ports.allocate(), ports.allocate(), ports.allocate()] == [50002, 50004, held]
