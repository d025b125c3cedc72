"""Which fee records are fetched, and the keys they are stored under (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from recordings_support import CALL_END, fee_record

from voicecall.recordings import keys, select
from voicecall.recordings.store import FileStore
from voicecall.runtime.deadletter import Reason


def test_callback_with_recording_and_long_talk_is_fetched_through_the_record_api() -> None:
    decision = select.decide(fee_record("s1", talk=3, object_name="1200_366_0_x.wav", domain="ostor.example"))
    assert isinstance(decision, select.Fetch)
    assert (decision.record_object_name, decision.record_domain, decision.download_url) == (
        "1200_366_0_x.wav", "ostor.example", None)
    assert decision.key.startswith(f"{CALL_END:%Y/%m/%d}/s1-") and decision.key.endswith(".wav")


def test_without_record_domain_the_download_url_is_used() -> None:
    decision = select.decide(fee_record("s2", object_name="x.wav", domain="", url="https://a.example/x.wav"))
    assert isinstance(decision, select.Fetch)
    assert decision.download_url == "https://a.example/x.wav" and decision.record_domain is None


@pytest.mark.parametrize(("changes", "reason"), [
    ({"talk": 2}, select.TOO_SHORT),  # a 2.9 s call: second-resolution times give 2 s
    ({"recordFlag": 0}, select.NO_RECORDING),
    ({"recordFlag": "0"}, select.NO_RECORDING),
    ({"recordFlag": None}, select.NO_RECORDING),
    ({"serviceType": "001"}, select.NOT_CALLBACK),
    ({"fwdAnswerTime": ""}, select.NOT_ANSWERED),
    ({"fwdAnswerTime": None}, select.NOT_ANSWERED),
    ({"callEndTime": "yesterday"}, select.INVALID),
    ({"sessionId": ""}, select.INVALID),
])
def test_skips_without_request(changes: dict[str, object], reason: str) -> None:
    talk = changes.pop("talk", 20)
    record = fee_record("s3", talk=int(talk), object_name="x.wav")  # type: ignore[call-overload]
    record.update(changes)
    decision = select.decide(record)
    assert isinstance(decision, select.Skip) and decision.reason == reason


@pytest.mark.parametrize("flag", [1, "1", True, "true", " 1 "])
def test_record_flag_forms(flag: object) -> None:
    assert isinstance(select.decide(fee_record("s4", object_name="x.wav", recordFlag=flag)), select.Fetch)


def test_doubled_space_times_and_missing_service_type_are_read() -> None:
    record = fee_record("s5", object_name="x.wav", fwdAnswerTime="2016-12-26  01:16:45",
                        callEndTime="2016-12-26  01:19:46")
    del record["serviceType"]
    decision = select.decide(record)
    assert isinstance(decision, select.Fetch) and decision.key.startswith("2016/12/26/")


def test_recorded_call_without_any_location_is_given_up() -> None:
    decision = select.decide(fee_record("s6", object_name=None))
    assert isinstance(decision, select.GiveUp) and decision.reason == "no-location"


def test_not_an_object_is_invalid() -> None:
    assert select.decide([1, 2]) == select.Skip(select.INVALID, "not a JSON object", Reason.NOT_AN_OBJECT)


@pytest.mark.parametrize("object_name", ["../../x.wav", "/etc/passwd", "..\\..\\x.wav", "a/../../b.mp3", "x\0.wav"])
def test_keys_never_come_from_the_object_name_path(object_name: str, tmp_path: Path) -> None:
    decision = select.decide(fee_record("../../evil/sess", object_name=object_name))
    assert isinstance(decision, select.Fetch)
    parts = decision.key.split("/")
    assert len(parts) == 4 and ".." not in parts and all(parts)
    assert not parts[3].startswith(".") and "\\" not in decision.key and "\0" not in decision.key
    store = FileStore(tmp_path / "store")
    assert store.path(decision.key).is_relative_to(tmp_path / "store")


def test_sanitised_names_differ_for_different_session_ids() -> None:
    assert keys.safe_name("a/b") != keys.safe_name("a_b")
    assert keys.safe_name("a/b") == keys.safe_name("a/b")
    assert len(keys.safe_name("x" * 300)) <= keys.MAX_NAME + 13
    assert keys.safe_name("...") .startswith("session-")
    assert keys.object_key("s", datetime(2026, 1, 2, tzinfo=UTC), "a.MP3").endswith(".mp3")
    assert keys.object_key("s", datetime(2026, 1, 2, tzinfo=UTC), "a.exe").endswith(".wav")


def test_store_refuses_keys_that_leave_it(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for key in ("../x.wav", "/abs.wav", "a/../../x.wav", ".tmp/x.wav", "a//b.wav"):
        with pytest.raises(ValueError):
            store.path(key)
