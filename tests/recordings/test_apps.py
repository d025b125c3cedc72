"""Several apps: the downloader signs each record API call with the app of the CDR's appKey, and the simulator's
recording API verifies it (a file is only visible to its own app); an unknown app ends on recording.failed."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from recordings_helpers import APP_KEY, APP_SECRET, fee_record, make_settings, running_pipeline

from voicecall import apps
from voicecall.recordings import fetch
from voicecall.simulator.recording_api import RecordingApi as SimulatorApi


def new_id() -> str:
    return f"apps-{uuid.uuid4().hex[:12]}@callenabler245.huaweicaas.com"


async def test_two_apps_sign_with_their_own_secret(kafka_bootstrap: str, tmp_path: Path) -> None:
    apps_file = tmp_path / "apps.json"
    # "second" is mid-rotation on our side: the stale secret is listed first, the platform holds the other one
    apps_file.write_bytes(orjson.dumps({APP_KEY: APP_SECRET, "second": ["stale-secret-x", "second-secret-y"]}))
    async with SimulatorApi(APP_KEY, APP_SECRET, apps={"second": "second-secret-y"}) as simulator:
        first_name, second_name = f"{uuid.uuid4().hex}.wav", f"{uuid.uuid4().hex}.wav"
        simulator.add_file(first_name, 50_000, domain="rec.test")
        simulator.add_file(second_name, 60_000, domain="rec.test", app_key="second")
        settings = make_settings(kafka_bootstrap, simulator.base_url, (tmp_path / "store").as_uri(),
                                 recordings_allowed_hosts="127.0.0.1", huawei_app_key="", huawei_app_secret="",
                                 huawei_apps_file=str(apps_file))
        first_id, second_id, unknown_id, none_id = new_id(), new_id(), new_id(), new_id()
        async with running_pipeline(settings) as running:
            await running.send(fee_record(first_id, object_name=first_name))
            await running.send(fee_record(second_id, object_name=second_name, appKey="second"))
            await running.send(fee_record(unknown_id, object_name=first_name, appKey="third"))
            no_app = fee_record(none_id, object_name=first_name)
            del no_app["appKey"]
            await running.send(no_app)
            results = {name: (await running.wait_for(session_id))[0]
                       for name, session_id in (("first", first_id), ("second", second_id),
                                                ("unknown", unknown_id), ("none", none_id))}
    assert results["first"][0] == "stored" and results["first"][1]["sha256"] == simulator.sha256(first_name)
    assert results["second"][0] == "stored" and results["second"][1]["sha256"] == simulator.sha256(second_name)
    for name in ("unknown", "none"):  # no single app configured: nobody can sign for them
        kind, value, _ = results[name]
        assert (kind, value["reason"], value["attempts"]) == ("failed", "unknown-app", 1), name
    assert "third" in results["unknown"][1]["detail"] and "no appKey" in results["none"][1]["detail"]
    # one API call per stored file passed authentication; the stale secret was refused once, then the held one
    assert simulator.attempts[first_name] == 1 and simulator.attempts[second_name] == 1
    assert simulator.answers["404 1012007 other app"] == 0
    assert simulator.answers["400 1023006"] == 1
    text = orjson.dumps([value for _, value, _ in results.values()]).decode()
    assert not any(secret in text for secret in (APP_SECRET, "stale-secret-x", "second-secret-y"))


def test_the_single_app_signs_when_there_is_no_apps_file_or_no_app_key(tmp_path: Path) -> None:
    only_single = fetch.Signers("https://x", apps.AppRegistry(None, ("single", "s1")))
    assert [c.app_key for c in only_single.credentials("anything")] == ["single"]  # as before several apps
    assert [c.app_key for c in only_single.credentials(None)] == ["single"]
    path = tmp_path / "apps.json"
    path.write_bytes(orjson.dumps({"a": ["sa1", "sa2"]}))
    both = fetch.Signers("https://x", apps.AppRegistry(str(path), ("single", "s1")))
    assert [(c.app_key, c.app_secret) for c in both.credentials("a")] == [("a", "sa1"), ("a", "sa2")]
    assert [c.app_key for c in both.credentials(None)] == ["single"]
    assert [c.app_key for c in both.credentials("single")] == ["single"]
    with pytest.raises(fetch.Permanent) as refused:
        both.credentials("b")
    assert refused.value.reason == "unknown-app" and "sa1" not in str(refused.value)
    assert "sa1" not in repr(both.credentials("a"))
