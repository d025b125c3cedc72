"""The downloader's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DOWNLOADS = Counter("voicecall_recordings_downloads_total", "Recordings by outcome",
                    ["outcome"])  # stored, already-stored, failed, retry
BYTES = Counter("voicecall_recordings_bytes_total", "Bytes of recordings stored")
LATENCY = Histogram("voicecall_recordings_download_seconds", "Duration of one successful download attempt",
                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900))
IN_FLIGHT = Gauge("voicecall_recordings_in_flight", "Downloads transferring now")
RETRY_BACKLOG = Gauge("voicecall_recordings_retry_backlog", "Recordings waiting for their next attempt")
SKIPPED = Counter("voicecall_recordings_skipped_total", "Fee records without a recording to fetch, by reason",
                  ["reason"])
FAILED = Counter("voicecall_recordings_failed_total", "Recordings given up on, by reason", ["reason"])
