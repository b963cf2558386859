"""Debug events for one RTP leg (``logging.level = "debug"``): what an operator debugging a
PBX wants to see about the media, once per change rather than per packet.

``rtp.stream_opened`` (socket bound: codec, payload types, ptime, where SDP says RTP comes
from), ``rtp.stream_started`` (first accepted packet: latched source, SSRC, payload type),
``rtp.latched`` (the accepted source address changed), ``rtp.ssrc_changed``,
``rtp.payload_type_changed`` (audio, comfort noise, telephone-event) and
``rtp.jitter_restart`` (the jitter buffer started a new stream). A shell: the leg's packet
receiver calls :meth:`LegDebugLog.after` after each packet; it looks at the endpoint (the
one :meth:`LegDebugLog.opened` named) and the pipeline and only logs.

Layer: shell.
"""

from __future__ import annotations

from typing import Any

from gateway.config import RtpConfig
from gateway.logs import debug_enabled, get_logger
from gateway.media.endpoint import RtpEndpoint
from gateway.media.leg import InboundLeg
from gateway.media.rtp import RtpPacket
from gateway.sip.sdp import AnsweredStream


def _addr(addr: tuple[str, int] | None) -> str | None:
    return None if addr is None else f"{addr[0]}:{addr[1]}"


class LegDebugLog:
    def __init__(self, call_id: str, channel: str, pipeline: InboundLeg) -> None:
        self._log = get_logger("media", call_id=call_id, channel=channel)
        self._endpoint: RtpEndpoint | None = None
        self._pipeline = pipeline
        self._state: tuple[Any, ...] | None = None

    def opened(self, stream: AnsweredStream, rtp: RtpConfig, endpoint: RtpEndpoint) -> None:
        """The leg's endpoint is bound (before any packet is read from it)."""
        self._endpoint = endpoint
        self._log = self._log.bind(port=endpoint.port)
        self._log.debug("rtp.stream_opened", codec=stream.encoding, payload_type=stream.pt,
                        dtmf_payload_type=stream.dtmf_pt, cn_payload_type=stream.cn_pt,
                        ptime_ms=stream.ptime_ms, rtcp_mux=stream.rtcp_mux,
                        sdp_remote=_addr((stream.remote_address, stream.remote_port or 0)
                                         if stream.remote_address else None),
                        jitter_depth_ms=rtp.jitter_depth_ms, jitter_mode=rtp.jitter_mode,
                        resampler=rtp.resampler, symmetric=rtp.symmetric)

    def after(self, packet: RtpPacket) -> None:
        """The pipeline has taken ``packet``: log what changed (debug level only)."""
        if debug_enabled() and self._endpoint is not None:
            self._observe(self._endpoint, packet)

    def _observe(self, ep: RtpEndpoint, packet: RtpPacket) -> None:
        jb = self._pipeline.jitter.stats
        played = self._pipeline.ssrc  # the stream played: a stray SSRC logs nothing
        state = (ep.latched, played, packet.payload_type, jb.restarts)
        before, self._state = self._state, state
        if before == state:
            return
        if before is None:
            self._log.debug("rtp.stream_started", source=_addr(ep.latched), ssrc=played,
                            payload_type=packet.payload_type, sequence=packet.sequence_number)
            return
        latched, ssrc, pt, restarts = before
        if ep.latched != latched:
            self._log.debug("rtp.latched", source=_addr(ep.latched), previous=_addr(latched))
        if played != ssrc:
            self._log.debug("rtp.ssrc_changed", ssrc=played, previous=ssrc,
                            sequence=packet.sequence_number)
        if packet.payload_type != pt:
            self._log.debug("rtp.payload_type_changed", payload_type=packet.payload_type,
                            previous=pt, kind=self._kind(packet.payload_type))
        if jb.restarts != restarts:
            self._log.debug("rtp.jitter_restart", restarts=jb.restarts, ssrc=packet.ssrc,
                            sequence=packet.sequence_number, timestamp=packet.timestamp)

    def _kind(self, pt: int) -> str:
        s = self._pipeline.settings
        if pt == s.payload_type:
            return s.encoding
        if pt == s.dtmf_payload_type:
            return "telephone-event"
        if pt == s.cn_payload_type:
            return "CN"
        return "other"
