"""How old an event is when a stage is done with it: seconds since the ingress received the push.

``voicecall_event_age_seconds{stage, push}`` is a histogram kept as plain integers (like :class:`Tally`: a
prometheus_client ``observe()`` takes a lock per record) and read at scrape time. ``push`` says which copy of an
event this is, as far as its headers tell:

- ``replay``: re-emitted by ``voicecall replay copy`` (it carries the replay id header): days old by design;
- ``repush``: received more than :data:`REPUSH_AFTER` after its own event time (``ce_time``, a CDR's
  ``callEndTime``). The platform pushes a CDR when the call ends and, while it gets no success answer, again every
  hour, up to 6 times; a support engineer's manual push comes later still. Status pushes are never re-sent;
- ``first``: everything else — the copy the billing SLO is about.

Records without a readable receive-time header (another producer's) are not observed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from prometheus_client import REGISTRY
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from voicecall.runtime.cloudevents import RECEIVED, REPLAY_ID
from voicecall.runtime.times import timegm

EVENT_TIME = "ce_time"
FIRST, REPUSH, REPLAY = "first", "repush", "replay"
# Half the platform's re-push interval (1 h): a first push comes seconds after the call ends.
REPUSH_AFTER = 1800.0
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
           1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0)
_BOUNDS = (*map(str, BUCKETS), "+Inf")  # the exposition's "le" labels
Headers = Sequence[tuple[str, bytes]]

_seconds_cache: dict[bytes, int] = {}


def epoch(value: bytes) -> float | None:
    """An RFC 3339 UTC time (``…T03:05:16Z`` or ``…T03:05:16.402Z``, what the pipeline writes) → epoch seconds;
    other offsets through ``fromisoformat``; None when unreadable. Whole seconds are cached (one parse per
    second of traffic)."""
    if len(value) in (20, 24) and value[10:11] == b"T" and value[-1:] == b"Z":
        head = value[:19]
        second = _seconds_cache.get(head)
        if second is None:
            try:
                second = timegm(int(head[0:4]), int(head[5:7]), int(head[8:10]), int(head[11:13]),
                                int(head[14:16]), int(head[17:19]))
            except ValueError:
                return None
            if len(_seconds_cache) > 4096:
                _seconds_cache.clear()
            _seconds_cache[head] = second
        if len(value) == 20:
            return float(second)
        try:
            return second + int(value[20:23]) / 1000
        except ValueError:
            return None
    try:
        return datetime.fromisoformat(value.decode().replace("Z", "+00:00")).timestamp()
    except (ValueError, UnicodeDecodeError):
        return None


def classify(headers: Headers) -> tuple[str, float] | None:
    """(push kind, receive time) of a record from its headers; None without a readable receive time."""
    received = event = None
    replayed = False
    for key, value in headers:
        if key == RECEIVED:
            received = value
        elif key == EVENT_TIME:
            event = value
        elif key == REPLAY_ID:
            replayed = True
    if received is None:
        return None
    at = epoch(received)
    if at is None:
        return None
    if replayed:
        return REPLAY, at
    if event is not None:
        happened = epoch(event)
        if happened is not None and at - happened > REPUSH_AFTER:
            return REPUSH, at
    return FIRST, at


class EventAge(Collector):
    """The histogram; :meth:`observe` takes a batch of records' headers and one "now"."""

    name = "voicecall_event_age_seconds"
    _labelnames = ("stage", "push")  # read by the tests that check rules and dashboards against real labels

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.series: dict[tuple[str, str], list[float]] = {}  # buckets' counts (+Inf last), then the sum
        registry.register(self)

    def observe(self, stage: str, batch: Iterable[Headers], now: float) -> None:
        series = self.series
        for headers in batch:
            found = classify(headers)
            if found is None:
                continue
            kind, received = found
            age = max(0.0, now - received)
            counts = series.get((stage, kind))
            if counts is None:
                counts = series[(stage, kind)] = [0.0] * (len(BUCKETS) + 2)
            counts[bisect_left(BUCKETS, age)] += 1
            counts[-1] += age

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, "Seconds since the ingress received the push, when the stage is "
                                                "done with the record", labels=list(self._labelnames))

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = self._family()
        for labels, counts in sorted(self.series.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip(_BOUNDS, counts[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(list(labels), buckets, counts[-1])
        yield family


AGE = EventAge()
