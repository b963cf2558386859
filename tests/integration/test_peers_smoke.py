"""The SIP test peers proven against each other, without the gateway.

Kamailio (registrar/proxy), sipp scenarios and the pjsua2 softphone are the
independent references the gateway's integration tests rely on; these tests
show that each works and that each can fail.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.conftest import TEST_USERS, require_binary
from tests.peers.audio_match import assert_heard
from tests.peers.kamailio import Kamailio
from tests.peers.ports import LOOPBACK, free_port_both, free_udp_port
from tests.peers.sipp import SCENARIO_DIR, SippBackground, SippResult, run_sipp
from tests.peers.softphone import PhoneOptions, Softphone, read_wav_pcm16

pytestmark = pytest.mark.slow

PASSWORDS = {u.user: u.password for u in TEST_USERS}
SIPP_RATE = 50.0  # calls/s: sipp waits 1/rate before its first call


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_binary("sipp")
    require_binary("kamailio")


# ------------------------------------------------------------------ helpers


def _sip_options(port: int, transport: int) -> bytes:
    """Send a raw OPTIONS to 127.0.0.1:port over UDP or TCP; return the reply."""
    tag = f"{port}{transport}"
    proto = "UDP" if transport == socket.SOCK_DGRAM else "TCP"
    with socket.socket(socket.AF_INET, transport) as sock:
        sock.settimeout(3)
        sock.connect((LOOPBACK, port))
        local_port = sock.getsockname()[1]
        sock.sendall(
            (
                f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/{proto} {LOOPBACK}:{local_port};branch=z9hG4bKsmoke{tag}\r\n"
                f"From: <sip:smoke@{LOOPBACK}>;tag={tag}\r\nTo: <sip:{LOOPBACK}:{port}>\r\n"
                f"Call-ID: smoke-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        )
        return sock.recv(65535)


def _register(kamailio: Kamailio, scenario: str, user: str, password: str) -> SippResult:
    return run_sipp(
        SCENARIO_DIR / scenario,
        f"{LOOPBACK}:{kamailio.port}",
        local_port=free_udp_port(),
        rate=SIPP_RATE,
        timeout_s=10,
        extra=["-s", user, "-au", user, "-ap", password],
    )


def _speech_seconds(wav: Path) -> float:
    rate_hz, samples = read_wav_pcm16(wav)
    return len(samples) / rate_hz


# ------------------------------------------------------------------ Kamailio


def test_kamailio_listens_on_the_chosen_port_udp_and_tcp(tmp_path: Path) -> None:
    port = free_port_both()
    with Kamailio(tmp_path / "k", TEST_USERS, port=port) as proxy:
        assert proxy.port == port
        for transport in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            reply = _sip_options(port, transport)
            assert reply.startswith(b"SIP/2.0 200"), (reply, proxy.log_tail())
    assert not proxy.is_running()


def test_sipp_registers_with_the_right_password(kamailio: Kamailio) -> None:
    result = _register(kamailio, "register_auth.xml", "alice", PASSWORDS["alice"])
    assert result.ok, result.describe()
    assert result.successful_calls == 1, result.describe()
    assert result.message("401", "recv").messages == 1, result.describe()


def test_sipp_register_with_a_wrong_password_fails_on_401(kamailio: Kamailio) -> None:
    result = _register(kamailio, "register_auth.xml", "alice", "not-the-password")
    assert result.exit_code == 1, result.describe()
    assert result.failed_calls == 1, result.describe()
    assert "while expecting '200'" in result.errors, result.describe()
    assert "401 Unauthorized" in result.errors, result.describe()
    rejected = _register(kamailio, "register_auth_rejected.xml", "alice", "not-the-password")
    assert rejected.ok, rejected.describe()


def test_register_rejected_scenario_fails_when_the_registrar_accepts(kamailio: Kamailio) -> None:
    result = _register(kamailio, "register_auth_rejected.xml", "alice", PASSWORDS["alice"])
    assert result.exit_code == 1, result.describe()
    assert "while expecting '401'" in result.errors, result.describe()
    assert "200 OK" in result.errors, result.describe()


def test_sipp_cannot_register_another_users_aor(kamailio: Kamailio) -> None:
    result = run_sipp(
        SCENARIO_DIR / "register_auth_rejected.xml",
        f"{LOOPBACK}:{kamailio.port}",
        local_port=free_udp_port(),
        rate=SIPP_RATE,
        timeout_s=10,
        extra=["-s", "alice", "-au", "bob", "-ap", PASSWORDS["bob"]],
    )
    assert result.ok, result.describe()
    assert result.message("403", "recv").messages == 1, result.describe()


# ------------------------------------------------------------------ pjsua2 phone


def test_softphone_registers(kamailio: Kamailio, tmp_path: Path) -> None:
    options = PhoneOptions(
        registrar=kamailio.uri, user="bob", password=PASSWORDS["bob"], register_only=True
    )
    with Softphone(options, workdir=tmp_path, name="bob") as phone:
        event = phone.wait_for("registered", timeout_s=10)
        assert event["code"] == 200, phone.report()
        phone.finish(timeout_s=10)
        assert phone.exit_code == 0, phone.report()


def test_softphone_with_a_wrong_password_gives_up(kamailio: Kamailio, tmp_path: Path) -> None:
    options = PhoneOptions(
        registrar=kamailio.uri, user="bob", password="wrong", register_only=True, timeout_s=20
    )
    with Softphone(options, workdir=tmp_path, name="bob") as phone:
        event = phone.wait_for("reg_failed", timeout_s=10)
        assert event["code"] in (401, 403), phone.report()
        events = phone.finish(timeout_s=10)
        assert phone.exit_code == 3, phone.report()
        assert "registered" not in [e["event"] for e in events], phone.report()


def test_softphone_calls_a_sipp_uas_directly(speech_wav: Path, tmp_path: Path) -> None:
    uas_port = free_udp_port()
    uas = SippBackground(
        SCENARIO_DIR / "uas_answer.xml", local_port=uas_port, timeout_s=20, workdir=tmp_path / "uas"
    )
    options = PhoneOptions(
        call=f"sip:echo@{LOOPBACK}:{uas_port}", play=speech_wav, duration_s=2, codec="PCMU"
    )
    with uas, Softphone(options, workdir=tmp_path, name="caller") as phone:
        phone.wait_for("call_state", timeout_s=10, state="CONFIRMED")
        gone = phone.wait_for("call_disconnected", timeout_s=10)
        phone.finish(timeout_s=10)
        result = uas.wait(timeout_s=10)
    context = f"{phone.report()}\n{result.describe()}"
    assert gone["by"] == "local" and gone["code"] == 200, context
    assert gone.get("tx_packets", 0) > 50, context  # about 100 packets in 2 s
    assert phone.exit_code == 0, context
    assert result.ok and result.successful_calls == 1, context


def test_sipp_streams_speech_to_the_softphone(
    ulaw_media: Path, speech_wav: Path, tmp_path: Path
) -> None:
    recording = tmp_path / "heard.wav"
    options = PhoneOptions(answer=True, record=recording, timeout_s=30)
    seconds = _speech_seconds(speech_wav)
    with Softphone(options, workdir=tmp_path, name="callee") as phone:
        phone.wait_for("started", timeout_s=10)
        result = run_sipp(
            SCENARIO_DIR / "uac_basic.xml",
            f"{LOOPBACK}:{phone.local_port}",
            local_port=free_udp_port(),
            rate=SIPP_RATE,
            timeout_s=seconds + 10,
            media_file=ulaw_media,
            extra=["-d", str(int(seconds * 1000) + 300)],
        )
        phone.finish(timeout_s=10)
    context = f"{result.describe()}\n{phone.report()}"
    assert result.ok, context
    assert phone.exit_code == 0, context
    assert_heard(speech_wav, recording, context)


def test_two_softphones_talk_through_kamailio(
    kamailio: Kamailio, speech_wav: Path, tmp_path: Path
) -> None:
    recording = tmp_path / "alice_heard.wav"
    alice = Softphone(
        PhoneOptions(
            registrar=kamailio.uri, user="alice", password=PASSWORDS["alice"], answer=True,
            record=recording, codec="PCMU", timeout_s=30,
        ),
        workdir=tmp_path / "alice", name="alice",
    )  # fmt: skip
    bob = Softphone(
        PhoneOptions(
            registrar=kamailio.uri, user="bob", password=PASSWORDS["bob"],
            call=kamailio.aor("alice"), play=speech_wav, codec="PCMU",
            duration_s=_speech_seconds(speech_wav) + 0.5, headers=("X-Leg: agent",),
            timeout_s=30,
        ),
        workdir=tmp_path / "bob", name="bob",
    )  # fmt: skip
    with alice:
        alice.wait_for("registered", timeout_s=10)
        with bob:
            incoming = alice.wait_for("incoming", timeout_s=10)
            bob_events = bob.finish(timeout_s=20)
            alice_events = alice.finish(timeout_s=10)
    context = f"{alice.report()}\n{bob.report()}\nkamailio:\n{kamailio.log_tail()}"
    assert "sip:bob@" in incoming["remote_uri"], context
    assert incoming["headers"] == {"X-Leg": "agent"}, context
    assert bob.exit_code == 0 and alice.exit_code == 0, context
    ended = [e for e in alice_events if e["event"] == "call_disconnected"]
    assert ended and ended[0]["by"] == "remote", context  # bob's BYE went through the proxy
    assert any(e["event"] == "play_done" for e in bob_events), context
    assert_heard(speech_wav, recording, context)
