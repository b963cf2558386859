"""Fixtures for integration tests with real SIP peers (Kamailio, sipp, pjsua2).

Missing tools FAIL the test instead of skipping it: CI installs kamailio,
sip-tester (sipp) and espeak-ng from the Makefile, so their absence is a
setup bug that must not turn into a green run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.peers.kamailio import Kamailio, KamailioUser, find_kamailio
from tests.peers.sipp import find_sipp, write_g711_media
from tests.peers.softphone import find_espeak, synthesize_speech_wav

TEST_USERS = (
    KamailioUser("alice", "alice-Secret-1"),
    KamailioUser("bob", "bob-Secret-2"),
    KamailioUser("gateway", "gateway-Secret-3"),
)
SPEECH_TEXT = (
    "Hello, this is a test call to the telephone gateway. "
    "Please tell me the balance of account number four two seven."
)
_FINDERS: dict[str, Callable[[], str | None]] = {
    "kamailio": find_kamailio,
    "sipp": find_sipp,
    "espeak-ng": find_espeak,
}
_PACKAGES = {"kamailio": "kamailio", "sipp": "sip-tester", "espeak-ng": "espeak-ng"}


def require_binary(name: str) -> str:
    """Path of a required tool; fails the test (never skips) when it is missing."""
    finder = _FINDERS.get(name)
    path = finder() if finder is not None else shutil.which(name)
    if path is None:
        package = _PACKAGES.get(name, name)
        pytest.fail(
            f"required tool {name!r} is not installed (Debian package {package!r}; "
            "CI installs it from the Makefile). A missing tool is a setup bug, not a skip.",
            pytrace=False,
        )
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item, so fixtures can see a failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _test_failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or bool(report.failed)


@pytest.fixture
def kamailio(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Kamailio]:
    """Kamailio registrar/proxy on a free loopback port with TEST_USERS."""
    require_binary("kamailio")
    proxy = Kamailio(tmp_path / "kamailio", TEST_USERS)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
        if _test_failed(request):
            print(f"--- kamailio log tail (port {proxy.port}):\n{proxy.log_tail(80)}")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def speech_wav(media_dir: Path) -> Path:
    """SPEECH_TEXT spoken by espeak-ng: 8 kHz mono 16-bit WAV (about 5 s)."""
    require_binary("espeak-ng")
    return synthesize_speech_wav(SPEECH_TEXT, media_dir / "speech.wav")


@pytest.fixture(scope="session")
def ulaw_media(speech_wav: Path, media_dir: Path) -> Path:
    """speech_wav as raw mu-law (PCMU payload) for sipp's rtp_stream."""
    return write_g711_media(speech_wav, media_dir / "speech.ulaw", "ulaw")


@pytest.fixture(scope="session")
def alaw_media(speech_wav: Path, media_dir: Path) -> Path:
    """speech_wav as raw A-law (PCMA payload) for sipp's rtp_stream."""
    return write_g711_media(speech_wav, media_dir / "speech.alaw", "alaw")
