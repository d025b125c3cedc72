"""Helpers of the tracing tests: the whole pipeline in this process (ingress, dedup, billing, recordings) on a
topic prefix of the test's own, and CDRs that end at a chosen time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from kafka_helpers import create_topics, new_prefix, running_stage, settings_values
from voicecall.billing import cli as billing_cli
from voicecall.billing.config import BillingSettings
from voicecall.dedup import cli as dedup_cli
from voicecall.dedup.config import DedupSettings
from voicecall.ingress.app import create_app, make_runner
from voicecall.ingress.config import IngressSettings
from voicecall.recordings import cli as recordings_cli
from voicecall.recordings.config import RecordingsSettings
from voicecall.runtime.metrics import bound_port


def huawei_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def cdr(session_id: str, ended: datetime) -> dict[str, Any]:
    """A voice-callback CDR that ended at ``ended`` (20 s talk), recorded but without a location: billing bills
    it, recordings gives it up (recording.failed, no-location) without calling anything."""
    return {"sessionId": session_id, "direction": 0, "spId": "sp", "appKey": "ak", "bindNum": "+8675566660000",
            "callerNum": "+8675566660000", "calleeNum": "+8613800000001", "fwdDstNum": "+8613800000002",
            "callOutAnswerTime": huawei_time(ended - timedelta(seconds=30)),
            "fwdAnswerTime": huawei_time(ended - timedelta(seconds=20)), "callEndTime": huawei_time(ended),
            "recordFlag": 1, "serviceType": "002"}


@dataclass
class Pipeline:
    settings: IngressSettings
    url: str


@contextlib.asynccontextmanager
async def running_pipeline(bootstrap: str, state: Path) -> AsyncIterator[Pipeline]:
    values = settings_values(bootstrap, new_prefix(), ingress_host="127.0.0.1", ingress_port=0,
                             ingress_spool_dir=str(state / "spool"), recordings_store=str(state / "recordings"))
    ingress = IngressSettings(**{k: v for k, v in values.items() if k in IngressSettings.model_fields})
    await create_topics(ingress)
    app = create_app(ingress, state / "spool")
    runner = make_runner(app, ingress, shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    dedup = DedupSettings(**{k: v for k, v in values.items() if k in DedupSettings.model_fields})
    billing = BillingSettings(**{k: v for k, v in values.items() if k in BillingSettings.model_fields})
    recordings = RecordingsSettings(**{k: v for k, v in values.items() if k in RecordingsSettings.model_fields})
    stop = asyncio.Event()
    serving = asyncio.create_task(recordings_cli.serve(recordings, stop))
    try:
        async with running_stage(dedup, dedup_cli.stage(dedup)), running_stage(billing, billing_cli.stage(billing)):
            yield Pipeline(ingress, f"http://127.0.0.1:{bound_port(runner)}")
    finally:
        stop.set()
        await asyncio.wait_for(serving, 60)
        await runner.cleanup()
