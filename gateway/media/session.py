"""One call's media in the shell: RTP sockets per accepted stream, the receive pipelines,
RTCP receiver reports, the RTP timeout and hold state, and port bookkeeping.

Every packet a leg drops (socket level: malformed, foreign source, payload type; pipeline:
oversized, stray SSRC/sequence, late, duplicate, DTMF event outside the answered list) is
reported by reason to ``on_drops`` on the media tick and at close (the metrics counter).

Layer: shell.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config import GatewayConfig
from gateway.media.debuglog import LegDebugLog
from gateway.media.dtmf import RFC4733_DEFAULT_EVENTS, DtmfEvent, parse_event_list
from gateway.media.endpoint import RtpEndpoint
from gateway.media.leg import AudioSink, InboundLeg, LegSettings
from gateway.media.ports import PortAllocator, PortsExhausted
from gateway.media.rtcp import (
    ReceiverBlock,
    RtcpError,
    RtcpScheduler,
    build_receiver_report,
    build_sender_report,
    parse_compound,
)
from gateway.media.rtp import RtpPacket
from gateway.media.timeout import RtpTimeout
from gateway.sip.sdp import AnsweredStream, AnswerPlan

HELD_DIRECTIONS = ("sendonly", "inactive")
DropsListener = Callable[[str, int], None]


class LegSink(AudioSink, Protocol):
    """Where a leg's audio goes: the call side's sink (``gateway.calls.timeline.ChannelSink``)."""

    @property
    def channel(self) -> str: ...

    def summary(self) -> dict[str, Any]: ...


class SenderState(Protocol):
    """What an RTCP sender report needs from whoever sends RTP on a leg."""

    @property
    def ssrc(self) -> int: ...

    @property
    def rtp_timestamp(self) -> int: ...

    @property
    def packets_sent(self) -> int: ...

    @property
    def octets_sent(self) -> int: ...


@dataclass(slots=True)
class MediaLeg:
    stream: AnsweredStream
    endpoint: RtpEndpoint
    pipeline: InboundLeg
    sink: LegSink
    rtcp: RtcpScheduler
    ssrc: int
    sender: SenderState | None = None      # set while we send on this leg (TTS playout)

    @property
    def channel(self) -> str:
        return self.sink.channel

    def drop_counts(self) -> dict[str, int]:
        """Packets dropped on this leg so far, by reason (socket and pipeline together)."""
        ep = self.endpoint.stats
        counts = {"malformed": ep.dropped_malformed, "source": ep.dropped_source,
                  "payload_type": ep.dropped_payload_type}
        for reason, n in self.pipeline.drop_counts().items():
            counts[reason] = counts.get(reason, 0) + n
        return {reason: n for reason, n in counts.items() if n}


class LegReceiver:
    """The endpoint's :class:`~gateway.media.endpoint.PacketReceiver` for one leg: RTP into
    the receive pipeline (then the debug log looks), RTCP sender reports into the RTCP
    schedule, each with the endpoint's ``now`` (no clock read of its own)."""

    def __init__(self, pipeline: InboundLeg, rtcp: RtcpScheduler, debug: LegDebugLog) -> None:
        self.pipeline = pipeline
        self.rtcp = rtcp
        self.debug = debug

    def on_packet(self, packet: RtpPacket, now: float) -> None:
        self.pipeline.on_packet(packet, now)
        self.debug.after(packet)

    def on_rtcp(self, data: bytes, now: float) -> None:
        try:
            summary = parse_compound(data)
        except RtcpError:
            return
        if summary.sr_ntp_middle is not None:
            self.rtcp.on_sender_report(summary.sr_ntp_middle, now)


class CallMedia:
    def __init__(self, call_id: str, config: GatewayConfig, ports: PortAllocator,
                 on_drops: DropsListener | None = None) -> None:
        self.call_id = call_id
        self._config = config
        self._ports = ports
        self.legs: list[MediaLeg] = []
        self.port_list: list[int | None] = []
        self.held = False
        self._timeout = RtpTimeout(asyncio.get_running_loop().time())
        self._on_drops = on_drops
        self._drops_reported: dict[tuple[int, str], int] = {}
        self.closed = False

    async def open(self, plan: AnswerPlan, sinks: Sequence[LegSink],
                   on_dtmf: Callable[[MediaLeg, DtmfEvent], None]) -> None:
        """Bind sockets for every accepted stream; ``sinks`` holds one per accepted stream."""
        accepted = iter(sinks)
        try:
            for stream in plan.streams:
                if not stream.accepted:
                    self.port_list.append(None)
                    continue
                leg = await self._open_leg(stream, next(accepted), on_dtmf)
                self.legs.append(leg)
                self.port_list.append(leg.endpoint.port)
        except BaseException:
            self.close_sockets()
            raise

    async def _open_leg(self, stream: AnsweredStream, sink: LegSink,
                        on_dtmf: Callable[[MediaLeg, DtmfEvent], None]) -> MediaLeg:
        """The receiver (pipeline, RTCP schedule, debug log) first; the endpoint is made with
        it, so what the socket accepts has one place to go from the first datagram on."""
        leg_box: list[MediaLeg] = []
        pipeline = InboundLeg(self._settings(stream), sink, lambda ev: on_dtmf(leg_box[0], ev))
        receiver = LegReceiver(pipeline, RtcpScheduler(),
                               LegDebugLog(self.call_id, sink.channel, pipeline))
        endpoint = RtpEndpoint(_payload_types(stream), self._config.rtp.symmetric, receiver)
        self._set_remote(endpoint, stream)
        try:
            await self._bind(endpoint, stream.rtcp_mux)
        except BaseException:
            pipeline.discard()
            raise
        leg = MediaLeg(stream, endpoint, pipeline, sink, receiver.rtcp, secrets.randbits(32))
        leg_box.append(leg)
        receiver.debug.opened(stream, self._config.rtp, endpoint)
        leg.rtcp.start(asyncio.get_running_loop().time())
        return leg

    def _settings(self, stream: AnsweredStream) -> LegSettings:
        rtp = self._config.rtp
        assert stream.pt is not None and stream.encoding is not None
        return LegSettings(stream.encoding, stream.pt, stream.dtmf_pt, stream.ptime_ms,
                           rtp.jitter_depth_ms, rtp.jitter_mode == "adaptive",
                           self._config.triton.sample_rate_hz, cn_payload_type=stream.cn_pt,
                           dtmf_events=_event_codes(stream.dtmf_events),
                           max_fill_s=rtp.timeout_s, resampler=rtp.resampler)

    @staticmethod
    def _set_remote(endpoint: RtpEndpoint, stream: AnsweredStream) -> None:
        if stream.remote_address and stream.remote_port:
            endpoint.remote = (stream.remote_address, stream.remote_port)
            if stream.remote_rtcp_port:
                endpoint.remote_rtcp = (stream.remote_address, stream.remote_rtcp_port)

    async def _bind(self, endpoint: RtpEndpoint, rtcp_mux: bool) -> None:
        for _ in range(min(self._ports.free, 50) or 1):
            port = self._ports.allocate()
            try:
                await endpoint.open(self._config.rtp.bind_address, port, rtcp_mux)
            except OSError:
                self._ports.skip(port)       # held by another process: try the next pair
                continue
            endpoint.port = port
            return
        raise PortsExhausted("no bindable RTP port pair in the configured range")

    def update(self, plan: AnswerPlan) -> None:
        """re-INVITE: new remote addresses and hold state."""
        for stream, leg in zip(plan.accepted, self.legs, strict=False):
            self._set_remote(leg.endpoint, stream)
            leg.stream = stream
        directions = [s.remote_direction for s in plan.accepted]
        self.held = bool(directions) and all(d in HELD_DIRECTIONS for d in directions)
        self._timeout.activity(asyncio.get_running_loop().time())

    def tick(self, now: float) -> str | None:
        """Shared media clock: release held audio, send due RTCP; the reason to hang up, if any."""
        for leg in self.legs:
            leg.pipeline.tick(now)
            self._maybe_send_rtcp(leg, now)
            last = leg.endpoint.stats.last_packet_at
            if last is not None:
                self._timeout.activity(last)
        self._report_drops()
        if self.held:
            self._timeout.activity(now)
        if self.held or not self.legs:
            return None
        return self._timeout.check(now, self._config.rtp.timeout_s)

    def _report_drops(self) -> None:
        if self._on_drops is None:
            return
        for index, leg in enumerate(self.legs):
            for reason, count in leg.drop_counts().items():
                key = (index, reason)
                new = count - self._drops_reported.get(key, 0)
                if new > 0:
                    self._drops_reported[key] = count
                    self._on_drops(reason, new)

    def _maybe_send_rtcp(self, leg: MediaLeg, now: float) -> None:
        due = leg.rtcp.next_due()
        sender = leg.sender if leg.sender is not None and leg.sender.packets_sent else None
        if due is None or due > now or (leg.pipeline.rtp_stats.received == 0 and not sender):
            return
        block = leg.pipeline.rtp_stats.report_block()
        lsr, dlsr = leg.rtcp.lsr_dlsr(now)
        media_ssrc = leg.pipeline.ssrc if leg.pipeline.ssrc is not None else leg.endpoint.ssrc
        report = ReceiverBlock(media_ssrc or 0, block.fraction_lost, block.packets_lost,
                               block.highest_sequence, block.jitter, lsr, dlsr)
        cname = f"asr-gateway@{self.call_id}"
        if sender is not None:       # RFC 3550 6.4.1: a sender reports with an SR
            data = build_sender_report(
                ssrc=sender.ssrc, unix_s=time.time(), rtp_ts=sender.rtp_timestamp,
                packets_sent=sender.packets_sent, octets_sent=sender.octets_sent, cname=cname,
                report=report if leg.pipeline.rtp_stats.received else None)
        else:
            data = build_receiver_report(
                ssrc=leg.ssrc, media_ssrc=report.media_ssrc, fraction_lost=report.fraction_lost,
                packets_lost=report.packets_lost, highest_sequence=report.highest_sequence,
                jitter=report.jitter, lsr=lsr, dlsr=dlsr, cname=cname)
        leg.endpoint.send_rtcp(data)
        leg.rtcp.sent(now)

    def close(self) -> None:
        """Flush every pipeline (the last audio reaches ASR/recording), free the ports."""
        if self.closed:
            return
        self.closed = True
        for leg in self.legs:
            leg.pipeline.close()
        self._report_drops()
        self.close_sockets()

    def close_sockets(self) -> None:
        for leg in self.legs:
            leg.endpoint.close()
        for port in self.port_list:
            if port is not None:
                self._ports.release(port)
        self.port_list = [None for _ in self.port_list]

    def stats(self) -> list[dict[str, Any]]:
        return [{"channel": leg.channel, "port": leg.endpoint.port,
                 "remote": _addr(leg.endpoint.latched or leg.endpoint.remote),
                 "ssrc": leg.endpoint.ssrc if leg.pipeline.ssrc is None else leg.pipeline.ssrc,
                 **leg.endpoint.stats.to_dict(), **leg.pipeline.stats(),
                 "dropped": leg.drop_counts(), **leg.sink.summary()} for leg in self.legs]


def _payload_types(stream: AnsweredStream) -> frozenset[int]:
    """What the endpoint lets through: the codec, telephone-event and comfort noise."""
    return frozenset(p for p in (stream.pt, stream.dtmf_pt, stream.cn_pt) if p is not None)


def _event_codes(events: str | None) -> frozenset[int] | None:
    """The telephone events we answered; RFC 4733's 0-15 when the list cannot be read."""
    if events is None:
        return None
    try:
        return parse_event_list(events)
    except ValueError:
        return RFC4733_DEFAULT_EVENTS


def _addr(addr: tuple[str, int] | None) -> str | None:
    return f"{addr[0]}:{addr[1]}" if addr else None
