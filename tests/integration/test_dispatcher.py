"""Scale-out: several gateways behind a Kamailio dispatcher (``dispatcher.cfg.tmpl``).

Kamailio probes every gateway with OPTIONS each second; a gateway that drains
(SIGTERM) or is at ``sip.max_calls`` answers 503 and is taken out of the set,
and the calls it still carries continue through the proxy's Record-Route.
Everything runs on loopback: two real gateway daemons, Debian's Kamailio, sipp.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess
from tests.integration.conftest import require_binary
from tests.peers.kamailio import REPO_ROOT, Kamailio, KamailioConfigError, render_config
from tests.peers.ports import LOOPBACK, free_udp_port
from tests.peers.sipp import SCENARIO_DIR, SippBackground, SippResult, run_sipp
from tests.rawsip import UdpPeer, request, sdp_offer

pytestmark = pytest.mark.slow

DISPATCHER_TEMPLATE = REPO_ROOT / "sip_configs" / "kamailio" / "dispatcher.cfg.tmpl"
LIST_EXAMPLE = REPO_ROOT / "sip_configs" / "kamailio" / "dispatcher.list.example"
PING_INTERVAL_S = 1
NO_PROBES_S = 300  # a probe interval longer than the test: only failover can react
STATE_TIMEOUT_S = 10.0  # a few probe intervals plus tm's 3 s timer, with slack
TOKEN = "dispatch-t0ken"
NO_ASR: dict[str, Any] = {
    "triton": {"asr_enabled": False, "required_for_ready": False},
    "tts": {"enabled": False},
    "http": {"token": TOKEN},
}


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_binary("sipp")
    require_binary("kamailio")


# ------------------------------------------------------------------ helpers


def _config(sip: dict[str, Any]) -> dict[str, Any]:
    return {**NO_ASR, "sip": sip}


def _gateway_uri(gw: GatewayProcess) -> str:
    return f"sip:{LOOPBACK}:{gw.sip_port}"


def _listing_from_example(uris: Sequence[str]) -> str:
    """dispatcher.list.example with its destination URIs replaced by ``uris``.

    The other columns (set, flags, priority, attributes) stay as documented, so
    Kamailio itself checks the example's format.
    """
    rows = [
        line.split()
        for line in LIST_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(rows) == len(uris), f"{LIST_EXAMPLE} lists {len(rows)} gateways"
    lines = (" ".join([row[0], uri, *row[2:]]) for row, uri in zip(rows, uris, strict=True))
    return "".join(f"{line}\n" for line in lines)


@contextmanager
def _dispatcher(
    workdir: Path, gateways: Sequence[GatewayProcess], ping_interval_s: int = PING_INTERVAL_S
) -> Iterator[Kamailio]:
    """Kamailio with dispatcher.cfg.tmpl and a list of ``gateways`` in set 1."""
    workdir.mkdir(parents=True)
    listing = workdir / "dispatcher.list"
    listing.write_text(_listing_from_example([_gateway_uri(gw) for gw in gateways]))
    proxy = Kamailio(
        workdir,
        (),
        template=DISPATCHER_TEMPLATE,
        extra={"DISPATCHER_LIST": str(listing), "PING_INTERVAL_S": str(ping_interval_s)},
    )
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _wait_kamailio_log(proxy: Kamailio, needle: str, timeout_s: float = STATE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in proxy.log_tail(2000):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {needle!r} in kamailio log:\n{proxy.log_tail(60)}")


def _calls_via(proxy: Kamailio, media: Path, calls: int) -> SippResult:
    """``calls`` short PCMU calls through the dispatcher, one after the other."""
    return run_sipp(
        SCENARIO_DIR / "uac_basic.xml",
        f"{LOOPBACK}:{proxy.port}",
        local_port=free_udp_port(),
        calls=calls,
        rate=10,
        concurrent=1,
        timeout_s=20,
        media_file=media,
        extra=["-d", "200"],
    )


def _offered(gw: GatewayProcess) -> list[str]:
    """SIP Call-IDs of every INVITE the gateway took (``call.offered`` events)."""
    return [str(e["sip_call_id"]) for e in gw.events("call.offered")]


def _rejected(gw: GatewayProcess) -> list[int]:
    return [int(e["status"]) for e in gw.events("call.rejected")]


def _active_calls(gw: GatewayProcess) -> list[dict[str, Any]]:
    status, body = gw.http("/v1/calls", token=TOKEN)
    assert status == 200, body
    calls: list[dict[str, Any]] = json.loads(body)["calls"]
    return calls


def _direct_call(gw: GatewayProcess, peer: UdpPeer, call_id: str) -> str:
    """A call straight to ``gw`` (not via the proxy); returns the gateway's To tag."""
    invite = request(
        "INVITE", gw.sip_port, local_port=peer.port, call_id=call_id,
        headers="Content-Type: application/sdp", body=sdp_offer(peer.port + 2),
    )  # fmt: skip
    peer.send(invite, gw.sip_port)
    final = peer.replies()[-1]
    assert final.status == 200, final.raw
    to_tag = (final.header("To") or "").split("tag=")[1]
    ack = request("ACK", gw.sip_port, local_port=peer.port, call_id=call_id, to_tag=to_tag)
    peer.send(ack, gw.sip_port)
    return to_tag


def _hang_up_direct(gw: GatewayProcess, peer: UdpPeer, call_id: str, to_tag: str) -> None:
    bye = request("BYE", gw.sip_port, local_port=peer.port, call_id=call_id, to_tag=to_tag, cseq=2)
    peer.send(bye, gw.sip_port)
    assert peer.replies()[-1].status == 200


def _context(proxy: Kamailio, *results: SippResult) -> str:
    return "\n".join([*(r.describe() for r in results), "kamailio:", proxy.log_tail(60)])


# ------------------------------------------------------------------ tests


def test_extra_placeholders_cannot_replace_built_in_ones() -> None:
    template = DISPATCHER_TEMPLATE.read_text()
    values = {"DISPATCHER_LIST": "/x/dispatcher.list", "PING_INTERVAL_S": "7"}
    rendered = render_config(template, users=(), domain=LOOPBACK, port=5099, extra=values)
    assert 'modparam("dispatcher", "ds_ping_interval", 7)' in rendered
    assert 'modparam("dispatcher", "list_file", "/x/dispatcher.list")' in rendered
    with pytest.raises(KamailioConfigError, match="unknown placeholders"):
        render_config(template, users=(), domain=LOOPBACK, port=5099)
    with pytest.raises(KamailioConfigError, match="built in"):
        render_config(template, users=(), domain=LOOPBACK, port=5099, extra={**values, "PORT": "5"})


def test_calls_spread_then_a_draining_gateway_is_skipped_while_its_call_lives_on(
    gateway_factory: GatewayFactory, ulaw_media: Path, tmp_path: Path
) -> None:
    gw_a = gateway_factory(_config({"drain_grace_s": 15.0}))
    gw_b = gateway_factory(_config({}))
    with _dispatcher(tmp_path / "kamailio", [gw_a, gw_b]) as proxy:
        # Two long calls the gateways end themselves: round robin puts one on each.
        long_calls = SippBackground(
            SCENARIO_DIR / "uac_wait_bye.xml", f"{LOOPBACK}:{proxy.port}",
            local_port=free_udp_port(), calls=2, timeout_s=40, media_file=ulaw_media,
            workdir=tmp_path / "long",
        )  # fmt: skip
        with long_calls:
            a_call = gw_a.wait_log("call.answered", 10)
            b_call = gw_b.wait_log("call.answered", 10)

            # 1) short calls through the proxy are spread over both gateways
            before = (len(_offered(gw_a)), len(_offered(gw_b)))
            spread = _calls_via(proxy, ulaw_media, calls=4)
            assert spread.ok and spread.successful_calls == 4, _context(proxy, spread)
            assert len(_offered(gw_a)) > before[0], _context(proxy, spread)
            assert len(_offered(gw_b)) > before[1], _context(proxy, spread)

            # 2) SIGTERM A: its OPTIONS answer turns 503, the proxy marks it down
            gw_a.signal(signal.SIGTERM)
            gw_a.wait_log("gateway.draining")
            _wait_kamailio_log(proxy, f"gateway down: {_gateway_uri(gw_a)}")
            before = (len(_offered(gw_a)), len(_offered(gw_b)))
            drained = _calls_via(proxy, ulaw_media, calls=4)
            assert drained.ok and drained.successful_calls == 4, _context(proxy, drained)
            assert len(_offered(gw_a)) == before[0], _context(proxy, drained)
            assert len(_offered(gw_b)) == before[1] + 4, _context(proxy, drained)
            assert _rejected(gw_a) == [], "an INVITE reached the draining gateway"

            # the live call on A is still up; B's long call is ended by B
            assert [c["call_id"] for c in _active_calls(gw_a)] == [a_call["call_id"]]
            assert a_call["call_id"] not in [e["call_id"] for e in gw_a.events("call.ended")]
            status, _ = gw_b.http(f"/v1/calls/{b_call['call_id']}/hangup", "POST", TOKEN)
            assert status == 202

            # after the grace period A sends BYE (through the proxy) and exits 0
            assert gw_a.wait(30) == 0
            ended = gw_a.wait_log("call.ended", 1, lambda e: e["call_id"] == a_call["call_id"])
            assert ended["reason"] == "shutdown" and ended["by"] == "local", ended
            result = long_calls.wait()
        assert result.ok and result.successful_calls == 2, _context(proxy, result)
        _wait_kamailio_log(proxy, f"in-dialog BYE (call-id {a_call['sip_call_id']})", 1)
        _wait_kamailio_log(proxy, f"in-dialog BYE (call-id {b_call['sip_call_id']})", 1)


def test_a_gateway_at_max_calls_is_skipped_until_a_call_ends(
    gateway_factory: GatewayFactory, ulaw_media: Path, tmp_path: Path
) -> None:
    gw_a = gateway_factory(_config({"max_calls": 1}))
    gw_b = gateway_factory(_config({}))
    peer = UdpPeer()
    with _dispatcher(tmp_path / "kamailio", [gw_a, gw_b]) as proxy:
        to_tag = _direct_call(gw_a, peer, "fills-a")  # A is full: OPTIONS 503
        _wait_kamailio_log(proxy, f"gateway down: {_gateway_uri(gw_a)}")
        full = _calls_via(proxy, ulaw_media, calls=3)
        assert full.ok and full.successful_calls == 3, _context(proxy, full)
        assert _offered(gw_a) == ["fills-a"], _context(proxy, full)
        assert len(_offered(gw_b)) == 3 and _rejected(gw_a) == [], _context(proxy, full)

        _hang_up_direct(gw_a, peer, "fills-a", to_tag)  # A has room: OPTIONS 200 again
        _wait_kamailio_log(proxy, f"gateway up: {_gateway_uri(gw_a)}")
        again = _calls_via(proxy, ulaw_media, calls=2)
        assert again.ok and again.successful_calls == 2, _context(proxy, again)
        assert len(_offered(gw_a)) == 2, _context(proxy, again)  # round robin: one each
        assert len(_offered(gw_b)) == 4, _context(proxy, again)
    peer.close()


def test_failure_route_moves_a_refused_call_to_the_next_gateway(
    gateway_factory: GatewayFactory, ulaw_media: Path, tmp_path: Path
) -> None:
    gw_a = gateway_factory(_config({"max_calls": 1}))
    gw_b = gateway_factory(_config({}))
    peer = UdpPeer()
    to_tag = _direct_call(gw_a, peer, "fills-a")
    # No probe happens during this test: Kamailio learns about A only from the 503.
    with _dispatcher(tmp_path / "kamailio", [gw_a, gw_b], NO_PROBES_S) as proxy:
        result = _calls_via(proxy, ulaw_media, calls=4)
        context = _context(proxy, result)
        assert result.ok and result.successful_calls == 4, context
        assert _offered(gw_a) == ["fills-a"] and len(_offered(gw_b)) == 4, context
        assert 503 in _rejected(gw_a), context  # A refused, and the caller never saw it
        assert "failover of call-id" in proxy.log_tail(2000), context
        assert "gateway down:" in proxy.log_tail(2000), context  # ds_mark_dst took A out
    _hang_up_direct(gw_a, peer, "fills-a", to_tag)
    peer.close()
