"""`voicecall dev --simulate` with OTEL_EXPORTER_OTLP_ENDPOINT set exports its spans over OTLP/HTTP: a real receiver
(this test's own HTTP server, decoding the protobuf payload with opentelemetry-proto) gets spans of every service,
and the simulator's pushes show as traces from the ingress to billing."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from kafka_helpers import new_prefix
from process_helpers import free_port_run
from voicecall.devenv.plan import CONSUMERS
from voicecall.devenv.ports import free_port
from voicecall.runtime.metrics import bound_port


class Receiver:
    """An OTLP/HTTP traces endpoint: ``spans[trace id]`` = [(service.name, span)]."""

    def __init__(self) -> None:
        self.spans: dict[bytes, list[tuple[str, Span]]] = defaultdict(list)
        self.requests = 0
        self.content_types: set[str] = set()

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.content_types.add(request.content_type)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.requests += 1
        for resource_spans in export.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans[span.trace_id].append((service, span))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def services(self) -> set[str]:
        return {service for found in self.spans.values() for service, _ in found}

    def full_traces(self) -> list[list[tuple[str, Span]]]:
        """Traces holding the ingress's server span and billing's consumer span."""
        return [found for found in self.spans.values()
                if any(s == "voicecall-ingress" and span.kind == Span.SPAN_KIND_SERVER for s, span in found)
                and any(s == "voicecall-billing" and span.kind == Span.SPAN_KIND_CONSUMER for s, span in found)]


async def test_voicecall_dev_exports_spans_to_an_otlp_http_receiver(kafka_bootstrap: str, tmp_path: Path) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.traces)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    env = {**os.environ, "VOICECALL_TOPIC_PREFIX": new_prefix(), "VOICECALL_LOG_FORMAT": "json",
           "VOICECALL_INGRESS_PORT": str(free_port()), "VOICECALL_INGRESS_HOST": "127.0.0.1",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{bound_port(runner)}",
           "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_TRACES_SAMPLER": "parentbased_always_on"}
    log = (tmp_path / "dev.out").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicecall", "dev", "--simulate", "--rate", "5", "--broker", "external",
        "--bootstrap", kafka_bootstrap, "--state-dir", str(tmp_path / "state"), "--partitions", "2",
        "--metrics-base-port", str(free_port_run(len(CONSUMERS))), "--recording-port", str(free_port()),
        env=env, stdout=log, stderr=log, start_new_session=True)
    wanted = {"voicecall-ingress", "voicecall-dedup", "voicecall-billing", "voicecall-recordings"}
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and process.returncode is None:
            if wanted <= receiver.services() and receiver.full_traces():
                break
            await asyncio.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 90)
        log.close()
        await runner.cleanup()
    output = (tmp_path / "dev.out").read_text(errors="replace")
    assert wanted <= receiver.services(), (receiver.services(), output[-3000:])
    assert code == 0, output[-3000:]
    assert receiver.content_types == {"application/x-protobuf"}
    trace = receiver.full_traces()[0]
    by_id = {span.span_id: (service, span) for service, span in trace}
    service, billing = next((s, span) for s, span in trace if s == "voicecall-billing")
    # Billing's span → dedup's → the ingress's span of the push: one chain of parents across three processes.
    chain = [service]
    span = billing
    while span.parent_span_id in by_id:
        service, span = by_id[span.parent_span_id]
        chain.append(service)
    assert chain == ["voicecall-billing", "voicecall-dedup", "voicecall-ingress"], chain
    for _, span in trace:
        assert any(a.key == "sessionId" for a in span.attributes), span.name
