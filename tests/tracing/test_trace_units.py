"""The pure parts: how a record's headers tell its age and which copy it is; which OTEL_* variables turn tracing
on; log lines inside a span carry its ids."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given, strategies as st
from opentelemetry.trace import SpanKind

from voicecall.runtime import age, logging as vlog, times, tracing


def headers(received: str | None, event: str | None = None, replay: bool = False) -> list[tuple[str, bytes]]:
    result = [("ce_id", b"x")]
    if event is not None:
        result.append(("ce_time", event.encode()))
    if received is not None:
        result.append(("voicecall_received", received.encode()))
    if replay:
        result.append(("voicecall-replay-id", b"r1"))
    return result


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_epoch_reads_what_the_pipeline_writes(epoch_ms: int) -> None:
    assert age.epoch(times.iso_ms(epoch_ms).encode()) == pytest.approx(epoch_ms / 1000)
    assert age.epoch(times.iso_ms(epoch_ms - epoch_ms % 1000).encode()[:-5] + b"Z") == epoch_ms // 1000


def test_epoch_reads_offsets_and_refuses_what_is_not_a_time() -> None:
    assert age.epoch(b"2019-01-24T11:04:49+08:00") == age.epoch(b"2019-01-24T03:04:49Z")
    for bad in (b"", b"yesterday", b"2019-13-24T03:04:49.000Z", b"2019-01-24T03:04:49.abcZ", b"\xff\xfe"):
        assert age.epoch(bad) is None, bad


def test_classify_tells_first_pushes_re_pushes_and_replays() -> None:
    received = "2019-01-24T05:10:02.500Z"
    at = age.epoch(received.encode())
    assert age.classify(headers(received, "2019-01-24T05:10:00Z")) == ("first", at)
    # The platform's re-push comes an hour (or more) after the call; a status push has no re-push.
    assert age.classify(headers(received, "2019-01-24T03:05:16Z")) == ("repush", at)
    assert age.classify(headers(received, "2019-01-24T04:45:00Z")) == ("first", at)  # within half an hour
    assert age.classify(headers(received, "2019-01-24T03:05:16Z", replay=True)) == ("replay", at)
    assert age.classify(headers(received, "not a time")) == ("first", at)
    assert age.classify(headers(None, "2019-01-24T03:05:16Z")) is None  # another producer's record
    assert age.classify(headers("garbage")) is None


def test_the_histogram_counts_each_copy_in_its_own_series() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    histogram = age.EventAge(registry)
    now = age.epoch(b"2019-01-24T05:10:03.000Z")
    assert now is not None
    histogram.observe("billing", [headers("2019-01-24T05:10:02.990Z", "2019-01-24T05:10:00Z"),
                                  headers("2019-01-24T05:10:02.000Z", "2019-01-24T03:05:16Z"),
                                  headers(None)], now)
    text = generate_latest(registry).decode()
    assert 'voicecall_event_age_seconds_bucket{le="0.01",push="first",stage="billing"} 1.0' in text
    assert 'voicecall_event_age_seconds_bucket{le="0.005",push="first",stage="billing"} 0.0' in text
    assert 'voicecall_event_age_seconds_bucket{le="0.5",push="repush",stage="billing"} 0.0' in text
    assert 'voicecall_event_age_seconds_bucket{le="1.0",push="repush",stage="billing"} 1.0' in text
    assert 'voicecall_event_age_seconds_bucket{le="+Inf",push="repush",stage="billing"} 1.0' in text
    assert 'voicecall_event_age_seconds_count{push="first",stage="billing"} 1.0' in text
    assert age.BUCKETS[0] == 0.005 and age.BUCKETS[-1] == 86400.0


@pytest.mark.parametrize(("env", "exporters"), [
    ({}, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
    ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, []),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
])
def test_tracing_is_on_only_when_the_otel_variables_ask(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                        exporters: list[str]) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER",
                 "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing.TracingSettings().exporters() == exporters
    if not exporters:
        assert tracing.setup("test") is False and tracing.ACTIVE is False


def test_a_bad_exporter_stops_the_process_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(SystemExit):
        tracing.setup("test")
    assert "OTEL_TRACES_EXPORTER" in capsys.readouterr().err
    assert tracing.ACTIVE is False


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The project's log setup writing JSON lines into a buffer; the previous setup back afterwards (later tests'
    stages log on)."""
    saved, handlers = structlog.get_config(), logging.getLogger().handlers[:]
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    vlog.setup("INFO", "json")
    try:
        yield buffer
    finally:
        structlog.configure(**saved)
        logging.getLogger().handlers[:] = handlers


def test_log_lines_inside_a_record_span_carry_its_ids(spans: Any, log_lines: io.StringIO) -> None:
    log = vlog.get("test-trace-ids")

    class Consumed:
        topic, partition, offset, key = "t.fee.raw", 0, 7, b"s-1"
        headers = (("ce_traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),)

    span = tracing.consumer_span(Consumed(), "voicecall.dedup", "dedup")
    log.info("before")
    with tracing.current(span):
        log.info("while handling")
    span.end()
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.startswith("{")]
    outside, inside = (next(line for line in lines if line["event"] == name) for name in ("before", "while handling"))
    assert "trace_id" not in outside and "span_id" not in outside
    assert inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert inside["span_id"] == f"{span.get_span_context().span_id:016x}"
    finished, = spans.get_finished_spans()
    assert finished.kind == SpanKind.CONSUMER and finished.parent.span_id == 0x00f067aa0ba902b7
    assert finished.attributes["sessionId"] == "s-1"


def test_replay_marks_the_spans_it_re_emits_and_the_stages_see_the_mark(spans: Any) -> None:
    class Original:
        topic, partition, offset, key = "t.fee.raw", 2, 41, b"s-9"
        headers = (("ce_traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                   ("voicecall_received", b"2019-01-24T03:05:16.401Z"))

    span = tracing.replay_span(Original(), "t.fee.raw", "replay-1")
    copied = tracing.stamped([*Original.headers, ("voicecall-replay-id", b"replay-1")], span)
    span.end()

    class Copy:
        topic, partition, offset, key = "t.fee.raw", 2, 97, b"s-9"
        headers = copied

    downstream = tracing.consumer_span(Copy(), "voicecall.dedup", "dedup")
    downstream.end()
    replayed, processed = spans.get_finished_spans()
    assert replayed.kind == SpanKind.PRODUCER and replayed.attributes["voicecall.replayed"] is True
    assert replayed.attributes["voicecall.replay.id"] == "replay-1"
    assert replayed.attributes["voicecall.replay.origin"] == "t.fee.raw/2/41"
    assert replayed.parent.span_id == 0x00f067aa0ba902b7  # the original trace goes on
    assert processed.parent.span_id == replayed.context.span_id
    assert processed.attributes["voicecall.replay.id"] == "replay-1"
    assert [k for k, _ in copied].count("ce_traceparent") == 1
    assert age.classify(copied) is not None and age.classify(copied)[0] == "replay"  # type: ignore[index]
