"""OpenTelemetry traces across Kafka, in one place: the ingress's span per push, a consumer span per record in every
stage, the trace context on every record, and the trace ids on log lines.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``OTEL_TRACES_EXPORTER``
is set, as the OpenTelemetry environment conventions say; ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none`` keep it off. The SDK itself reads the rest (``OTEL_TRACES_SAMPLER`` and its
argument, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_*``, the exporter's headers and timeout).
Spans are exported with OTLP over HTTP (protobuf). The packages are the optional extra ``voicecall-pipeline[tracing]``
and are imported only when tracing is on: with it off, the hot paths test :data:`ACTIVE` and nothing else.

The context travels as the CloudEvents distributed-tracing extension: ``ce_traceparent`` (W3C ``traceparent``) and
``ce_tracestate`` headers on every record. Spans follow the OpenTelemetry messaging conventions for Kafka: the
ingress's HTTP server span of the push (the child of a ``traceparent`` the request carried) is the creation context
of the push's records; in every consumer a ``process <topic>`` consumer span per record whose parent is the context
the record carries (one trace from the push to billing and the recording), also recorded as a link; the context of
that span goes on the records it produces. Every span has a ``sessionId`` attribute when the record has one
(its key); spans of records that ``voicecall replay copy`` re-emitted carry ``voicecall.replay.id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from voicecall.runtime import logging as vlog
from voicecall.runtime.cloudevents import REPLAY_ID

TRACEPARENT = "ce_traceparent"
TRACESTATE = "ce_tracestate"
_OURS = (TRACEPARENT, TRACESTATE)

ACTIVE = False  # the hot paths' one test
_tracer: Any = None
_provider: Any = None
_trace: Any = None  # the opentelemetry.trace module, once imported
_propagator: Any = None


class TracingSettings(BaseSettings):
    """The OpenTelemetry variables that decide whether tracing is on (the SDK reads the others itself)."""

    model_config = SettingsConfigDict(env_prefix="OTEL_", extra="ignore")

    sdk_disabled: bool = Field(False, description="true: no tracing, whatever else is set")
    traces_exporter: str | None = Field(
        None, pattern=r"^\s*(otlp|console|none)(\s*,\s*(otlp|console|none))*\s*$",
        description="otlp (OTLP over HTTP), console, or none; set, it turns tracing on (default with an endpoint: "
                    "otlp)")
    exporter_otlp_endpoint: str | None = Field(None, description="OTLP/HTTP base URL (e.g. http://collector:4318); "
                                                                 "set, it turns tracing on")
    exporter_otlp_traces_endpoint: str | None = Field(None, description="OTLP/HTTP traces URL, in place of the "
                                                                        "base URL + /v1/traces")
    service_name: str | None = Field(None, description="service.name of the spans (default voicecall-<service>)")

    def exporters(self) -> list[str]:
        if self.sdk_disabled:
            return []
        if self.traces_exporter is not None:
            names = [name.strip() for name in self.traces_exporter.split(",")]
            return [name for name in names if name != "none"]
        return ["otlp"] if self.exporter_otlp_endpoint or self.exporter_otlp_traces_endpoint else []


def setup(service: str) -> bool:
    """Turn tracing on for this process when the environment asks for it (once; later calls change nothing)."""
    if ACTIVE:
        return True
    from voicecall.runtime import config

    settings = config.load(TracingSettings)
    exporters = settings.exporters()
    if not exporters:
        return False
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError as error:
        raise SystemExit(f"OTEL_TRACES_EXPORTER/OTEL_EXPORTER_OTLP_ENDPOINT ask for traces, which need the optional "
                         f"extra voicecall-pipeline[tracing] ({error.name} is missing)") from error

    # service.name: OTEL_SERVICE_NAME, else voicecall-<service>; other attributes from OTEL_RESOURCE_ATTRIBUTES.
    resource = Resource.create({SERVICE_NAME: settings.service_name or f"voicecall-{service}"})
    provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    return True


def install(provider: Any) -> None:
    """Trace with ``provider`` (an SDK ``TracerProvider``); tests install one with an in-memory exporter."""
    global ACTIVE, _tracer, _provider, _trace, _propagator
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _trace, _propagator, _provider = trace, TraceContextTextMapPropagator(), provider
    _tracer = provider.get_tracer("voicecall")
    vlog.current_trace_ids = _current_ids  # log lines get trace_id/span_id
    ACTIVE = True


def uninstall() -> None:
    """Tracing off again (flushing what the provider holds)."""
    global ACTIVE, _tracer, _provider
    if _provider is not None:
        _provider.force_flush()
    ACTIVE, _tracer, _provider = False, None, None
    vlog.current_trace_ids = None


# -- spans -----------------------------------------------------------------------------------------------------


def _carrier(headers: Sequence[tuple[str, bytes]] | None) -> tuple[dict[str, str], str | None]:
    carrier: dict[str, str] = {}
    replay: str | None = None
    for key, value in headers or ():
        if key in _OURS and value is not None:
            carrier[key[3:]] = value.decode("ascii", "replace")
        elif key == REPLAY_ID and value is not None:
            replay = value.decode("utf-8", "replace")
    return carrier, replay


def server_span(request_headers: Mapping[str, str], method: str, route: str) -> Any:
    """The ingress's span of one push, the child of the request's ``traceparent`` when it has one."""
    context = _propagator.extract({k: request_headers[k] for k in ("traceparent", "tracestate")
                                   if k in request_headers})
    return _tracer.start_span(f"{method} {route}", context=context, kind=_trace.SpanKind.SERVER,
                              attributes={"http.request.method": method, "http.route": route})


def push_records(records: Sequence[Any], session_ids: Sequence[str]) -> None:
    """The current (ingress) span is the creation context of a push's records: each gets its context, and the span
    the push's ``sessionId`` and destination. One span per push: a producer span of its own doubled the cost."""
    span = _trace.get_current_span()
    if session_ids:
        span.set_attribute("sessionId", session_ids[0] if len(session_ids) == 1 else list(session_ids))
    if records:
        span.set_attributes({"messaging.system": "kafka", "messaging.destination.name": records[0].topic,
                             "messaging.batch.message_count": len(records)})
    context = context_headers(span)
    for record in records:
        record.headers.extend(context)


def consumer_span(record: Any, group: str, stage: str) -> Any:
    """A ``process <topic>`` span for one consumed record, continuing the trace the record carries."""
    carrier, replay = _carrier(record.headers)
    context = _propagator.extract(carrier) if carrier else None
    attributes: dict[str, Any] = {
        "messaging.system": "kafka", "messaging.operation.type": "process", "messaging.operation.name": "process",
        "messaging.destination.name": record.topic, "messaging.destination.partition.id": str(record.partition),
        "messaging.consumer.group.name": group, "messaging.kafka.offset": record.offset, "voicecall.stage": stage}
    if record.key is not None:
        attributes["sessionId"] = attributes["messaging.kafka.message.key"] = record.key.decode("utf-8", "replace")
    if replay is not None:
        attributes["voicecall.replay.id"] = replay
    links = []
    if context is not None:
        linked = _trace.get_current_span(context).get_span_context()
        if linked.is_valid:
            links.append(_trace.Link(linked))
    return _tracer.start_span(f"process {record.topic}", context=context, kind=_trace.SpanKind.CONSUMER,
                              attributes=attributes, links=links)


def replay_span(record: Any, target: str, replay_id: str) -> Any:
    """The span of a record ``voicecall replay copy`` re-emits: a producer span in the record's own trace."""
    carrier, _ = _carrier(record.headers)
    context = _propagator.extract(carrier) if carrier else None
    attributes: dict[str, Any] = {
        "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.operation.name": "send",
        "messaging.destination.name": target, "voicecall.replayed": True, "voicecall.replay.id": replay_id,
        "voicecall.replay.origin": f"{record.topic}/{record.partition}/{record.offset}"}
    if record.key is not None:
        attributes["sessionId"] = record.key.decode("utf-8", "replace")
    return _tracer.start_span(f"send {target}", context=context, kind=_trace.SpanKind.PRODUCER, attributes=attributes)


def context_headers(span: Any) -> list[tuple[str, bytes]]:
    """``ce_traceparent`` (and ``ce_tracestate``) of ``span``."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=_trace.set_span_in_context(span))
    return [(f"ce_{key}", value.encode()) for key, value in carrier.items()]


def stamped(headers: Sequence[tuple[str, bytes]], span: Any) -> list[tuple[str, bytes]]:
    """A record's headers with ``span``'s context in place of any it had."""
    result = [(k, v) for k, v in headers if k not in _OURS]
    result.extend(context_headers(span))
    return result


def fail(span: Any, error: BaseException | str) -> None:
    span.set_status(_trace.Status(_trace.StatusCode.ERROR, str(error)[:200]))
    if isinstance(error, BaseException):
        span.record_exception(error)


def current(span: Any) -> contextlib.AbstractContextManager[Any]:
    """``span`` is the current span inside (log lines get its ids; a task created inside inherits it)."""
    return _trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)  # type: ignore[no-any-return]


@contextlib.contextmanager
def handling(record: Any, group: str, stage: str) -> Iterator[None]:
    """Inside: the record's consumer span is current (tracing on), ended on exit; nothing when tracing is off."""
    if not ACTIVE:
        yield
        return
    span = consumer_span(record, group, stage)
    try:
        with current(span):
            yield
    except BaseException as error:
        fail(span, error)
        raise
    finally:
        span.end()


def current_headers() -> list[tuple[str, bytes]]:
    """The current span's context as record headers; empty when tracing is off or no span is current."""
    if not ACTIVE:
        return []
    span = _trace.get_current_span()
    return context_headers(span) if span.get_span_context().is_valid else []


def _current_ids() -> tuple[str, str] | None:
    context = _trace.get_current_span().get_span_context()
    return (f"{context.trace_id:032x}", f"{context.span_id:016x}") if context.is_valid else None
