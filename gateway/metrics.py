"""Prometheus metrics, one registry per gateway instance (tests run several).

Layer: shell.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import logs

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
JITTER_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)


class Metrics:
    """Every metric the daemon exports; names are stable API for dashboards."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.active_calls = Gauge("gateway_active_calls", "Calls in progress", registry=r)
        self.calls = Counter("gateway_calls_total", "Calls by outcome", ["outcome"], registry=r)
        self.draining = Gauge("gateway_draining", "1 while draining for shutdown", registry=r)
        self.registration = Gauge(
            "gateway_sip_registered", "1 when the account is registered", ["account"], registry=r)
        self.sip_messages = Counter(
            "gateway_sip_messages_total", "SIP messages", ["direction", "transport"], registry=r)
        self.sip_dropped = Counter(
            "gateway_sip_dropped_total", "SIP input dropped or rejected", ["reason"], registry=r)
        self.sip_retransmissions = Counter(
            "gateway_sip_retransmissions_total", "Retransmissions absorbed or sent",
            ["direction"], registry=r)
        self.rtp_packets = Counter(
            "gateway_rtp_packets_total", "RTP packets", ["direction"], registry=r)
        self.rtp_lost = Counter("gateway_rtp_packets_lost_total", "RTP packets lost", registry=r)
        self.rtp_dropped = Counter(
            "gateway_rtp_dropped_total", "RTP datagrams dropped, by reason: malformed, source, "
            "payload_type, oversized, ssrc, sequence, late, duplicate, dtmf_event; no_port: a call "
            "refused for want of an RTP port", ["reason"], registry=r)
        self.rtp_jitter = Histogram(
            "gateway_rtp_jitter_seconds", "Interarrival jitter per leg at call end",
            buckets=JITTER_BUCKETS_S, registry=r)
        self.asr_latency = Histogram(
            "gateway_asr_latency_seconds", "Audio at a transcript's end reaching the gateway -> "
            "the transcript received; once per transcript event with text",
            ["kind"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.triton_ready = Gauge("gateway_triton_ready", "1 when Triton and models are ready",
                                  registry=r)
        self.triton_errors = Counter(
            "gateway_triton_errors_total", "Triton errors", ["kind"], registry=r)
        self.loop_lag = Histogram(
            "gateway_event_loop_lag_seconds", "How late the event loop runs a 100 ms timer",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0), registry=r)
        self.asr_send_delay = Histogram(
            "gateway_asr_send_delay_seconds", "Newest audio of a request arriving -> the request "
            "sent to Triton; once per request carrying audio never sent before (replays after a "
            "reconnect are not observed again)", buckets=LATENCY_BUCKETS_S, registry=r)
        self.asr_dropped = Counter(
            "gateway_asr_dropped_seconds_total", "Audio dropped unsent because Triton was slow "
            "or down for longer than triton.buffer_s", registry=r)
        self.asr_keepalives = Counter(
            "gateway_asr_keepalives_total", "Requests sent only to keep an idle Triton sequence "
            "open", registry=r)
        self.asr_sequences = Counter(
            "gateway_asr_sequences_total", "ASR sequences started (a channel's stream, and each "
            "replay of it), per model version", ["version"], registry=r)
        self.asr_buffered = Gauge(
            "gateway_asr_buffered_seconds", "Audio held for ASR, summed over channels",
            registry=r)
        self.events = Counter(
            "gateway_events_total", "Events emitted", ["type"], registry=r)
        self.event_sink_errors = Counter(
            "gateway_event_sink_errors_total", "Event sink failures", ["sink"], registry=r)
        self.event_processor_errors = Counter(
            "gateway_event_processor_errors_total", "Event processor failures (the event "
            "went on unchanged, or was dropped by a fail-closed processor)", ["processor"],
            registry=r)
        self.redactions = Counter(
            "gateway_redactions_total", "Personal data removed from events, per entity type "
            "(one per redacted span: a card read in four utterances counts four)", ["entity"],
            registry=r)

        r.register(_LogOutputCollector())

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LogOutputCollector(Collector):
    """The process-wide log output's failure counts (logging is configured before any
    gateway instance exists, so they live in :data:`gateway.logs.OUTPUT`)."""

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily(
            "gateway_log_write_errors", "Log writes that failed, by stream (stdout, stderr); "
            "the line then goes to the next stream", labels=["stream"])
        for stream, count in sorted(logs.OUTPUT.write_errors.items()):
            errors.add_metric([stream], count)
        yield errors
        yield CounterMetricFamily("gateway_log_lines_dropped",
                                  "Log lines no stream could take", value=logs.OUTPUT.dropped)
