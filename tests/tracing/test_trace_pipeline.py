"""One trace from an HTTP push through fee.raw, dedup, fee.unique, billing and recordings (real broker, every stage
in this process, spans in memory); the event age each stage observes, first pushes apart from re-pushes."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY, generate_latest
from tracing_helpers import cdr, running_pipeline

from kafka_helpers import read_to_end
from voicecall import topics
from voicecall.runtime import cloudevents
from voicecall.runtime.age import AGE

UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"


async def push(url: str, records: list[dict[str, Any]], **headers: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{url}/notify/fee", headers=headers,
                                                          json={"eventType": "fee", "feeLst": records}) as answer:
        assert answer.status == 200, await answer.text()


async def finished(spans: Any, trace_id: int, count: int, timeout: float = 30.0) -> list[Any]:
    """The finished spans of ``trace_id`` once there are ``count`` of them (a consumer ends its span after the
    commit, which can come a moment after its output is readable)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


def traceparent(span: Any) -> str:
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"


async def test_one_trace_from_the_push_to_billing_and_the_recording(kafka_bootstrap: str, spans: Any,
                                                                     tmp_path: Path) -> None:
    session = f"traced-{uuid.uuid4().hex[:8]}@callenabler245.huaweicaas.com"
    async with running_pipeline(kafka_bootstrap, tmp_path) as pipeline:
        settings = pipeline.settings
        await push(pipeline.url, [cdr(session, datetime.now(UTC) - timedelta(seconds=5))],
                   traceparent=f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01")
        raw = await read_to_end(settings, "fee.raw", expected=1, timeout=60)
        unique = await read_to_end(settings, "fee.unique", expected=1, timeout=60)
        billed = await read_to_end(settings, "billing", expected=1, timeout=60)
        failed = await read_to_end(settings, "recording.failed", expected=1, timeout=90)
        trace = await finished(spans, int(UPSTREAM_TRACE, 16), 4)

    by_kind: dict[str, Any] = {}
    for span in trace:
        stage = span.attributes.get("voicecall.stage")
        by_kind[stage or span.kind.name] = span
    assert set(by_kind) == {"SERVER", "dedup", "billing", "recordings"} and len(trace) == 4, \
        [(s.name, s.kind, dict(s.attributes)) for s in trace]
    server = by_kind["SERVER"]
    dedup, billing, recordings = by_kind["dedup"], by_kind["billing"], by_kind["recordings"]

    # The chain of parents: the caller's span → the push (its records' creation context) → dedup → billing and
    # recordings.
    assert server.parent.span_id == int(UPSTREAM_SPAN, 16) and server.name == "POST /notify/fee"
    assert server.kind == SpanKind.SERVER and server.attributes["http.response.status_code"] == 200
    assert dedup.parent.span_id == server.context.span_id
    assert billing.parent.span_id == dedup.context.span_id
    assert recordings.parent.span_id == dedup.context.span_id
    # Each consumer span also links the producing span (messaging conventions: the creation context).
    assert [link.context.span_id for link in dedup.links] == [server.context.span_id]
    assert [link.context.span_id for link in billing.links] == [dedup.context.span_id]

    fee_raw, fee_unique = topics.name(settings, "fee.raw"), topics.name(settings, "fee.unique")
    assert server.attributes["messaging.destination.name"] == fee_raw
    for span, topic, group in ((dedup, fee_raw, "dedup"), (billing, fee_unique, "billing"),
                               (recordings, fee_unique, "recordings")):
        assert span.kind == SpanKind.CONSUMER and span.name == f"process {topic}"
        assert span.attributes["messaging.system"] == "kafka"
        assert span.attributes["messaging.operation.type"] == "process"
        assert span.attributes["messaging.destination.name"] == topic
        assert span.attributes["messaging.consumer.group.name"].endswith(group)
        assert span.attributes["messaging.kafka.message.key"] == session
    for span in trace:
        assert span.attributes["sessionId"] == session, span.name
        assert span.status.is_ok, (span.name, span.status)

    # Every record carries the context of the span that made it (CloudEvents distributed-tracing extension).
    assert cloudevents.header(raw[0].headers, "ce_traceparent") == traceparent(server)
    assert cloudevents.header(unique[0].headers, "ce_traceparent") == traceparent(dedup)
    assert cloudevents.header(billed[0].headers, "ce_traceparent") == traceparent(billing)
    assert cloudevents.header(failed[0].headers, "ce_traceparent") == traceparent(recordings)
    assert sum(1 for key, _ in unique[0].headers if key == "ce_traceparent") == 1  # replaced, not added


def counted(stage: str, push: str) -> float:
    counts = AGE.series.get((stage, push))
    return sum(counts[:-1]) if counts else 0.0


async def test_the_age_histogram_counts_a_re_pushed_cdr_as_a_re_push(kafka_bootstrap: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    fresh, repushed = f"fresh-{uuid.uuid4().hex[:8]}", f"repushed-{uuid.uuid4().hex[:8]}"
    stages = ("dedup", "billing", "recordings")
    before = {(stage, kind): counted(stage, kind) for stage in stages for kind in ("first", "repush")}
    age_before = AGE.series.get(("billing", "repush"), [0.0])[-1]
    async with running_pipeline(kafka_bootstrap, tmp_path) as pipeline:
        # The platform re-pushes a CDR it got no success answer for an hour later: this copy comes 2 h after the call.
        await push(pipeline.url, [cdr(fresh, now - timedelta(seconds=3))])
        await push(pipeline.url, [cdr(repushed, now - timedelta(hours=2))])
        billed = await read_to_end(pipeline.settings, "billing", expected=2, timeout=60)
        assert {r.key.decode() for r in billed} == {fresh, repushed}
        await read_to_end(pipeline.settings, "recording.failed", expected=2, timeout=90)
        deadline = time.monotonic() + 10  # recordings observes once its task is done, after the event is out
        while time.monotonic() < deadline:
            if counted("recordings", "repush") > before[("recordings", "repush")]:
                break
            await asyncio.sleep(0.1)
    for stage in stages:
        assert counted(stage, "first") - before[(stage, "first")] == 1, stage
        assert counted(stage, "repush") - before[(stage, "repush")] == 1, stage
    # Seconds since the ingress received it, not since the call: the re-push is young at billing too.
    assert 0 < AGE.series[("billing", "repush")][-1] - age_before < 60
    scraped = generate_latest(REGISTRY).decode()
    assert 'voicecall_event_age_seconds_bucket{le="30.0",push="repush",stage="billing"}' in scraped
    assert 'voicecall_event_age_seconds_count{push="first",stage="billing"}' in scraped
