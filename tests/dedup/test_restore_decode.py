"""The dedup core's ``restore`` on changelog records it did not write: it raises ``ValueError`` and leaves its state
as it was (the shell then skips and counts the record); on its own records it applies them."""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings, strategies as st

from voicecall.dedup import core as dedup

T0 = 1_700_000_000


def changelog(key: bytes | None, value: bytes | None, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord("p.dedup.changelog", 0, offset, 0, 0, key, value, None, 0, 0, [])


def make() -> dedup.DedupCore:
    core = dedup.DedupCore(0, "p.fee.unique", "p.deadletter", "p.dedup.changelog", 7 * 86400)
    core.restore(changelog((7).to_bytes(8, "big"), dedup.encode_entry(99, T0)))  # one entry of its own
    return core


def snapshot(core: dedup.DedupCore) -> tuple[list[tuple[int, int, int]], int]:
    return sorted(core.state.items()), core.clock


@pytest.mark.parametrize(("key", "value", "says"), [
    # what `replay copy --from-topic fee.unique --to-topic dedup.changelog` wrote: a sessionId key, a JSON value
    (b"1200_366_0_20161228102743@callenabler.home1.com", b'{"sessionId": "1200_366"}', "47 bytes"),
    (None, dedup.encode_entry(1, T0), "none"),
    (b"\x01" * 7, dedup.encode_entry(1, T0), "7 bytes"),
    (b"\x00" * 8, dedup.encode_entry(1, T0), "the key is 0"),
    ((5).to_bytes(8, "big"), b"", "0 bytes"),
    ((5).to_bytes(8, "big"), dedup.encode_entry(1, T0) + b"\x00", "13 bytes"),
])
def test_a_record_it_did_not_write_raises_and_changes_nothing(key: bytes | None, value: bytes | None,
                                                                says: str) -> None:
    core = make()
    before = snapshot(core)
    with pytest.raises(ValueError, match=says):
        core.restore(changelog(key, value))
    assert snapshot(core) == before


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=64)), value=st.one_of(st.none(), st.binary(max_size=64)))
def test_any_record_either_applies_or_raises_value_error_leaving_the_state(key: bytes | None,
                                                                          value: bytes | None) -> None:
    core = make()
    before = snapshot(core)
    try:
        core.restore(changelog(key, value))
    except ValueError:
        assert snapshot(core) == before
        return
    if value is None:  # a tombstone forgets its key; one of a key no entry can have changes nothing
        if key is not None and len(key) == 8:
            assert core.state.get(int.from_bytes(key, "big")) is None
        else:
            assert snapshot(core) == before
        return
    assert key is not None and len(key) == 8 and key != bytes(8)
    assert core.state.get(int.from_bytes(key, "big")) == dedup.decode_entry(value)


def test_a_tombstone_of_a_foreign_key_is_nothing_to_forget() -> None:
    # how a foreign record is cleared from the compacted changelog: a tombstone with its key
    core = make()
    before = snapshot(core)
    core.restore(changelog(b"1200_366_0_20161228102743@callenabler.home1.com", None))
    core.restore(changelog(None, None))
    assert snapshot(core) == before
    core.restore(changelog((7).to_bytes(8, "big"), None))
    assert snapshot(core)[0] == []


def test_its_own_changelog_records_apply() -> None:
    first = dedup.DedupCore(0, "p.fee.unique", "p.deadletter", "p.dedup.changelog", 7 * 86400)
    second = make()
    doc = b'{"sessionId": "s1", "callEndTime": "2023-11-14 22:13:20"}'
    outputs = first.process(ConsumerRecord("p.fee.raw", 0, 0, T0 * 1000, 0, b"s1", doc, None, 0, 0, []))
    for out in outputs:
        if out.topic == "p.dedup.changelog":
            second.restore(changelog(out.key, out.value))
    assert second.state.get(dedup.id_hash("s1")) == first.state.get(dedup.id_hash("s1"))
