"""Switching the served ASR model version on SIGHUP without dropping calls (issue 19's
fine-tune loop, serving side): a real Triton serving asr_streaming_nemo from a repository of
this test's own with the committed config.pbtxt (its version_policy), version 1 there at the
start; version 2 is installed mid-call (a copy of 1, as finetune.py installs one), the config
asks for it and the gateway reloads. The call that started on 1 stays on 1 to its end, the
next call goes to 2 (Triton's per-version statistics say so, not only the gateway), a version
that does not exist is refused while the calls go on; latest ("") then picks up a third
version, and Triton unloads the first."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from gateway.triton_launcher import TritonProcess
from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess, to_toml
from tests.media_tools import packets
from tests.rawsip import UdpPeer, request, sdp_offer
from tests.speech import piper_wavs, read_pcm
from tests.triton.fixtures import MODEL_REPOSITORY, private_triton

pytestmark = pytest.mark.slow
MODEL = "asr_streaming_nemo"
SENTENCES = ["My account number is four two seven nine one.",
             "Yes, please send the invoice to my email address."]
SILENCE = np.zeros(8000 * 2, dtype=np.int16)
TOKEN = "version-test-token"


def _install(folder: Path) -> None:
    """A version folder as finetune.py writes one: the runtime's files (here: version 1's)."""
    folder.mkdir()
    for item in (MODEL_REPOSITORY / MODEL / "1").iterdir():
        if item.is_file():
            (folder / item.name).symlink_to(item)


@pytest.fixture
def versioned(tmp_path: Path) -> Iterator[tuple[TritonProcess, Path]]:
    repo = tmp_path / "repo"
    model = repo / MODEL
    model.mkdir(parents=True)
    (repo / "common").symlink_to(MODEL_REPOSITORY / "common", target_is_directory=True)
    config = (MODEL_REPOSITORY / MODEL / "config.pbtxt").read_text()
    assert "version_policy: { latest: { num_versions: 2 } }" in config
    (model / "config.pbtxt").write_text(config)
    _install(model / "1")
    with private_triton(tmp_path / "triton", [MODEL], repository=repo) as server:
        yield server, model


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray[Any, Any]]:
    wavs = piper_wavs(SENTENCES, tmp_path_factory.mktemp("piper"))
    return [np.concatenate([read_pcm(p), SILENCE]) for p in wavs]


class Call:
    """An INVITE from a raw SIP peer, then paced PCMU until ``stop`` is set (looping over
    ``audio``), then BYE."""

    def __init__(self, gw: GatewayProcess, name: str, audio: list[np.ndarray[Any, Any]],
                 loops: int | None = None) -> None:
        self.gw, self.name, self.audio, self.loops = gw, name, audio, loops
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.sip = UdpPeer()
        answered = len(gw.events("call.answered"))
        self.sip.send(request("INVITE", gw.sip_port, local_port=self.sip.port, call_id=name,
                              headers="Content-Type: application/sdp",
                              body=sdp_offer(self.rtp.getsockname()[1], "0")), gw.sip_port)
        final = self.sip.replies(timeout_s=20)[-1]
        assert final.status == 200, final.status
        self.to_tag = (final.header("To") or "").split("tag=")[1]
        self.port = int(final.body.split(b"m=audio ")[1].split(b" ")[0])
        self.sip.send(request("ACK", gw.sip_port, local_port=self.sip.port, call_id=name,
                              to_tag=self.to_tag), gw.sip_port)
        deadline = time.monotonic() + 10
        while len(gw.events("call.answered")) == answered:
            assert time.monotonic() < deadline, f"{name} not answered"
            time.sleep(0.05)
        self.call_id = gw.events("call.answered")[-1]["call_id"]
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._talk, daemon=True)
        self._thread.start()

    def _talk(self) -> None:
        seq, played = 0, 0
        while not self.stop.is_set() and (self.loops is None or played < self.loops):
            pcm = self.audio[played % len(self.audio)]
            start = time.monotonic()
            for i, data in enumerate(packets(pcm, "PCMU", seq0=1000 + seq, ts0=5000 + seq * 160)):
                delay = start + i * 0.02 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.rtp.sendto(data, ("127.0.0.1", self.port))
            seq += len(pcm) // 160
            played += 1

    def hang_up(self, timeout_s: float = 60) -> dict[str, Any]:
        self.stop.set()
        self._thread.join(timeout_s)
        self.sip.send(request("BYE", self.gw.sip_port, local_port=self.sip.port,
                              call_id=self.name, to_tag=self.to_tag, cseq=2), self.gw.sip_port)
        ended = self.gw.wait_log("call.ended", 30, lambda e: e["call_id"] == self.call_id)
        self.rtp.close()
        return ended

    def finals(self) -> list[dict[str, Any]]:
        return [e for e in self.gw.events("transcript.final") if e["call_id"] == self.call_id]

    def wait_final(self, after: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.finals()) <= after:
            assert time.monotonic() < deadline, f"no final for {self.name}"
            time.sleep(0.1)

    def asr_versions(self) -> list[str | None]:
        status, body = self.gw.http(f"/v1/calls/{self.call_id}", token=TOKEN)
        assert status == 200, body
        return [a["version"] for a in json.loads(body)["asr"]]


def _successes(client: grpcclient.InferenceServerClient, version: str) -> int:
    stats = client.get_inference_statistics(MODEL, version, as_json=True)["model_stats"]
    return sum(int(s["inference_stats"]["success"].get("count", 0)) for s in stats)


def reload_version(gw: GatewayProcess, version: str, timeout_s: float = 120.0
                   ) -> dict[str, Any]:
    """``triton.asr_model_version = version`` in the config file, SIGHUP, and the
    ``config.reloaded`` event that answered it."""
    seen = len(gw.events("config.reloaded"))
    config = {**gw.config, "triton": {**gw.config["triton"], "asr_model_version": version}}
    gw.config_path.write_text(to_toml(config))
    gw.config = config
    gw.signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while len(gw.events("config.reloaded")) == seen:
        assert time.monotonic() < deadline, "no config.reloaded"
        time.sleep(0.1)
    return gw.events("config.reloaded")[-1]


def test_a_new_version_takes_new_calls_while_live_ones_finish_on_theirs(
        versioned: tuple[TritonProcess, Path], gateway_factory: GatewayFactory,
        speech: list[np.ndarray[Any, Any]]) -> None:
    triton, model_dir = versioned
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    gw = gateway_factory({"triton": {"url": triton.grpc_url, "asr_model": MODEL,
                                     "asr_model_version": "", "buffer_s": 60.0},
                          "tts": {"enabled": False}, "http": {"token_env": "GW_TEST_TOKEN"}},
                         env={"GW_TEST_TOKEN": TOKEN})
    gw.wait_log("triton.ready", 30)
    first = Call(gw, "long-call", speech)                  # talks until hung up
    first.wait_final(0)
    assert first.asr_versions() == ["1"]                   # latest, resolved: 1

    _install(model_dir / "2")                              # the fine-tuned version arrives
    reloaded = reload_version(gw, "2")
    assert "triton.asr_model_version" in reloaded["changed"] and "failed" not in reloaded
    switched = gw.events("asr.model_version_ready")[-1]
    assert switched["version"] == "2"
    v1_at_switch, v2_at_switch = _successes(client, "1"), _successes(client, "2")
    assert v2_at_switch == 0

    second = Call(gw, "new-call", speech[::-1])            # on 2 through the next reload
    second.wait_final(0)
    assert second.asr_versions() == ["2"] and first.asr_versions() == ["1"]
    heard_first = len(first.finals())
    first.wait_final(heard_first)                           # still transcribed, on 1
    assert _successes(client, "2") > v2_at_switch           # Triton saw version 2 work
    assert _successes(client, "1") > v1_at_switch           # and version 1 go on

    refused = reload_version(gw, "7")                              # no such version folder
    assert refused["failed"] and refused["failed"][0].startswith("triton.asr_model_version")
    failed = gw.events("asr.model_version_failed")[-1]
    assert failed["requested"] == "7" and failed["serving"] == "2" and failed["reason"]
    status, body = gw.http("/readyz")
    assert status == 200, body
    third = Call(gw, "after-refusal", speech[:1], loops=1)
    third.wait_final(0)
    assert third.asr_versions() == ["2"]
    for call in (first, second):                            # both go on after the refusal
        call.wait_final(len(call.finals()))
    third.hang_up()
    for call in (first, second):
        assert call.hang_up()["asr_finals_flushed"] is True
    assert "four two seven nine one" in " ".join(f["text"] for f in second.finals())
    started = {e["channel"]: e["version"] for e in gw.events("asr.channel_started")}
    assert started == {f"{first.call_id}/customer": "1", f"{second.call_id}/customer": "2",
                       f"{third.call_id}/customer": "2"}
    status, metrics = gw.http("/metrics")
    assert status == 200
    assert b'gateway_asr_sequences_total{version="1"} 1.0' in metrics
    assert b'gateway_asr_sequences_total{version="2"} 2.0' in metrics
    _install(model_dir / "3")                              # latest again: picks up 3
    latest = reload_version(gw, "")
    assert "triton.asr_model_version" in latest["changed"] and "failed" not in latest
    assert gw.events("asr.model_version_ready")[-1]["version"] == "3"
    assert [client.is_model_ready(MODEL, v) for v in "123"] == [False, True, True]
    for bad in ("asr.sequence_lost", "asr.channel_failed", "asr.stream_lost"):
        cut = [(e.get("channel"), e.get("version"), str(e.get("error"))[:90])
               for e in gw.events(bad)]
        assert not cut, f"{bad}: {cut}"                    # no sequence was cut
    client.close()
