"""Conversation statistics (issue 17): the talk-spurt segmenter on synthetic audio, and the
statistics processor on two synthetic channels with known talk, overtalk and silence spans
(every figure exact to the 20 ms frame), its live events (interruption, dead air), its
snapshot, call end and state, and the config."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from gateway.analytics.activity import (
    FRAME_SAMPLES,
    ActivitySettings,
    Boundary,
    TalkSpurtSegmenter,
)
from gateway.analytics.talk import SLACK_S, TalkStatistics
from gateway.config import ConfigError, GatewayConfig, TalkStatisticsConfig, parse_config
from gateway.events.processing import ProcessingStage
from gateway.events.types import (
    CallEnded,
    CallMediaChanged,
    CallOffered,
    ChannelStats,
    ConversationInterrupted,
    ConversationStatistics,
    DeadAirDetected,
    GatewayEvent,
    TranscriptFinal,
    VoiceEnded,
    VoiceStarted,
    VoiceStopped,
)
from gateway.processors import build_processors, reconfigures_processors

RATE = 8000
SETTINGS = ActivitySettings()            # -40 dBFS, 300 ms hangover, 100 ms minimum
Pcm = npt.NDArray[np.int16]
Span = tuple[float, float]


def tone(n: int, amplitude: float = 6000.0, hz: float = 440.0) -> Pcm:
    t = np.arange(n) / RATE
    return np.round(amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def audio(total_s: float, spans: Sequence[Span], amplitude: float = 6000.0,
          noise: float = 30.0, seed: int = 1) -> Pcm:
    """``total_s`` of low noise (about -61 dBFS) with a tone over each span."""
    rng = np.random.default_rng(seed)
    pcm = rng.normal(0, noise, round(total_s * RATE))
    for a, b in spans:
        lo, hi = round(a * RATE), round(b * RATE)
        pcm[lo:hi] = tone(hi - lo, amplitude)
    return np.clip(np.round(pcm), -32768, 32767).astype(np.int16)


def spurts(boundaries: Sequence[Boundary]) -> list[Span]:
    starts = [b.position for b in boundaries if b.speaking]
    stops = [(b.start, b.position) for b in boundaries if not b.speaking]
    assert [a for a, _b in stops] == starts[:len(stops)]
    return [(a / RATE, b / RATE) for a, b in stops]


def segment(pcm: Pcm, chunk: int = FRAME_SAMPLES,
            settings: ActivitySettings = SETTINGS) -> list[Span]:
    seg = TalkSpurtSegmenter(settings)
    out: list[Boundary] = []
    for at in range(0, len(pcm), chunk):
        out += seg.push(at, pcm[at:at + chunk])
    out += seg.end()
    return spurts(out)


# ------------------------------------------------------------------ the segmenter
def test_spurts_are_the_tone_spans_exactly() -> None:
    spans = [(0.5, 1.74), (2.5, 2.9), (4.0, 6.02)]
    assert segment(audio(7.0, spans)) == spans


def test_a_gap_shorter_than_the_hangover_is_bridged_a_longer_one_splits() -> None:
    bridged = [(1.0, 2.0), (2.28, 3.0)]           # 280 ms gap < 300 ms hangover
    assert segment(audio(4.0, bridged)) == [(1.0, 3.0)]
    split = [(1.0, 2.0), (2.3, 3.0)]              # 300 ms: a new spurt
    assert segment(audio(4.0, split)) == split


def test_clicks_shorter_than_min_talk_are_no_talk() -> None:
    clicks = [(1.0, 1.04), (2.0, 2.06), (3.0, 3.08)]   # 2, 3 and 4 voiced frames
    assert segment(audio(4.0, clicks)) == []
    close = [(1.0, 1.04), (1.2, 1.26)]                 # within the hangover: 5 frames
    assert segment(audio(4.0, close)) == [(1.0, 1.26)]
    assert segment(audio(4.0, [(1.0, 1.1)])) == [(1.0, 1.1)]   # 5 frames: 100 ms counts


def test_quiet_audio_below_the_threshold_is_silence() -> None:
    quiet = audio(3.0, [(1.0, 2.0)], amplitude=300.0)   # about -41 dBFS RMS
    assert segment(quiet) == []
    louder = audio(3.0, [(1.0, 2.0)], amplitude=600.0)  # about -35 dBFS
    assert segment(louder) == [(1.0, 2.0)]
    assert segment(quiet, settings=ActivitySettings(threshold_dbfs=-45.0)) == [(1.0, 2.0)]


@pytest.mark.parametrize("chunk", [160, 240, 80, 1000, 37])
def test_the_chunking_does_not_move_an_edge(chunk: int) -> None:
    spans = [(0.3, 1.0), (1.6, 2.24), (2.9, 3.5)]
    assert segment(audio(4.0, spans), chunk=chunk) == spans


def test_an_edge_off_the_grid_falls_on_its_frame() -> None:
    (spurt,) = segment(audio(3.0, [(1.005, 2.013)]))
    assert spurt == (1.0, 2.02)                    # the frames holding the first/last sample


def test_missing_audio_counts_as_silence() -> None:
    seg = TalkSpurtSegmenter(SETTINGS)
    speech = tone(RATE)                            # 1 s of talk at position 0
    out = seg.push(0, speech)
    assert [b.speaking for b in out] == [True]
    out += seg.push(RATE + 5 * RATE, tone(RATE // 2))    # 5 s with no audio, then talk
    out += seg.end()
    assert spurts(out) == [(0.0, 1.0), (6.0, 6.5)]
    assert seg.position == 6.5 * RATE


def test_a_gap_inside_a_frame_is_silence_and_a_short_one_keeps_the_spurt() -> None:
    seg = TalkSpurtSegmenter(SETTINGS)
    out = seg.push(0, tone(RATE + 80))             # ends half-way into a frame
    out += seg.push(RATE + 80 + 800, tone(RATE))   # 100 ms missing: bridged
    out += seg.end()                               # ends half-way into a frame again
    assert spurts(out) == [(0.0, (2 * RATE + 880) / RATE)]


def test_end_closes_a_spurt_that_counts_and_drops_one_that_does_not() -> None:
    seg = TalkSpurtSegmenter(SETTINGS)
    out = seg.push(0, audio(2.0, [(1.0, 2.0)]))
    assert seg.speaking
    assert spurts(out + seg.end()) == [(1.0, 2.0)]
    short = TalkSpurtSegmenter(SETTINGS)
    assert short.push(0, audio(1.06, [(1.0, 1.06)])) == [] and short.end() == []


def test_audio_going_back_is_skipped() -> None:
    seg = TalkSpurtSegmenter(SETTINGS)
    out = seg.push(0, tone(RATE))
    out += seg.push(RATE - 800, np.zeros(800 + 4 * RATE, dtype=np.int16))  # overlaps 100 ms
    assert spurts(out) == [(0.0, 1.0)] and seg.position == 5 * RATE


# ------------------------------------------------------------------ two channels
CONFIG = TalkStatisticsConfig(dead_air_s=3.0)
ANCHOR = 1000.0                                  # bus time of the conversation's timeline 0
AGENT_SPANS = [(1.0, 3.0), (6.0, 8.0), (12.5, 14.0)]
CUSTOMER_SPANS = [(2.5, 5.0), (7.5, 7.8), (8.4, 9.0)]
CUSTOMER_OFFSET_S = 0.5                          # the customer leg starts 0.5 s in
TOTAL_S = 16.0


def offered(call_id: str, channel: str, conversation: str = "conv-1") -> CallOffered:
    return CallOffered(call_id=call_id, conversation_id=conversation, channel=channel,
                       channels=(channel,), siprec=False, participants=(), session_id=None,
                       sip_call_id=f"sip-{call_id}", from_uri="sip:a@x", from_display=None,
                       to_uri="sip:b@x", request_uri="sip:b@x", remote="127.0.0.1:5060",
                       transport="udp", headers={})


def ended(call_id: str, conversation: str = "conv-1") -> CallEnded:
    return CallEnded(call_id=call_id, reason="bye", by="remote", answered=True, duration_s=1.0,
                     sip_call_id=f"sip-{call_id}", conversation_id=conversation,
                     channels=(), legs=(), asr_finals_flushed=True, recording=None)


def final(call_id: str, channel: str, text: str) -> TranscriptFinal:
    return TranscriptFinal(call_id=call_id, channel=channel, participant=None,
                           conversation_id="conv-1", text=text, segment=0, start_s=1.0,
                           end_s=2.0, words=(), latency_s=None)


class Leg:
    """One call's channel: synthetic audio through the segmenter, as the call side emits
    it (``voice.*`` on the conversation timeline, at the bus time it would be detected)."""

    def __init__(self, call_id: str, channel: str, spans: Sequence[Span], offset_s: float,
                 seed: int) -> None:
        self.call_id, self.channel, self.offset = call_id, channel, round(offset_s * RATE)
        leg_spans = [(a - offset_s, b - offset_s) for a, b in spans]
        self.pcm = audio(TOTAL_S - offset_s, leg_spans, seed=seed)
        self.seg = TalkSpurtSegmenter(SETTINGS)

    def events(self, boundaries: Sequence[Boundary]) -> list[GatewayEvent]:
        out: list[GatewayEvent] = []
        for b in boundaries:
            start = (self.offset + b.start) / RATE
            if b.speaking:
                out.append(VoiceStarted(call_id=self.call_id, conversation_id="conv-1",
                                        channel=self.channel, at_s=start))
            else:
                at = (self.offset + b.position) / RATE
                out.append(VoiceStopped(call_id=self.call_id, conversation_id="conv-1",
                                        channel=self.channel, start_s=start, at_s=at,
                                        talk_s=at - start))
        return out

    def at(self, timeline_sample: int) -> list[GatewayEvent]:
        """The leg's next 20 ms frame when the timeline reaches ``timeline_sample``."""
        position = timeline_sample - self.offset
        if position < 0 or position >= len(self.pcm):
            return []
        out = self.events(self.seg.push(position, self.pcm[position:position + FRAME_SAMPLES]))
        if position + FRAME_SAMPLES >= len(self.pcm):
            out += self.events(self.seg.end())
            out.append(VoiceEnded(call_id=self.call_id, conversation_id="conv-1",
                                  channel=self.channel,
                                  at_s=(self.offset + self.seg.position) / RATE))
        return out


def conversation(stage: ProcessingStage, *, until_s: float = TOTAL_S,
                 end: bool = True) -> list[GatewayEvent]:
    """Agent (call a) and customer (call b) legs of one conversation through the stage, the
    bus clock running with the timeline; timers fire when due, as the bus fires them."""
    legs = [Leg("a", "agent", AGENT_SPANS, 0.0, 1),
            Leg("b", "customer", CUSTOMER_SPANS, CUSTOMER_OFFSET_S, 2)]
    out: list[GatewayEvent] = []

    def run(event: GatewayEvent, now: float) -> None:
        out.extend(stage.run(event, now).events)

    run(offered("a", "agent"), ANCHOR)
    run(offered("b", "customer"), ANCHOR + 0.1)
    for sample in range(0, round(until_s * RATE), FRAME_SAMPLES):
        now = ANCHOR + (sample + FRAME_SAMPLES) / RATE
        deadline = stage.next_deadline()
        if deadline is not None and deadline <= now:
            out.extend(stage.tick(now).events)
        for leg in legs:
            for event in leg.at(sample):
                run(event, now)
    if end:
        run(final("a", "agent", "one two three four five six seven eight nine ten eleven"),
            ANCHOR + TOTAL_S)
        run(final("b", "customer", "yes please"), ANCHOR + TOTAL_S)
        run(ended("b"), ANCHOR + TOTAL_S + 1)
        run(ended("a"), ANCHOR + TOTAL_S + 2)
    return out


def of(events: Sequence[GatewayEvent], kind: type[GatewayEvent]) -> list[GatewayEvent]:
    return [e for e in events if isinstance(e, kind)]


def test_two_channels_known_talk_overtalk_and_silence() -> None:
    events = conversation(ProcessingStage([TalkStatistics(CONFIG)]))
    (stats_event,) = of(events, ConversationStatistics)
    assert isinstance(stats_event, ConversationStatistics)
    assert events.index(stats_event) == len(events) - 2          # just before the last end
    assert isinstance(events[-1], CallEnded) and events[-1].call_id == "a"
    stats = stats_event.statistics
    assert stats_event.call_id == "a" and stats.final and stats.conversation_id == "conv-1"
    assert stats.duration_s == TOTAL_S
    # someone talking: [1, 5] [6, 8] [8.4, 9] [12.5, 14]
    assert (stats.talk_s, stats.non_talk_s) == (8.1, 7.9)
    assert stats.longest_silence_s == 3.5                         # 9.0 -> 12.5
    assert stats.overtalk_s == 0.8                                # 2.5-3.0 and 7.5-7.8
    assert (stats.dead_air, stats.dead_air_s) == (1, 3.5)         # dead_air_s = 3
    assert stats.first_speaker == "agent"
    assert stats.first_agent_response_s == 1.0                    # customer ends 5.0, agent 6.0
    (interruption,) = stats.interruptions                         # the backchannel is none
    assert (interruption.channel, interruption.interrupted, interruption.at_s,
            interruption.overlap_s) == ("customer", "agent", 2.5, 0.5)
    agent, customer = stats.channels
    assert agent == ChannelStats(
        channel="agent", talk_s=5.5, silence_s=10.5, longest_silence_s=4.5, spurts=3,
        interruptions=0, interrupted=1, talk_ratio=round(5.5 / 8.9, 3), words=11,
        words_per_minute=120.0, first_talk_s=1.0)
    assert customer == ChannelStats(
        channel="customer", talk_s=3.4, silence_s=12.6, longest_silence_s=7.0, spurts=3,
        interruptions=1, interrupted=0, talk_ratio=round(3.4 / 8.9, 3), words=2,
        words_per_minute=round(2 * 60 / 3.4, 1), first_talk_s=2.5)


def test_interruption_and_dead_air_go_out_live() -> None:
    events = conversation(ProcessingStage([TalkStatistics(CONFIG)]), end=False)
    (interrupted,) = of(events, ConversationInterrupted)
    assert isinstance(interrupted, ConversationInterrupted)
    assert interrupted.call_id == "b" and interrupted.interruption.interrupted == "agent"
    stop = next(e for e in events if isinstance(e, VoiceStopped) and e.channel == "agent")
    assert events.index(interrupted) == events.index(stop) + 1   # right after the agent's stop
    (dead,) = of(events, DeadAirDetected)
    assert isinstance(dead, DeadAirDetected)
    assert (dead.call_id, dead.start_s) == ("a", 9.0)
    assert 3.0 <= dead.silent_s <= 3.0 + 0.02                     # reported on the next frame
    start = next(e for e in events if isinstance(e, VoiceStarted) and e.at_s == 12.5)
    assert events.index(dead) < events.index(start)


def test_the_dead_air_deadline_follows_the_silence() -> None:
    talk = TalkStatistics(CONFIG)
    slack = CONFIG.min_talk_ms / 1000 + SLACK_S
    assert talk.next_deadline() is None                          # no conversation yet
    talk.process(offered("a", "agent"), ANCHOR)
    assert talk.next_deadline() == pytest.approx(ANCHOR + 3.0 + slack)   # silent from 0
    talk.process(VoiceStarted(call_id="a", conversation_id="conv-1", channel="agent",
                              at_s=1.0), ANCHOR + 1.1)
    assert talk.next_deadline() is None                          # someone talks
    talk.process(VoiceStopped(call_id="a", conversation_id="conv-1", channel="agent",
                              start_s=1.0, at_s=2.0, talk_s=1.0), ANCHOR + 2.3)
    assert talk.next_deadline() == pytest.approx(ANCHOR + 5.0 + slack)
    assert talk.on_timer(ANCHOR + 4.0) == []
    (dead,) = talk.on_timer(ANCHOR + 5.0 + slack)
    assert isinstance(dead, DeadAirDetected) and dead.silent_s == 3.0
    assert talk.next_deadline() is None and talk.on_timer(ANCHOR + 60) == []   # once
    talk.process(CallMediaChanged(call_id="a", state="held", directions=("sendonly",)),
                 ANCHOR + 61)
    talk.process(VoiceStarted(call_id="a", conversation_id="conv-1", channel="agent",
                              at_s=62.0), ANCHOR + 62.1)
    talk.process(VoiceStopped(call_id="a", conversation_id="conv-1", channel="agent",
                              start_s=62.0, at_s=63.0, talk_s=1.0), ANCHOR + 63.3)
    assert talk.next_deadline() is None                          # on hold: no dead air
    talk.process(CallMediaChanged(call_id="a", state="confirmed", directions=("sendrecv",)),
                 ANCHOR + 70.0)
    assert talk.next_deadline() == pytest.approx(ANCHOR + 73.0 + slack)  # from the resume
    assert talk.on_timer(float("inf")) == () and talk.next_deadline() is None  # closing


def test_a_live_snapshot_counts_the_open_spurt_up_to_now() -> None:
    talk = TalkStatistics(CONFIG)
    stage = ProcessingStage([talk])
    conversation(stage, until_s=4.0, end=False)                  # customer talking at 4.0
    assert talk.snapshot("nope") is None
    by_call = talk.snapshot("b", ANCHOR + 4.5)
    assert by_call is not None and by_call == talk.snapshot("conv-1", ANCHOR + 4.5)
    assert not by_call.final and by_call.duration_s == 4.5
    agent, customer = by_call.channels
    assert (agent.talk_s, customer.talk_s) == (2.0, 2.0)          # [1, 3] and [2.5, now]
    assert by_call.overtalk_s == 0.5 and by_call.first_agent_response_s is None
    assert by_call.talk_s == 3.5 and by_call.non_talk_s == 1.0


def test_state_goes_with_the_last_call_of_the_conversation() -> None:
    talk = TalkStatistics(CONFIG)
    stage = ProcessingStage([talk])
    first = stage.run(ended("b"), ANCHOR)                        # unknown call: passes
    assert first.events == (ended("b"),)
    conversation(stage, end=False)
    assert of(stage.run(ended("b"), ANCHOR + 20).events, ConversationStatistics) == []
    assert talk.snapshot("a") is not None and talk.snapshot("b") is None  # "b" forgotten
    out = stage.run(ended("a"), ANCHOR + 21).events
    assert [type(e) for e in out] == [ConversationStatistics, CallEnded]
    assert talk.snapshot("a") is None and talk.snapshot("conv-1") is None
    assert talk.next_deadline() is None


def test_a_silent_conversation_has_no_talk_and_no_ratio() -> None:
    talk = TalkStatistics(CONFIG)
    talk.process(offered("a", "customer"), ANCHOR)
    talk.process(VoiceEnded(call_id="a", conversation_id="conv-1", channel="customer",
                            at_s=4.0), ANCHOR + 4)
    (stats, _end) = talk.process(ended("a"), ANCHOR + 5)
    assert isinstance(stats, ConversationStatistics)
    s = stats.statistics
    assert (s.duration_s, s.talk_s, s.non_talk_s, s.dead_air, s.dead_air_s) == (
        4.0, 0.0, 4.0, 1, 4.0)
    (customer,) = s.channels
    assert customer.talk_ratio is None and customer.words_per_minute is None
    assert customer.longest_silence_s == 4.0 and s.first_speaker is None


def test_a_rebuild_takes_the_running_conversations_over() -> None:
    old = TalkStatistics(CONFIG)
    conversation(ProcessingStage([old]), until_s=10.0, end=False)
    new = TalkStatistics(dataclasses.replace(CONFIG, dead_air_s=20.0), old)
    before, after = old.snapshot("a"), new.snapshot("a")
    assert after is not None and before is not None
    assert after.talk_s == before.talk_s and after.interruptions == before.interruptions
    assert new.next_deadline() == pytest.approx(ANCHOR + 9.0 + 20.0 + 0.1 + SLACK_S)


# ------------------------------------------------------------------ config and wiring
def test_statistics_config_keys_and_the_processor_list() -> None:
    config = parse_config({"statistics": {"dead_air_s": 5, "hangover_ms": 200,
                                          "threshold_dbfs": -45, "interruption_ms": 1000,
                                          "min_talk_ms": 60}}, {}, Path("."))
    assert config.statistics == TalkStatisticsConfig(
        enabled=True, threshold_dbfs=-45.0, hangover_ms=200, min_talk_ms=60,
        interruption_ms=1000, dead_air_s=5.0)
    (talk,) = [p for p in build_processors(config) if isinstance(p, TalkStatistics)]
    assert talk.config is config.statistics and talk.name == "statistics"
    off = parse_config({"statistics": {"enabled": False}}, {}, Path("."))
    assert not any(isinstance(p, TalkStatistics) for p in build_processors(off))
    assert any(isinstance(p, TalkStatistics) for p in build_processors(GatewayConfig()))
    assert reconfigures_processors(["statistics.dead_air_s"])
    with pytest.raises(ConfigError, match=r"statistics\.threshold_dbfs"):
        parse_config({"statistics": {"threshold_dbfs": 3}}, {}, Path("."))
    with pytest.raises(ConfigError, match=r"statistics\.bogus: unknown key"):
        parse_config({"statistics": {"bogus": 1}}, {}, Path("."))
