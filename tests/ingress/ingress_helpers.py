"""Helpers of the ingress tests: the ingress's settings on a topic prefix of the test's own, the ingress served
in-process on a loopback port, and example pushes (creating topics and reading them back: tests/kafka_helpers.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from kafka_helpers import create_topics, new_prefix
from voicecall.ingress.app import create_app, make_runner
from voicecall.ingress.config import IngressSettings
from voicecall.runtime.metrics import bound_port


def ingress_settings(bootstrap: str, spool_dir: Path, **overrides: Any) -> IngressSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": new_prefix(),
        "ingress_host": "127.0.0.1",
        "ingress_port": 0,
        "ingress_spool_dir": str(spool_dir),
        "topic_partitions": 3,
        "topic_replication": 1,
    }
    values.update(overrides)
    return IngressSettings(**{k: v for k, v in values.items() if k in IngressSettings.model_fields})


@dataclass
class Ingress:
    settings: IngressSettings
    app: web.Application
    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_ingress(settings: IngressSettings, spool_dir: Path | None = None, *,
                        port: int = 0) -> Ingress:
    app = create_app(settings, spool_dir or Path(settings.ingress_spool_dir))
    runner = make_runner(app, settings, shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return Ingress(settings, app, runner, f"http://127.0.0.1:{bound_port(runner)}")


@asynccontextmanager
async def running_ingress(settings: IngressSettings) -> AsyncIterator[Ingress]:
    """The ingress on its own topics (created), ready with the broker up; stopped after."""
    await create_topics(settings)
    served = await start_ingress(settings)
    try:
        await wait_ready(served.url)
        yield served
    finally:
        await served.stop()


async def wait_ready(url: str, timeout: float = 30.0, broker: str = "up") -> dict[str, Any]:
    """Until /readyz says ``broker``; a process still starting refuses connections meanwhile."""
    deadline = asyncio.get_running_loop().time() + timeout
    body: Any = {}
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(f"{url}/readyz") as response:
                    body = await response.json()
                    if body.get("broker") == broker:
                        return dict(body)
            except aiohttp.ClientError as error:
                body = error
            await asyncio.sleep(0.1)
    raise AssertionError(f"ingress not ready with broker {broker}: {body}")


def write_apps(path: Path, data: object) -> None:
    """An apps file as a Secret volume changes it: the new file renamed into place (a new inode)."""
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data if isinstance(data, bytes) else orjson.dumps(data))
    os.replace(temporary, path)


# Huawei's example pushes, as bytes on the wire: S1 and S2 the official Python and Node.js samples of the status
# push (rtc_05_0008), S3 the FAQ's collectInfo push, S4 and F2 the old Huawei RTC demo's (HostingVoiceEventDemoImpl:
# doubled spaces in times, F2's two identical merged CDRs), S5 a disconnect push as rtc_05_0008 ends it.
S1 = (b'{"eventType": "callout", "statusInfo": {"sessionId": "1201_612_4294967295_20190124030424@callenabler245'
      b'.huaweicaas.com", "timestamp": "2019-01-24 03:04:24", "caller": "+86138*******2", "called": "+86138*******1",'
      b' "userData": "customerId123"}}')
S2 = (b'{"eventType":"callout","statusInfo":{"sessionId":"1201_612_4294967295_20190124030424@callenabler245.huaweicaas'
      b'.com","timestamp":"2019-01-24 03:04:24","caller":"+8613800000022","called":"+8613800000021"}}')
S3 = (b'{"eventType":"collectInfo", \n"statusInfo": \n{"sessionId":"1201_12897_4294967295_20180522064331@callenabler245'
      b'.huaweicaas.com",\n"timestamp":"2018-05-22 06:44:03", \n"digitInfo":"1",\n'
      b'"userData":"CaaS Hosting Test"} \n}\n')
S4 = (b'{"eventType":"answer","statusInfo":{"sessionId":"1200_366_0_20161228102743@callenabler.home1.com",'
      b'"timestamp":"2018-04-09  10:57:42","userData":"cwgtest"}}')
S5 = (b'{"eventType":"disconnect","statusInfo":{"sessionId":"1202_1051_4294967295_20190124070250@callenabler246'
      b'.huaweicaas.com","timestamp":"2019-01-24 07:03:28","caller":"+86138****0022","called":"+86138****7021",'
      b'"stateCode":0,"stateDesc":"The user releases the call.","subscriptionId":"********"}}')
_F2_RECORD = (
    '{"appKey":"cJU9QxBt53ZytKo9X8C35Z5c6pvi","bindNum":"+8675566660000","callEndTime":"2016-12-26  01:19:46",'
    '"callOutAlertingTime":"2016-12-26  01:16:26","callOutAnswerTime":"2016-12-26  01:16:31","callOutStartTime":'
    '"2016-12-26  01:16:20","callOutUnaswRsn":0,"calleeNum":"+8675588880000","callerNum":"+8675566660000",'
    '"direction":0,"fwdAlertingTime":"2018-04-26  01:16:38","fwdAnswerTime":"2016-12-26  01:16:45","fwdDisplayNum":'
    '"+8675566660000","fwdDstNum":"+8675588880001","fwdStartTime":"2016-12-26  01:16:32","fwdUnaswRsn":0,"icid":'
    '"9c2012a5bcb2721681009cb6c245fdc3.3663053204.1117803.14","recordFlag":0,"sessionId":'
    '"1200_366_0_20161228102743@callenabler.home1.com","spId":"dial010314322991","ulFailReason":0,'
    '"endToEndID":543207693}')
F2 = ('{"eventType":"fee","feeLst":[' + _F2_RECORD + "," + _F2_RECORD + "]}").encode()
STATUS_EXAMPLES = {"S1": S1, "S2": S2, "S3": S3, "S4": S4, "S5": S5}


def fee_push(n: int, tag: str = "", **fields: Any) -> dict[str, Any]:
    """A fee push of ``n`` distinct callback CDRs."""
    return {"eventType": "fee", "feeLst": [
        {"sessionId": f"{tag}sess-{i}@callenabler245.huaweicaas.com", "direction": 0, "spId": "sp", "appKey": "ak",
         "bindNum": "+8675566660000", "callerNum": "+8675566660000", "calleeNum": "+8613800000001",
         "callOutAnswerTime": "2019-01-24 03:04:30", "fwdAnswerTime": "2019-01-24 03:04:38",
         "callEndTime": "2019-01-24  03:04:49", "recordFlag": 0, "serviceType": "002", **fields}
        for i in range(n)]}


def status_push(session_id: str, event_type: str = "callout") -> dict[str, Any]:
    return {"eventType": event_type, "statusInfo": {"sessionId": session_id, "timestamp": "2019-01-24 03:04:24",
                                                    "caller": "+8613800000022", "called": "+8613800000021"}}
