"""The pipeline's Grafana dashboard, made with grafana-foundation-sdk: ``python deploy/k8s/monitoring/dashboard.py``
(``make dashboard``) writes voicecall-pipeline.json next to this file; tests/deploy checks that the committed file is
what this code makes and that every panel queries metrics and labels the services export.

The first row answers "is billing late, and where does the time go?" (docs/operations.md, "Billing is late").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).with_name("voicecall-pipeline.json")
UID = "voicecall-pipeline"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"


def panel(title: str, unit: str, description: str, *queries: tuple[str, str]) -> timeseries.Panel:
    """A time series panel of ``(expr, legend)`` queries."""
    built = (timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
             .height(8).span(8).fill_opacity(10))
    for index, (expr, legend) in enumerate(queries):
        built = built.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(65 + index)))
    return built


def p99(metric: str, by: str, where: str = "") -> str:
    return f"histogram_quantile(0.99, sum by ({by}, le) (rate({metric}_bucket{where}[{RATE}])))"


def rate(metric: str, by: str, where: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{where}[{RATE}]))"


ROWS: list[tuple[str, list[timeseries.Panel]]] = [
    ("Is billing late?", [
        panel("Event age p99, first pushes", "s",
              "Seconds from the ingress receiving a push to each stage committing its record (p99). Billing above "
              "the objective line fires VoicecallBillingLate; the first stage whose line rises is where time goes.",
              (p99("voicecall_event_age_seconds", "stage", '{push="first"}'), "{{stage}}"),
              ("max(voicecall_slo_billing_seconds)", "objective (billing)")),
        panel("Event age p99, re-pushes and replays", "s",
              "Late by design (the platform re-pushes hourly; a replay re-emits old records): kept apart from the "
              "objective.",
              (p99("voicecall_event_age_seconds", "stage, push", '{push!="first"}'), "{{stage}} {{push}}")),
        panel("Consumer lag", "short", "Records each consumer has yet to read (all partitions): the stages' own "
                                       "gauge, and Kafka Exporter's view of every group (recordings included).",
              ("sum by (stage) (voicecall_stage_consumer_lag)", "{{stage}}"),
              (r'sum by (consumergroup) (kafka_consumergroup_lag{consumergroup=~"voicecall\\..*"})',
               "{{consumergroup}} (exporter)")),
    ]),
    ("Ingress", [
        panel("Pushes by route and status", "reqps", "HTTP answers per second: 200 durable; 4xx kept in deadletter; "
                                                     "503 neither Kafka nor the spool took the push.",
              (rate("voicecall_ingress_requests_total", "path, status"), "{{path}} {{status}}")),
        panel("Durable latency p99", "s", "Request start to the push being durable, by where it went (kafka, spool).",
              (p99("voicecall_ingress_durable_seconds", "via"), "{{via}}")),
        panel("Spool", "bytes", "Bytes waiting in the ingress spools (not in Kafka yet) and the oldest entry's age.",
              ("sum by (pod) (voicecall_ingress_spool_bytes)", "{{pod}} bytes"),
              ("max by (pod) (voicecall_ingress_spool_oldest_age_seconds)", "{{pod}} oldest (s)")),
    ]),
    ("Stages", [
        panel("Throughput", "rps", "Input records processed per second, and records produced per topic.",
              (rate("voicecall_stage_records_in_total", "stage"), "{{stage}} in"),
              (rate("voicecall_stage_records_out_total", "stage, topic"), "{{stage}} → {{topic}}")),
        panel("Transaction latency p99", "s", "Begin to commit acknowledged, per stage.",
              (p99("voicecall_stage_transaction_seconds", "stage"), "{{stage}}")),
        panel("Transaction aborts and fencing", "ops", "Aborted transactions (the partition is prepared again) and "
                                                       "producers fenced by a newer owner.",
              (rate("voicecall_stage_transaction_aborts_total", "stage"), "{{stage}} aborts"),
              (rate("voicecall_stage_fenced_total", "stage"), "{{stage}} fenced")),
    ]),
    ("Dedup, billing, recordings", [
        panel("Dedup", "rps", "Unique records passed on, duplicates dropped, conflicting duplicates deadlettered.",
              ("sum(rate(voicecall_dedup_unique_total[$__rate_interval]))", "unique"),
              ("sum(rate(voicecall_dedup_duplicates_total[$__rate_interval]))", "duplicates"),
              ("sum(rate(voicecall_dedup_conflicts_total[$__rate_interval]))", "conflicts")),
        panel("Billed minutes", "short", "Billed minutes per second, by serviceType.",
              (rate("voicecall_billing_minutes_total", "service_type"), "{{service_type}}")),
        panel("Recordings by outcome", "ops", "Downloads stored, already stored, retried and failed.",
              (rate("voicecall_recordings_downloads_total", "outcome"), "{{outcome}}")),
    ]),
    ("Deadletter", [
        panel("Deadletter by reason", "ops", "Records kept in the deadletter topic, by who refused them and why.",
              (rate("voicecall_ingress_deadletter_total", "reason"), "ingress {{reason}}"),
              (rate("voicecall_billing_deadletters_total", "reason"), "billing {{reason}}"),
              (rate("voicecall_recordings_failed_total", "reason"), "recording failed {{reason}}")),
        panel("Processing errors", "ops", "Records whose processing raised (deadlettered with processing-error).",
              (rate("voicecall_stage_process_errors_total", "stage"), "{{stage}}")),
        panel("Deadletter records produced", "ops", "Records written to the deadletter topic by the stages.",
              (rate("voicecall_stage_records_out_total", "stage", '{topic=~".*deadletter"}'), "{{stage}}")),
    ]),
]


def build() -> dashboard.Dashboard:
    board = (dashboard.Dashboard("Voicecall pipeline").uid(UID).tags(["voicecall"]).refresh("30s")
             .time("now-6h", "now").timezone("utc")
             .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")))
    for title, panels in ROWS:
        board = board.with_row(dashboard.Row(title))
        for item in panels:
            board = board.with_panel(item)
    return board


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def main() -> int:
    text = render()
    json.loads(text)  # what Grafana will read
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
